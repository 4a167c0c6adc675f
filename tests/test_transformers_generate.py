"""TransformersInstrumentor on the real tiny model: counts, timings, streaming, safety."""

from __future__ import annotations

import threading

import pytest
import torch

from otel_llm import _selftelemetry
from otel_llm import semconv as sc
from otel_llm.instrumentation.transformers import TransformersInstrumentor, attach_tokenizer
from otel_llm.testing import expected_output_counts

transformers = pytest.importorskip("transformers")
from transformers import LogitsProcessorList, TextIteratorStreamer  # noqa: E402
from transformers.generation.utils import GenerationMixin  # noqa: E402

N = 32


@pytest.fixture
def inst(telemetry):
    instrumentor = TransformersInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    yield instrumentor
    instrumentor.uninstrument()


def _batch(tok, prompts=("hello world", "a considerably longer prompt that forces left padding")):
    return tok(list(prompts), return_tensors="pt", padding=True)



def test_batch_with_padding_counts_equal_tensors(inst, telemetry, tiny_model):
    model, tok = tiny_model
    enc = _batch(tok)
    assert (enc["attention_mask"] == 0).any(), "the batch must contain padding"
    out = model.generate(**enc, max_new_tokens=N, do_sample=False)
    (span,) = telemetry.spans()
    a = span.attributes
    assert span.name == "text_completion otel-llm-tiny"
    assert span.kind.name == "INTERNAL"
    assert list(a[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == enc["attention_mask"].sum(-1).tolist()
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == int(enc["attention_mask"].sum())
    generated = out[:, enc["input_ids"].shape[1] :]
    expected = expected_output_counts(generated, tok.eos_token_id)
    assert list(a[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE]) == expected
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == sum(expected)
    assert a[sc.GEN_AI_REQUEST_MAX_TOKENS] == N and a[sc.GEN_AI_REQUEST_MODEL] == "otel-llm-tiny"
    assert a[sc.OTEL_LLM_BATCH_SIZE] == 2
    assert sc.GEN_AI_REQUEST_TEMPERATURE not in a  # greedy: sampling parameters do not apply
    usage = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in telemetry.points(sc.GEN_AI_CLIENT_TOKEN_USAGE)}
    assert usage == {"input": a[sc.GEN_AI_USAGE_INPUT_TOKENS], "output": a[sc.GEN_AI_USAGE_OUTPUT_TOKENS]}


def test_eos_early_stop_counts_and_finish_reasons(inst, telemetry, tiny_model):
    model, tok = tiny_model
    enc = _batch(tok)
    width = enc["input_ids"].shape[1]
    with torch.no_grad():
        probe = GenerationMixin.generate.__wrapped__(model, **enc, max_new_tokens=N, do_sample=False)
    eos = int(probe[0, width + 5])  # a token row 0 really produces at step 5: make it the EOS
    out = model.generate(**enc, max_new_tokens=N, do_sample=False, eos_token_id=eos)
    generated = out[:, width:]
    expected = expected_output_counts(generated, eos)
    assert expected[0] <= 6  # row 0 stopped early
    (span,) = telemetry.spans()
    a = span.attributes
    assert list(a[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE]) == expected
    reasons = ["stop" if (generated[i] == eos).any() else "length" for i in range(2)]
    assert list(a[sc.GEN_AI_RESPONSE_FINISH_REASONS]) == reasons
    assert reasons[0] == "stop"


def test_ttft_and_every_gap_recorded(inst, telemetry, tiny_model):
    model, tok = tiny_model
    enc = tok("the quick brown fox", return_tensors="pt")
    model.generate(**enc, max_new_tokens=N, min_new_tokens=N, do_sample=False)
    (span,) = telemetry.spans()
    a = span.attributes
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == N
    duration_s = (span.end_time - span.start_time) / 1e9
    assert 0 < a[sc.OTEL_LLM_TTFT] < duration_s
    assert a[sc.OTEL_LLM_GAP_P50] <= a[sc.OTEL_LLM_GAP_P90] <= a[sc.OTEL_LLM_GAP_P99] <= a[sc.OTEL_LLM_GAP_MAX]
    (ttft,) = telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    (dur,) = telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION)
    assert ttft.count == 1 and 0 < ttft.sum < dur.sum
    (gaps,) = telemetry.points(sc.OTEL_LLM_SERVER_TOKEN_GAP)
    assert gaps.count == N - 1
    assert gaps.max == pytest.approx(a[sc.OTEL_LLM_GAP_MAX])
    assert dict(ttft.attributes) == {
        sc.GEN_AI_OPERATION_NAME: "text_completion", sc.GEN_AI_PROVIDER_NAME: "huggingface.transformers",
        sc.GEN_AI_REQUEST_MODEL: "otel-llm-tiny", sc.GEN_AI_RESPONSE_MODEL: "otel-llm-tiny",
    }


