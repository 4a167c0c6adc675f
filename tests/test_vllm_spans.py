"""VLLMInstrumentor and its span builder.

vLLM cannot be installed here (it needs a CUDA GPU), so the engine side is a
faithful stand-in: ``RequestStateStats`` below copies the field names and
clock semantics of vllm/v1/metrics/stats.py (arrival_time is wall clock in the
API-server process; queued/scheduled/first/last token timestamps are
``time.monotonic()`` in the engine-core process), and ``IterationStats``
exposes the same hook, ``update_from_finished_request(finish_reason,
num_prompt_tokens, max_tokens_param, req_stats)`` with ``iteration_timestamp``.
"""

from __future__ import annotations

import enum
import importlib.machinery
import logging
import sys
import types
from dataclasses import dataclass

import pytest

from otel_llm import semconv as sc
from otel_llm.instrumentation.vllm import VLLMInstrumentor, build_request_span


@dataclass
class RequestStateStats:  # field-for-field stand-in of vllm.v1.metrics.stats.RequestStateStats
    num_generation_tokens: int = 0
    arrival_time: float = 0.0
    queued_ts: float = 0.0
    scheduled_ts: float = 0.0
    first_token_ts: float = 0.0
    last_token_ts: float = 0.0
    first_token_latency: float = 0.0
    is_corrupted: bool = False


class FinishReason(enum.IntEnum):  # vllm.v1.engine.FinishReason
    STOP = 0
    LENGTH = 1
    ABORT = 2

    def __str__(self) -> str:
        return ("stop", "length", "abort")[self.value]


def _stats(arrival=1000.0, mono0=50.0, queue=0.2, prefill=0.05, decode=0.31, tokens=32):
    return RequestStateStats(
        num_generation_tokens=tokens,
        arrival_time=arrival,
        queued_ts=mono0,
        scheduled_ts=mono0 + queue,
        first_token_ts=mono0 + queue + prefill,
        last_token_ts=mono0 + queue + prefill + decode,
        first_token_latency=0.01 + queue + prefill,
    )


def test_span_tree_keeps_vllm_intervals(telemetry):
    tracer = telemetry.tracer_provider.get_tracer("t")
    st = _stats()
    finished_at = 1000.0 + 0.01 + 0.2 + 0.05 + 0.31
    build_request_span(tracer, st, finished_at=finished_at, finish_reason=FinishReason.STOP,
                       num_prompt_tokens=12, max_tokens=64, model="m")
    spans = {s.name: s for s in telemetry.spans()}
    root = spans["vllm.request m"]
    assert root.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 12
    assert root.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 32
    assert root.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert root.attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert root.attributes[sc.OTEL_LLM_TPOT] == pytest.approx(0.31 / 31)
    assert root.start_time == int(1000.0 * 1e9)
    assert root.end_time == int(finished_at * 1e9)
    for stage, dur in (("queue", 0.2), ("prefill", 0.05), ("decode", 0.31)):
        child = spans[stage]
        assert child.parent.span_id == root.context.span_id
        assert child.attributes[sc.OTEL_LLM_STAGE] == stage
        assert (child.end_time - child.start_time) / 1e9 == pytest.approx(dur, abs=1e-6)
    # children tile the engine-side part of the request, ending when it ends
    assert spans["queue"].end_time == spans["prefill"].start_time
    assert spans["decode"].end_time == root.end_time
    assert "error.type" not in root.attributes


def test_aborted_before_first_token_has_no_invented_stages(telemetry):
    tracer = telemetry.tracer_provider.get_tracer("t")
    st = RequestStateStats(arrival_time=10.0, queued_ts=5.0)  # never scheduled
    build_request_span(tracer, st, finished_at=10.5, finish_reason=FinishReason.ABORT)
    (root,) = telemetry.spans()
    assert root.attributes[sc.ERROR_TYPE] == "abort"
    assert root.status.is_ok is False


def _install(monkeypatch, names):
    mods = {}
    for name in names:
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []
        mods[name] = mod
        monkeypatch.setitem(sys.modules, name, mod)
    return mods


class IterationStats:  # vllm.v1.metrics.stats.IterationStats: the finished-request hook
    def __init__(self, ts):
        self.iteration_timestamp = ts
        self.finished = []

    def update_from_finished_request(self, finish_reason, num_prompt_tokens, max_tokens_param, req_stats, **kw):
        self.finished.append((finish_reason, num_prompt_tokens))


