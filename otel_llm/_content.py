"""Message-content capture policy: off by default, redacted and capped when on.

Obligations of every instrumentor that records prompts or completions:

1. ask :func:`capture_content` once (at ``instrument()`` / start-up) and record
   nothing when it says ``False`` -- the default;
2. pass every string through :func:`prepare_content` (redaction hook, then the
   length cap) before it reaches a span;
3. use :func:`input_messages_json` / :func:`output_messages_json` so the
   attribute shape follows the GenAI semantic conventions
   (``gen_ai.input.messages`` / ``gen_ai.output.messages``).

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` accepts the boolean
form used by ``opentelemetry-instrumentation-openai-v2`` (``true`` /
``false``) and the mode names of ``opentelemetry-util-genai``
(``NO_CONTENT``, ``SPAN_ONLY``, ``SPAN_AND_EVENT``, ``EVENT_ONLY``), case
insensitive. otel-llm records content on spans only, so ``EVENT_ONLY`` means
"not on spans" and captures nothing here. Any other value raises
``ValueError`` naming the variable.

The default redactor masks e-mail addresses, API keys and bearer tokens,
long hex / base64 secrets and card-like numbers (13-19 digits passing the
Luhn check). Replace it with :func:`set_redactor`. A redactor that raises
fails closed: the content is replaced by ``[REDACTION FAILED]`` and the
error is reported once and counted.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence

from otel_llm import environment_variables as ev
from otel_llm._env import env_int, env_str
from otel_llm._selftelemetry import report_error

__all__ = [
    "DEFAULT_CONTENT_MAX_LENGTH",
    "capture_content",
    "content_max_length",
    "default_redactor",
    "get_redactor",
    "input_messages_json",
    "output_messages_json",
    "prepare_content",
    "set_redactor",
]

DEFAULT_CONTENT_MAX_LENGTH = 4096
_TRUNCATION_MARK = "…[truncated]"
_REDACTION_FAILED = "[REDACTION FAILED]"
# Longest secret we expect to match; text this far past the cap is redacted
# too, so a secret straddling the cut is masked before the cut, never leaked.
_REDACT_MARGIN = 512

_ON = {"true", "1", "yes", "on", "span_only", "span_and_event"}
_OFF = {"false", "0", "no", "off", "no_content", "event_only"}

Redactor = Callable[[str], str]


def capture_content(arg: bool | str | None = None) -> bool:
    """Whether prompts/completions may be recorded. Argument > env var > ``False``."""
    if isinstance(arg, bool):
        return arg
    raw = env_str(ev.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT, arg)
    if raw is None:
        return False
    low = raw.strip().lower()
    if low in _ON:
        return True
    if low in _OFF or low == "":
        return False
    source = "capture_content" if arg is not None else ev.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
    raise ValueError(
        f"{source}={raw!r} is not valid; use true/false or one of NO_CONTENT, SPAN_ONLY, SPAN_AND_EVENT, EVENT_ONLY"
    )


def content_max_length(arg: int | None = None) -> int:
    """Characters of content kept per attribute. Argument > ``OTEL_LLM_CONTENT_MAX_LENGTH`` > 4096."""
    value = env_int(ev.OTEL_LLM_CONTENT_MAX_LENGTH, arg, DEFAULT_CONTENT_MAX_LENGTH, minimum=1)
    assert value is not None
    return value


# ---------------------------------------------------------------------------
# default redaction
# ---------------------------------------------------------------------------
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization-style tokens: "Bearer <token>", "Basic <b64>"
    (re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), r"\1 [REDACTED_TOKEN]"),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "[REDACTED_TOKEN]"),
    # Vendor API keys: OpenAI/Anthropic sk-..., GitHub, Hugging Face, AWS access keys, Slack, Google
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "[REDACTED_API_KEY]"),
    (re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}"), "[REDACTED_API_KEY]"),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), "[REDACTED_API_KEY]"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "[REDACTED_API_KEY]"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "[REDACTED_API_KEY]"),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), "[REDACTED_API_KEY]"),
    # key=value secrets: api_key=..., password: ...
    (
        re.compile(r"\b(api[_-]?key|secret|password|passwd|token|access[_-]?key)(\s*[:=]\s*)\"?[^\s\"',;]{6,}", re.I),
        r"\1\2[REDACTED_SECRET]",
    ),
    # e-mail addresses
    (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), "[REDACTED_EMAIL]"),
    # long hex strings (hashes, hex-encoded keys)
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), "[REDACTED_SECRET]"),
]
# base64-ish runs: 32+ chars mixing upper, lower and digits (plain words never do)
_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}")
# 13-19 digits, optionally grouped by spaces or dashes
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[REDACTED_CARD]" if 13 <= len(digits) <= 19 and _luhn_ok(digits) else match.group(0)


def _mask_b64(match: re.Match[str]) -> str:
    s = match.group(0)
    if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
        return "[REDACTED_SECRET]"
    return s


def default_redactor(text: str) -> str:
    """Mask e-mails, API keys / bearer tokens, long hex or base64 secrets and Luhn-valid card numbers."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    text = _B64.sub(_mask_b64, text)
    return _CARD.sub(_mask_card, text)