def test_stalls_counted_over_threshold(telemetry, tiny_model):
    model, tok = tiny_model
    instrumentor = TransformersInstrumentor()
    instrumentor.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, stall_threshold_ms=0
    )
    try:
        model.generate(**tok("hi", return_tensors="pt"), max_new_tokens=8, min_new_tokens=8, do_sample=False)
    finally:
        instrumentor.uninstrument()
    a = telemetry.spans()[0].attributes
    assert a[sc.OTEL_LLM_GAP_STALLS] == 7  # every gap exceeds a 0 ms threshold
    assert telemetry.points(sc.OTEL_LLM_SERVER_STALLS)[0].value == 7


def test_sampling_parameters_recorded(inst, telemetry, tiny_model):
    model, tok = tiny_model
    model.generate(**tok("hi", return_tensors="pt"), max_new_tokens=4, do_sample=True, temperature=0.7, top_p=0.9, top_k=5)
    a = telemetry.spans()[0].attributes
    assert a[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.7 and a[sc.GEN_AI_REQUEST_TOP_P] == 0.9
    assert a[sc.GEN_AI_REQUEST_TOP_K] == 5


def _stream(model, enc, streamer, **kw):
    errors = []

    def run():
        try:
            model.generate(**enc, streamer=streamer, max_new_tokens=N, do_sample=False, **kw)
        except Exception as exc:  # pragma: no cover - surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_streaming_text_iterator_exhausted(inst, telemetry, tiny_model):
    model, tok = tiny_model
    enc = tok("stream me", return_tensors="pt")
    streamer = TextIteratorStreamer(tok, skip_prompt=True, timeout=10)
    thread, errors = _stream(model, enc, streamer)
    text = "".join(streamer)
    thread.join(10)
    assert not thread.is_alive() and not errors
    (span,) = telemetry.spans()
    a = span.attributes
    assert a[sc.GEN_AI_REQUEST_STREAM] is True
    assert text  # the user's streamer still got every token
    assert a[sc.OTEL_LLM_TTFT] > 0 and sc.OTEL_LLM_GAP_P99 in a
    assert telemetry.points(sc.OTEL_LLM_SERVER_TOKEN_GAP)[0].count == a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] - 1


def test_streaming_consumer_breaks_early(inst, telemetry, tiny_model):
    model, tok = tiny_model
    streamer = TextIteratorStreamer(tok, skip_prompt=True, timeout=10)
    thread, errors = _stream(model, tok("stream me", return_tensors="pt"), streamer)
    for _chunk in streamer:
        break  # the consumer walks away after the first chunk
    thread.join(10)
    assert not thread.is_alive() and not errors
    (span,) = telemetry.spans()
    assert span.end_time is not None and span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0


class _Cancel(Exception):
    pass


class _CancellingStreamer:
    """A user streamer that aborts generation (a common cancellation idiom) after 3 tokens."""

    def __init__(self):
        self.puts = 0

    def put(self, value):
        self.puts += 1
        if self.puts > 3:
            raise _Cancel("client went away")

    def end(self):
        pass


