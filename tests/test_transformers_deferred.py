"""generate() finished off the request path (OTEL_LLM_DEFER_FINISH): flush makes everything visible, counts exact."""

from __future__ import annotations

import threading

import pytest
import torch
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm import _selftelemetry
from otel_llm import semconv as sc
from otel_llm._views import default_views
from otel_llm.instrumentation._finisher import FINISHER, Finisher, FlushSpanProcessor
from otel_llm.instrumentation._genai import metrics_recorded_by_caller
from otel_llm.instrumentation.transformers import TransformersInstrumentor
from otel_llm.testing import expected_output_counts, points_by_name

pytest.importorskip("transformers")
from transformers.generation.utils import GenerationMixin

N = 12


class BatchTelemetry:
    """Production-shaped providers: a batch span processor (nothing exported before a flush)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter, schedule_delay_millis=600_000))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], views=default_views())

    def flushed_spans(self):
        assert self.tracer_provider.force_flush(10_000)
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def batch():
    tel = BatchTelemetry()
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    yield tel
    inst.uninstrument()
    tel.tracer_provider.shutdown()
    tel.meter_provider.shutdown()



def test_deferred_call_is_queued_then_flush_exports_it_complete(batch, tiny_model):
    model, tok = tiny_model
    enc = tok("the quick brown fox", return_tensors="pt")
    FINISHER.flush()
    gate = threading.Lock()
    with gate:  # hold the worker back: the call must be waiting, not finished, when generate() returns
        started = threading.Event()
        FINISHER.submit(lambda: started.set() or gate.acquire() or gate.release())
        assert started.wait(5.0)  # the worker is inside the gate job: nothing queued
        model.generate(**enc, max_new_tokens=N, min_new_tokens=N, do_sample=False)
        assert FINISHER.pending == 1
    (span,) = batch.flushed_spans()
    assert FINISHER.pending == 0
    a = span.attributes
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == enc["input_ids"].shape[1]
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == N
    assert a[sc.GEN_AI_REQUEST_MAX_TOKENS] == N and a[sc.GEN_AI_REQUEST_STREAM] is False
    duration_s = (span.end_time - span.start_time) / 1e9
    assert 0 < a[sc.OTEL_LLM_TTFT] < duration_s < 30  # end_time captured on return, not when finished
    assert a[sc.OTEL_LLM_GAP_P50] <= a[sc.OTEL_LLM_GAP_P99] <= a[sc.OTEL_LLM_GAP_MAX]
    points = points_by_name(batch.reader)
    (gaps,) = points[sc.OTEL_LLM_SERVER_TOKEN_GAP]
    assert gaps.count == N - 1
    assert points[sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN][0].count == 1


def test_metric_collection_flushes_deferred_calls(batch, tiny_model):
    model, tok = tiny_model
    enc = tok("count me", return_tensors="pt")
    for _ in range(3):
        model.generate(**enc, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    points = points_by_name(batch.reader)  # no span flush first: the collection drains the queue itself
    assert points[sc.GEN_AI_SERVER_REQUEST_DURATION][0].count == 3
    usage = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in points[sc.GEN_AI_CLIENT_TOKEN_USAGE]}
    assert usage == {"input": 3 * enc["input_ids"].shape[1], "output": 12}


def test_sdk_histograms_path_collects_deferred_calls(monkeypatch, tiny_model):
    monkeypatch.setenv("OTEL_LLM_PREAGGREGATE", "false")  # observable-callback flush, under the SDK's collect lock
    tel = BatchTelemetry()
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    try:
        model, tok = tiny_model
        model.generate(**tok("x", return_tensors="pt"), max_new_tokens=5, min_new_tokens=5, do_sample=False)
        points = points_by_name(tel.reader)
        assert points[sc.GEN_AI_SERVER_REQUEST_DURATION][0].count == 1
        assert points[sc.OTEL_LLM_SERVER_TOKEN_GAP][0].count == 4
    finally:
        inst.uninstrument()
        tel.tracer_provider.shutdown()
        tel.meter_provider.shutdown()


def test_flush_processor_runs_before_the_exporters(batch, tiny_model):
    model, tok = tiny_model
    model.generate(**tok("x", return_tensors="pt"), max_new_tokens=2, do_sample=False)
    procs = batch.tracer_provider._active_span_processor._span_processors
    assert isinstance(procs[0], FlushSpanProcessor) and sum(isinstance(p, FlushSpanProcessor) for p in procs) == 1
    assert len(batch.flushed_spans()) == 1


def test_counts_exact_left_padding_batch_of_three_eos_mid_batch(batch, tiny_model):
    model, tok = tiny_model
    prompts = ["hi", "a considerably longer prompt that forces left padding", "medium sized prompt"]
    enc = tok(prompts, return_tensors="pt", padding=True)
    assert (enc["attention_mask"] == 0).any()
    width = enc["input_ids"].shape[1]
    with torch.no_grad():
        probe = GenerationMixin.generate.__wrapped__(model, **enc, max_new_tokens=N, do_sample=False)
    eos = int(probe[1, width + 3])  # a token the middle row really produces at step 3
    out = model.generate(**enc, max_new_tokens=N, do_sample=False, eos_token_id=eos)
    expected = expected_output_counts(out[:, width:], eos)
    assert expected[1] <= 4
    (span,) = batch.flushed_spans()
    a = span.attributes
    assert list(a[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == enc["attention_mask"].sum(-1).tolist()
    assert list(a[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE]) == expected
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == sum(expected) and a[sc.OTEL_LLM_BATCH_SIZE] == 3
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS][1] == "stop"


def test_unmasked_padded_ids_counted_like_generate_infers(batch, tiny_model):
    model, tok = tiny_model
    enc = tok(["hi", "a longer prompt with padding"], return_tensors="pt", padding=True)
    ids = enc["input_ids"]
    pad = tok.pad_token_id
    assert pad is not None and pad != tok.eos_token_id and (ids == pad).any()
    model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=pad)
    (span,) = batch.flushed_spans()
    assert list(span.attributes[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == (ids != pad).sum(-1).tolist()


def test_caller_reusing_its_tensors_cannot_change_the_counts(batch, tiny_model):
    model, tok = tiny_model
    enc = tok(["hello there", "a considerably longer prompt here"], return_tensors="pt", padding=True)
    expected_in = enc["attention_mask"].sum(-1).tolist()
    gate = threading.Lock()
    with gate:
        FINISHER.submit(lambda: gate.acquire() and gate.release())
        out = model.generate(**enc, max_new_tokens=N, min_new_tokens=N, do_sample=False)
        enc["attention_mask"].zero_()  # a server refilling its buffers for the next request
        out.fill_(0)
    (span,) = batch.flushed_spans()
    a = span.attributes
    assert list(a[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == expected_in
    assert list(a[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE]) == [N, N]


def test_metrics_recorded_by_caller_is_honoured_when_deferred(batch, tiny_model):
    model, tok = tiny_model
    with metrics_recorded_by_caller():
        model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert len(batch.flushed_spans()) == 1
    assert sc.GEN_AI_SERVER_REQUEST_DURATION not in points_by_name(batch.reader)


def test_simple_span_processor_keeps_spans_synchronous(telemetry, tiny_model):
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        model, tok = tiny_model
        model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3, do_sample=False)
        assert len(telemetry.spans()) == 1  # visible at once, no flush
    finally:
        inst.uninstrument()


def test_defer_switched_off_by_env(monkeypatch, tiny_model):
    monkeypatch.setenv("OTEL_LLM_DEFER_FINISH", "false")
    tel = BatchTelemetry()
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    try:
        model, tok = tiny_model
        FINISHER.flush()
        model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3, do_sample=False)
        assert FINISHER.pending == 0
        procs = tel.tracer_provider._active_span_processor._span_processors
        assert not any(isinstance(p, FlushSpanProcessor) for p in procs)
        assert len(tel.flushed_spans()) == 1
    finally:
        inst.uninstrument()
        tel.tracer_provider.shutdown()


def test_bad_defer_env_value_is_rejected(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_DEFER_FINISH", "sometimes")
    with pytest.raises(ValueError, match="OTEL_LLM_DEFER_FINISH"):
        TransformersInstrumentor().instrument(tracer_provider=TracerProvider())
    TransformersInstrumentor().uninstrument()


# -- the finisher itself --------------------------------------------------------
def test_finisher_runs_jobs_in_order_and_flush_waits_for_all():
    f = Finisher(poll_s=0.001, linger_s=0.01)
    seen: list[int] = []
    for i in range(50):
        f.submit(lambda i=i: seen.append(i))
    assert f.flush(5.0)
    assert seen == list(range(50)) and f.pending == 0


def test_finisher_full_queue_finishes_inline_nothing_dropped():
    f = Finisher(max_pending=0)
    seen: list[str] = []
    f.submit(lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]


def test_finisher_failing_job_is_reported_and_the_next_runs():
    _selftelemetry._reset_for_tests()
    f = Finisher(poll_s=0.001, linger_s=0.01)
    seen: list[int] = []

    def boom() -> None:
        raise RuntimeError("ours")

    f.submit(boom)
    f.submit(lambda: seen.append(1))
    assert f.flush(5.0)
    assert seen == [1]
    assert _selftelemetry.error_counts().get(("instrumentation.finisher", "RuntimeError"), 0) == 1


def test_finisher_wakes_after_idle():
    f = Finisher(poll_s=0.001, linger_s=0.005)
    done = threading.Event()
    f.submit(lambda: None)
    assert f.flush(5.0)
    deadline = threading.Event()
    for _ in range(200):  # wait until the worker has gone to sleep for want of jobs
        if f._idle:
            break
        deadline.wait(0.005)
    assert f._idle
    f.submit(done.set)
    assert done.wait(5.0)  # woken by the submit, not by a flush


def test_provider_shutdown_drains_queued_calls_before_the_exporter(tiny_model):
    tel = BatchTelemetry()
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    try:
        model, tok = tiny_model
        model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3, do_sample=False)
        tel.tracer_provider.shutdown()  # drains our queue before the exporter's shutdown
        assert len(tel.exporter.get_finished_spans()) == 1
    finally:
        inst.uninstrument()


def test_large_prompts_counted_on_the_tensor_path(batch, tiny_model, monkeypatch):
    from otel_llm.instrumentation.transformers import _wrapper

    monkeypatch.setattr(_wrapper, "SMALL", 1)  # every prompt counts as large: tensor reductions, no tolist
    model, tok = tiny_model
    enc = tok(["hi", "a longer prompt with padding"], return_tensors="pt", padding=True)
    pad = tok.pad_token_id
    model.generate(**enc, max_new_tokens=3, do_sample=False)
    model.generate(input_ids=enc["input_ids"], max_new_tokens=3, do_sample=False, pad_token_id=pad)
    masked, unmasked = batch.flushed_spans()
    expected = enc["attention_mask"].sum(-1).tolist()
    assert list(masked.attributes[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == expected
    assert list(unmasked.attributes[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE]) == (enc["input_ids"] != pad).sum(-1).tolist()


def test_uninstrument_finishes_queued_calls_first(tiny_model, monkeypatch):
    tel = BatchTelemetry()
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    model, tok = tiny_model
    # The worker is held by a gate job until uninstrument() has begun to flush, so our call is
    # certainly still queued when uninstrument() starts (otherwise the worker could finish it first
    # and the test would pass whatever uninstrument() does).
    gate = threading.Lock()
    gate.acquire()
    started, flushing = threading.Event(), threading.Event()
    FINISHER.submit(lambda: started.set() or gate.acquire() or gate.release())
    assert started.wait(5.0)
    model.generate(**tok("x", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert FINISHER.pending == 1
    flush = FINISHER.flush
    monkeypatch.setattr(FINISHER, "flush", lambda *a, **k: flushing.set() or flush(*a, **k))
    opener = threading.Thread(target=lambda: (flushing.wait(5.0), gate.release()))
    opener.start()
    instruments = inst._instruments
    inst.uninstrument()  # waits for the gate job, then runs ours while the instruments are attached
    opener.join(5.0)
    assert flushing.is_set() and FINISHER.pending == 0
    (point,) = instruments.request_duration.metric(0).data.data_points
    assert point.count == 1
    assert len(tel.flushed_spans()) == 1
    tel.tracer_provider.shutdown()
