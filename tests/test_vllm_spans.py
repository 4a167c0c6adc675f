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


@pytest.fixture
def fake_vllm(monkeypatch):
    """Install the stand-in as importable ``vllm.v1.metrics.stats`` for the patching path."""
    pkg = {}
    for name in ("vllm", "vllm.v1", "vllm.v1.metrics", "vllm.v1.metrics.stats"):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name != "vllm.v1.metrics.stats")
        mod.__path__ = []
        pkg[name] = mod
        monkeypatch.setitem(sys.modules, name, mod)

    class IterationStats:
        def __init__(self, ts):
            self.iteration_timestamp = ts
            self.finished = []

        def update_from_finished_request(self, finish_reason, num_prompt_tokens, max_tokens_param, req_stats):
            self.finished.append((finish_reason, num_prompt_tokens))

    pkg["vllm.v1.metrics.stats"].IterationStats = IterationStats
    pkg["vllm.v1.metrics"].stats = pkg["vllm.v1.metrics.stats"]
    return IterationStats


def test_instrumentor_wraps_the_engine_hook_and_uninstrument_restores(fake_vllm, telemetry):
    original = fake_vllm.update_from_finished_request
    inst = VLLMInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, model_name="served", skip_dep_check=True)
    try:
        it = fake_vllm(ts=1000.56)
        it.update_from_finished_request(FinishReason.LENGTH, 7, 32, _stats())
        assert it.finished == [(FinishReason.LENGTH, 7)]  # vLLM's own bookkeeping ran unchanged
        (root,) = [s for s in telemetry.spans() if s.name.startswith("vllm.request")]
        assert root.attributes[sc.GEN_AI_REQUEST_MODEL] == "served"
        assert root.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
        # a broken stats object never breaks vLLM
        it.update_from_finished_request(FinishReason.STOP, 1, None, object())
        assert len(it.finished) == 2
    finally:
        inst.uninstrument()
    assert fake_vllm.update_from_finished_request is original


def test_without_vllm_instrument_logs_one_line_and_does_nothing(caplog):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    inst = VLLMInstrumentor()
    with caplog.at_level(logging.WARNING):
        assert inst.instrument() is None
    assert len([r for r in caplog.records if "vllm is not installed" in r.getMessage()]) == 1
    assert inst._is_instrumented_by_opentelemetry is False