def test_user_streamer_exception_propagates_and_ends_span(inst, telemetry, tiny_model):
    model, tok = tiny_model
    streamer = _CancellingStreamer()
    with pytest.raises(_Cancel, match="client went away"):
        model.generate(**tok("x", return_tensors="pt"), streamer=streamer, max_new_tokens=N, do_sample=False)
    (span,) = telemetry.spans()
    assert span.attributes[sc.ERROR_TYPE] == "_Cancel"
    assert span.status.status_code.name == "ERROR"
    assert telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == []  # TTFT metric: successful responses only
    (dur,) = telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION)
    assert dur.attributes[sc.ERROR_TYPE] == "_Cancel"


def test_host_exception_propagates_unchanged(inst, telemetry, tiny_model):
    model, tok = tiny_model
    enc = tok("x", return_tensors="pt")
    with pytest.raises(ValueError) as bare:
        GenerationMixin.generate.__wrapped__(model, **enc, max_new_tokens=4, not_a_generate_kwarg=1)
    with pytest.raises(ValueError) as wrapped:
        model.generate(**enc, max_new_tokens=4, not_a_generate_kwarg=1)
    assert str(wrapped.value) == str(bare.value)
    assert wrapped.traceback[-1].name == bare.traceback[-1].name  # raised from the same place, not re-wrapped
    (span,) = telemetry.spans()
    assert span.attributes[sc.ERROR_TYPE] == "ValueError"
    assert span.events[0].name == "exception"


def test_our_hook_failure_never_breaks_generate(inst, telemetry, tiny_model, monkeypatch):
    from otel_llm.instrumentation.transformers import _hooks

    model, tok = tiny_model
    enc = tok("robust", return_tensors="pt")
    expected = GenerationMixin.generate.__wrapped__(model, **enc, max_new_tokens=8, do_sample=False)

    def boom():
        raise RuntimeError("timeline broke")

    monkeypatch.setattr(_hooks, "perf_counter_ns", boom)  # the per-token timestamp fails
    before = _selftelemetry.error_counts().get(("transformers.hook", "RuntimeError"), 0)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert torch.equal(out, expected)
    assert _selftelemetry.error_counts()[("transformers.hook", "RuntimeError")] == before + 1  # once per call
    (span,) = telemetry.spans()
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 8  # counts still exact
    assert sc.OTEL_LLM_TTFT not in span.attributes  # no half-measured timings


def test_summary_failure_is_reported_not_raised(inst, telemetry, tiny_model, monkeypatch):
    from otel_llm.instrumentation._genai import TokenTimeline

    model, tok = tiny_model

    def boom(self, *a, **k):
        raise ZeroDivisionError("maths broke")

    monkeypatch.setattr(TokenTimeline, "summary", boom)
    before = _selftelemetry.error_counts().get(("transformers.generate", "ZeroDivisionError"), 0)
    out = model.generate(**tok("x", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert out.shape[1] > 0
    assert _selftelemetry.error_counts()[("transformers.generate", "ZeroDivisionError")] == before + 1
    assert len(telemetry.spans()) == 1


def test_beam_search_uses_logits_hook_and_keeps_user_list(inst, telemetry, tiny_model):
    model, tok = tiny_model
    user_list = LogitsProcessorList()
    model.generate(**tok("beam", return_tensors="pt"), max_new_tokens=6, num_beams=2, do_sample=False,
                   logits_processor=user_list)
    assert len(user_list) == 0  # never mutated
    a = telemetry.spans()[0].attributes
    assert a[sc.OTEL_LLM_TTFT] > 0 and a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] > 0


def test_outputs_identical_with_and_without_instrumentation(inst, tiny_model):
    model, tok = tiny_model
    enc = _batch(tok)
    bare = GenerationMixin.generate.__wrapped__(model, **enc, max_new_tokens=12, do_sample=False)
    assert torch.equal(model.generate(**enc, max_new_tokens=12, do_sample=False), bare)


def test_uninstrument_restores_original_and_instrument_is_idempotent(telemetry, tiny_model):
    model, tok = tiny_model
    original = GenerationMixin.__dict__["generate"]
    instrumentor = TransformersInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    assert GenerationMixin.__dict__["generate"] is not original
    model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3)
    assert len(telemetry.spans()) == 1  # one span, not two stacked wrappers
    TransformersInstrumentor().uninstrument()  # the singleton keeps its state across constructor calls
    assert GenerationMixin.__dict__["generate"] is original
    model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3)
    assert len(telemetry.spans()) == 1


