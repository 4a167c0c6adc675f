"""Content capture policy: off by default, redaction hook, length cap."""

from __future__ import annotations

import json

import pytest

from otel_llm import _content
from otel_llm._content import (
    capture_content,
    content_max_length,
    default_redactor,
    input_messages_json,
    output_messages_json,
    prepare_content,
    set_redactor,
)

ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@pytest.fixture(autouse=True)
def _restore_redactor():
    yield
    set_redactor(None)


def test_capture_is_off_by_default(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert capture_content() is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True), ("TRUE", True), ("1", True), ("SPAN_ONLY", True), ("span_and_event", True),
        ("false", False), ("0", False), ("NO_CONTENT", False), ("EVENT_ONLY", False), ("", False),
    ],
)
def test_capture_env_values(monkeypatch, value, expected):
    monkeypatch.setenv(ENV, value)
    assert capture_content() is expected


def test_capture_argument_beats_env(monkeypatch):
    monkeypatch.setenv(ENV, "true")
    assert capture_content(False) is False
    monkeypatch.setenv(ENV, "false")
    assert capture_content(True) is True


def test_capture_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ValueError, match=ENV):
        capture_content()


@pytest.mark.parametrize(
    ("secret", "mask"),
    [
        ("alice.smith+llm@example.co.uk", "[REDACTED_EMAIL]"),
        ("sk-proj-AbCdEf0123456789ghijKLMN", "[REDACTED_API_KEY]"),
        ("hf_abcdefghijklmnopqrstuvwxyz0123", "[REDACTED_API_KEY]"),
        ("AKIAIOSFODNN7EXAMPLE", "[REDACTED_API_KEY]"),
        ("ghp_0123456789abcdefghijABCDEFGHIJ012345", "[REDACTED_API_KEY]"),
        ("4111 1111 1111 1111", "[REDACTED_CARD]"),
        ("5500-0000-0000-0004", "[REDACTED_CARD]"),
        ("4012888888881881", "[REDACTED_CARD]"),
        ("d41d8cd98f00b204e9800998ecf8427e0123abcd", "[REDACTED_SECRET]"),
        ("QWxhZGRpbjpvcGVuIHNlc2FtZQ9xYz7Bc2VjcmV0S2V5", "[REDACTED_SECRET]"),
    ],
)
def test_default_redactor_masks_secrets(secret, mask):
    out = default_redactor(f"please use {secret} today")
    assert secret not in out
    assert mask in out
    assert out.startswith("please use ") and out.endswith(" today")


def test_bearer_token_keeps_scheme():
    out = default_redactor("Authorization: Bearer abc.DEF-123_456~xyz")
    assert out == "Authorization: Bearer [REDACTED_TOKEN]"


def test_key_value_secret():
    out = default_redactor('config api_key="s3cr3tvalue!" and password: hunter22')
    assert "s3cr3tvalue" not in out and "hunter22" not in out


@pytest.mark.parametrize(
    "harmless",
    [
        "The year 2024 had 365 days and 1234567890123 is not a card",  # 13 digits, Luhn-invalid
        "call me at 555-0100",
        "internationalization_and_localization_guidelines",  # long word, no digits/case mix
        "deadbeef",  # short hex
    ],
)
def test_default_redactor_leaves_ordinary_text(harmless):
    assert default_redactor(harmless) == harmless


def test_prepare_content_caps_length_after_redaction():
    text = "x" * 50 + " bob@example.com " + "y" * 100
    safe, truncated = prepare_content(text, max_length=60)
    assert truncated is True
    assert safe.startswith("x" * 50 + " [REDACTED")  # secret straddling the cut is masked, not cut
    assert "bob" not in safe
    assert len(safe) <= 60 + len("…[truncated]")


def test_prepare_content_short_text_untouched():
    assert prepare_content("hello", max_length=10) == ("hello", False)


def test_max_length_env_and_bad_value(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_CONTENT_MAX_LENGTH", "12")
    assert content_max_length() == 12
    assert content_max_length(5) == 5
    monkeypatch.setenv("OTEL_LLM_CONTENT_MAX_LENGTH", "lots")
    with pytest.raises(ValueError, match="OTEL_LLM_CONTENT_MAX_LENGTH"):
        content_max_length()
    monkeypatch.setenv("OTEL_LLM_CONTENT_MAX_LENGTH", "0")
    with pytest.raises(ValueError, match="minimum"):
        content_max_length()


def test_set_redactor_replaces_and_restores():
    set_redactor(lambda s: s.upper())
    assert prepare_content("secret", max_length=100) == ("SECRET", False)
    set_redactor(None)
    assert _content.get_redactor() is default_redactor
    with pytest.raises(TypeError):
        set_redactor("not callable")  # type: ignore[arg-type]


def test_failing_redactor_fails_closed_and_is_counted():
    from otel_llm import _selftelemetry

    def boom(_: str) -> str:
        raise RuntimeError("hook broke")

    before = _selftelemetry.error_counts().get(("content.redactor", "RuntimeError"), 0)
    set_redactor(boom)
    safe, _ = prepare_content("my card 4111 1111 1111 1111", max_length=100)
    assert "4111" not in safe and safe == "[REDACTION FAILED]"
    assert _selftelemetry.error_counts()[("content.redactor", "RuntimeError")] == before + 1


def test_messages_json_follow_semconv_shape():
    raw, cut = input_messages_json([("system", "be brief"), {"role": "user", "content": "mail a@b.io"}], 100)
    msgs = json.loads(raw)
    assert cut is False
    assert msgs[0] == {"role": "system", "parts": [{"type": "text", "content": "be brief"}]}
    assert msgs[1]["parts"][0]["content"] == "mail [REDACTED_EMAIL]"
    out, _ = output_messages_json(["one", "two"], ["stop", "length"], 100)
    outs = json.loads(out)
    assert [m["finish_reason"] for m in outs] == ["stop", "length"]
    assert outs[1] == {"role": "assistant", "parts": [{"type": "text", "content": "two"}], "finish_reason": "length"}