_lock = threading.Lock()
_redactor: Redactor = default_redactor


def set_redactor(fn: Redactor | None) -> None:
    """Replace the redaction hook (``str -> str``) for every instrumentor; ``None`` restores the default.

    The hook runs on every captured string when capture is on; it must be
    thread-safe. If it raises, the content is dropped (fail closed).
    """
    global _redactor
    if fn is not None and not callable(fn):
        raise TypeError(f"set_redactor expects a callable str -> str, got {type(fn).__name__}")
    with _lock:
        _redactor = fn if fn is not None else default_redactor


def get_redactor() -> Redactor:
    return _redactor


def prepare_content(text: str, max_length: int | None = None) -> tuple[str, bool]:
    """Redact then cap ``text``. Returns ``(safe_text, truncated)``.

    Text far beyond the cap is cut first (bounded redaction cost), then
    redacted, then cut to ``max_length`` characters.
    """
    limit = content_max_length(max_length)
    if not isinstance(text, str):
        text = str(text)
    truncated = len(text) > limit
    if truncated:
        text = text[: limit + _REDACT_MARGIN]
    try:
        safe = _redactor(text)
        if not isinstance(safe, str):
            raise TypeError(f"redactor returned {type(safe).__name__}, expected str")
    except Exception as exc:  # user hook: fail closed, never leak
        report_error("content.redactor", exc)
        return _REDACTION_FAILED, truncated
    if len(safe) > limit:
        truncated = True
    if truncated:
        safe = safe[:limit] + _TRUNCATION_MARK
    return safe, truncated


def input_messages_json(
    messages: str | Sequence[tuple[str, str]] | Sequence[dict], max_length: int | None = None
) -> tuple[str, bool]:
    """``gen_ai.input.messages`` JSON from a prompt string or ``(role, text)`` pairs / ``{"role","content"}`` dicts."""
    if isinstance(messages, str):
        pairs: Iterable[tuple[str, str]] = [("user", messages)]
    else:
        pairs = [
            (m.get("role", "user"), m.get("content", "")) if isinstance(m, dict) else (m[0], m[1]) for m in messages
        ]
    out, any_cut = [], False
    for role, content in pairs:
        if not isinstance(content, str):
            content = json.dumps(content, default=str)
        safe, cut = prepare_content(content, max_length)
        any_cut |= cut
        out.append({"role": role, "parts": [{"type": "text", "content": safe}]})
    return json.dumps(out, ensure_ascii=False), any_cut


def output_messages_json(
    texts: Sequence[str], finish_reasons: Sequence[str] | None = None, max_length: int | None = None
) -> tuple[str, bool]:
    """``gen_ai.output.messages`` JSON: one assistant message per generated sequence."""
    out, any_cut = [], False
    for i, text in enumerate(texts):
        safe, cut = prepare_content(text, max_length)
        any_cut |= cut
        msg = {"role": "assistant", "parts": [{"type": "text", "content": safe}]}
        if finish_reasons is not None and i < len(finish_reasons):
            msg["finish_reason"] = finish_reasons[i]
        out.append(msg)
    return json.dumps(out, ensure_ascii=False), any_cut