def test_content_off_by_default(inst, telemetry, tiny_model, monkeypatch):
    model, tok = tiny_model
    model.generate(**tok("secret prompt", return_tensors="pt"), max_new_tokens=3, tokenizer=tok)
    a = telemetry.spans()[0].attributes
    assert sc.GEN_AI_INPUT_MESSAGES not in a and sc.GEN_AI_OUTPUT_MESSAGES not in a


def test_content_captured_with_redaction_when_opted_in(telemetry, tiny_model, monkeypatch):
    import json

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    model, tok = tiny_model
    instrumentor = TransformersInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        attach_tokenizer(model, tok)
        model.generate(**tok("mail bob@example.com now", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    finally:
        instrumentor.uninstrument()
        del model._otel_llm_tokenizer
    a = telemetry.spans()[0].attributes
    (msg,) = json.loads(a[sc.GEN_AI_INPUT_MESSAGES])
    assert msg["role"] == "user"
    assert "bob@example.com" not in msg["parts"][0]["content"]
    assert "[REDACTED_EMAIL]" in msg["parts"][0]["content"]
    (out,) = json.loads(a[sc.GEN_AI_OUTPUT_MESSAGES])
    assert out["role"] == "assistant" and out["finish_reason"] in {"stop", "length"}


def test_pipeline_produces_one_span(inst, telemetry, tiny_model):
    from transformers import pipeline

    model, tok = tiny_model
    pipe = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
    pipe("hello there", max_new_tokens=5, do_sample=False)
    (span,) = telemetry.spans()
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == len(tok("hello there")["input_ids"])
    assert 0 < span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] <= 5


def test_pipeline_content_uses_the_pipelines_tokenizer(telemetry, tiny_model, monkeypatch):
    import json

    from transformers import pipeline

    model, tok = tiny_model
    instrumentor = TransformersInstrumentor()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                            capture_content=True)
    try:
        pipe = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")
        pipe("call 4111 1111 1111 1111 now", max_new_tokens=4, do_sample=False)
    finally:
        instrumentor.uninstrument()
    (msg,) = json.loads(telemetry.spans()[0].attributes[sc.GEN_AI_INPUT_MESSAGES])
    assert "[REDACTED_CARD]" in msg["parts"][0]["content"] and "4111" not in msg["parts"][0]["content"]


def test_num_return_sequences_counts_each_choice(inst, telemetry, tiny_model):
    model, tok = tiny_model
    enc = tok("sample me", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=6, do_sample=True, num_return_sequences=3)
    a = telemetry.spans()[0].attributes
    assert a[sc.GEN_AI_REQUEST_CHOICE_COUNT] == 3
    assert list(a[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == [enc["input_ids"].shape[1]]
    expected = expected_output_counts(out[:, enc["input_ids"].shape[1] :], tok.eos_token_id)
    assert list(a[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE]) == expected and len(expected) == 3


def test_inputs_embeds_only(inst, telemetry, tiny_model):
    model, tok = tiny_model
    ids = tok("embed me please", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids)
    out = model.generate(inputs_embeds=embeds, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    a = telemetry.spans()[0].attributes
    assert out.shape[1] == 5  # generate() returns only new tokens here
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == ids.shape[1]
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    assert telemetry.points(sc.OTEL_LLM_SERVER_TOKEN_GAP)[0].count == 4