@pytest.fixture
def fake_vllm(monkeypatch):
    """Stand-ins importable as ``vllm.v1.engine.output_processor`` / ``vllm.v1.metrics.stats``.

    Their call flow copies vLLM's: ``add_request`` runs in the request's task and
    creates the RequestState; ``process_outputs`` later calls
    ``_update_stats_from_finished(req_state, finish_reason, iteration_stats)``.
    """
    mods = _install(monkeypatch, ["vllm", "vllm.v1", "vllm.v1.engine", "vllm.v1.engine.output_processor",
                                  "vllm.v1.metrics", "vllm.v1.metrics.stats"])

    class RequestState:
        def __init__(self, request):
            self.request_id = request.request_id
            self.external_req_id = request.external_req_id
            self.prompt_len = len(request.prompt_token_ids)
            self.max_tokens_param = request.max_tokens
            self.temperature = request.temperature
            self.top_p = request.top_p
            self.trace_headers = request.trace_headers
            self.stats = _stats()

    class OutputProcessor:
        def __init__(self):
            self.request_states = {}

        def add_request(self, request, prompt, parent_req=None, request_index=0, queue=None):
            self.request_states[request.request_id] = RequestState(request)

        def _update_stats_from_finished(self, req_state, finish_reason, iteration_stats):
            if iteration_stats is None:
                return
            iteration_stats.update_from_finished_request(
                finish_reason=finish_reason, num_prompt_tokens=req_state.prompt_len,
                max_tokens_param=req_state.max_tokens_param, req_stats=req_state.stats, num_cached_tokens=0)

    mods["vllm.v1.engine.output_processor"].OutputProcessor = OutputProcessor
    mods["vllm.v1.metrics.stats"].IterationStats = IterationStats
    return OutputProcessor


@dataclass
class EngineCoreRequest:  # the fields of vllm.v1.engine.EngineCoreRequest the state reads
    request_id: str
    external_req_id: str
    prompt_token_ids: list
    max_tokens: int = 32
    temperature: float = 0.7
    top_p: float = 0.9
    trace_headers: dict | None = None


def test_request_span_is_parented_by_the_http_span(fake_vllm, telemetry):
    original = fake_vllm._update_stats_from_finished
    inst = VLLMInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, model_name="served", skip_dep_check=True)
    tracer = telemetry.tracer_provider.get_tracer("http")
    try:
        proc = fake_vllm()
        with tracer.start_as_current_span("chat served") as http_span:  # e.g. the middleware's SERVER span
            proc.add_request(EngineCoreRequest("r1", "chatcmpl-abc", [1, 2, 3]), "hi")
        # later, in vLLM's output-handler task (no current span there)
        it = IterationStats(ts=1000.56)
        proc._update_stats_from_finished(proc.request_states["r1"], FinishReason.LENGTH, it)
        assert it.finished == [(FinishReason.LENGTH, 3)]  # vLLM's own bookkeeping ran unchanged
        (root,) = [s for s in telemetry.spans() if s.name.startswith("vllm.request")]
        assert root.parent.span_id == http_span.get_span_context().span_id
        assert root.attributes[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-abc"
        assert root.attributes[sc.GEN_AI_REQUEST_MODEL] == "served"
        assert root.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 3
        assert root.attributes[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.7
        assert root.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
        assert {s.name for s in telemetry.spans()} >= {"queue", "prefill", "decode"}

        # no span in the request's task, but W3C headers on the request: they parent the span
        telemetry.clear()
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        proc.add_request(EngineCoreRequest("r2", "cmpl-2", [1], trace_headers={
            "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}), "x")
        proc._update_stats_from_finished(proc.request_states["r2"], FinishReason.STOP, IterationStats(1000.56))
        (root,) = [s for s in telemetry.spans() if s.name.startswith("vllm.request")]
        assert format(root.context.trace_id, "032x") == trace_id

        # stats we cannot read never break vLLM: its bookkeeping still runs, the error is ours to count
        proc.add_request(EngineCoreRequest("r3", "cmpl-3", [1]), "x")
        proc.request_states["r3"].stats.arrival_time = "not a time"
        it = IterationStats(1.0)
        proc._update_stats_from_finished(proc.request_states["r3"], FinishReason.STOP, it)
        assert it.finished == [(FinishReason.STOP, 1)]
    finally:
        inst.uninstrument()
    assert fake_vllm._update_stats_from_finished is original


def test_older_vllm_falls_back_to_the_iteration_stats_hook(monkeypatch, telemetry):
    mods = _install(monkeypatch, ["vllm", "vllm.v1", "vllm.v1.engine", "vllm.v1.engine.output_processor",
                                  "vllm.v1.metrics", "vllm.v1.metrics.stats"])

    class LegacyIterationStats(IterationStats):
        pass

    mods["vllm.v1.metrics.stats"].IterationStats = LegacyIterationStats  # no OutputProcessor hook here
    original = LegacyIterationStats.update_from_finished_request
    inst = VLLMInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, skip_dep_check=True)
    try:
        LegacyIterationStats(1000.56).update_from_finished_request(FinishReason.STOP, 5, 8, _stats())
        (root,) = [s for s in telemetry.spans() if s.name == "vllm.request"]
        assert root.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5
    finally:
        inst.uninstrument()
    assert LegacyIterationStats.update_from_finished_request is original


def test_without_vllm_instrument_logs_one_line_and_does_nothing(caplog):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    inst = VLLMInstrumentor()
    with caplog.at_level(logging.WARNING):
        assert inst.instrument() is None
    assert len([r for r in caplog.records if "vllm is not installed" in r.getMessage()]) == 1
    assert inst._is_instrumented_by_opentelemetry is False
