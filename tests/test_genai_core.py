"""The shared GenAI core: TokenTimeline maths, instruments, record_generation."""

from __future__ import annotations

import numpy as np
import pytest

from otel_llm import semconv as sc
from otel_llm._gpu import set_process_gpu_uuids
from otel_llm.instrumentation._genai import (
    GenAIInstruments,
    TokenTimeline,
    metric_attributes,
    record_generation,
    stall_threshold_s,
    stamp_gpu_uuids,
)

MS = 1_000_000  # ns


def _timeline(start_ms: float, marks_ms: list[float]) -> TokenTimeline:
    tl = TokenTimeline(start_ns=int(start_ms * MS))
    for m in marks_ms:
        tl.append(int(m * MS))
    return tl


def test_timeline_maths_match_numpy():
    rng = np.random.default_rng(7)
    gaps_ms = rng.gamma(2.0, 10.0, size=63)
    gaps_ms[[5, 40]] = [400.0, 900.0]  # two stalls
    marks = list(120.0 + np.concatenate([[0.0], np.cumsum(gaps_ms)]))
    s = _timeline(20.0, marks).summary(stall_threshold=0.25)
    gaps = np.diff(np.array([int(m * MS) for m in marks])) / 1e9
    assert s.tokens == 64
    assert s.ttft == pytest.approx(0.100, abs=1e-6)
    assert len(s.gaps) == 63
    assert s.tpot == pytest.approx(gaps.mean(), rel=1e-9)
    for got, q in ((s.gap_p50, 50), (s.gap_p90, 90), (s.gap_p99, 99)):
        assert got == pytest.approx(np.percentile(gaps, q), rel=1e-9)
    assert s.gap_max == pytest.approx(0.9, abs=1e-6)
    assert s.stalls == int((gaps > 0.25).sum()) == 2


def test_timeline_edge_cases():
    empty = TokenTimeline().summary(0.25)
    assert (empty.tokens, empty.ttft, empty.gaps) == (0, None, [])
    one = _timeline(0.0, [5.0]).summary(0.25)
    assert one.tokens == 1 and one.ttft == pytest.approx(0.005) and one.tpot is None and one.gaps == []
    cut = _timeline(0.0, [1.0, 2.0, 4.0, 8.0]).summary(0.25, tokens=3)  # later marks dropped (undone steps)
    assert cut.tokens == 3 and cut.gap_max == pytest.approx(0.002)


def test_mark_appends_monotonic_times():
    tl = TokenTimeline()
    for _ in range(5):
        tl.mark()
    assert len(tl) == 5 and tl.times == sorted(tl.times) and tl.times[0] >= tl.start_ns


def test_stall_threshold_env(monkeypatch):
    monkeypatch.delenv("OTEL_LLM_STALL_THRESHOLD_MS", raising=False)
    assert stall_threshold_s() == 0.25
    monkeypatch.setenv("OTEL_LLM_STALL_THRESHOLD_MS", "100")
    assert stall_threshold_s() == 0.1
    assert stall_threshold_s(40) == 0.04
    monkeypatch.setenv("OTEL_LLM_STALL_THRESHOLD_MS", "slow")
    with pytest.raises(ValueError, match="OTEL_LLM_STALL_THRESHOLD_MS"):
        stall_threshold_s()


def test_record_generation_span_and_metrics(telemetry):
    inst = GenAIInstruments(telemetry.meter_provider.get_meter("t"))
    tracer = telemetry.tracer_provider.get_tracer("t")
    summary = _timeline(0.0, [50.0, 60.0, 70.0, 400.0]).summary(0.25)
    attrs = metric_attributes(sc.OPERATION_TEXT_COMPLETION, sc.PROVIDER_TRANSFORMERS, "tiny", "tiny")
    with tracer.start_as_current_span("gen") as span:
        record_generation(span, inst, attrs, duration_s=0.5, summary=summary, input_tokens=7, output_tokens=4)
    (sp,) = telemetry.spans()
    a = sp.attributes
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == 7 and a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 4
    assert a[sc.OTEL_LLM_TTFT] == pytest.approx(0.05)
    assert a[sc.OTEL_LLM_GAP_MAX] == pytest.approx(0.33)
    assert a[sc.OTEL_LLM_GAP_STALLS] == 1
    (ttft,) = telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    assert ttft.sum == pytest.approx(0.05) and dict(ttft.attributes) == attrs
    # gap points: one per gap, recorded at collection time, with LLM buckets
    (gap,) = telemetry.points(sc.OTEL_LLM_SERVER_TOKEN_GAP)
    assert gap.count == 3 and gap.sum == pytest.approx(0.35)
    assert tuple(gap.explicit_bounds) == sc.BUCKETS_GAP_S
    (stalls,) = telemetry.points(sc.OTEL_LLM_SERVER_STALLS)
    assert stalls.value == 1
    usage = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in telemetry.points(sc.GEN_AI_CLIENT_TOKEN_USAGE)}
    assert usage == {"input": 7, "output": 4}
    assert "otel_llm.internal.deferred_flush" not in telemetry.metrics()  # the flush hook emits nothing


def test_errors_skip_ttft_metric(telemetry):
    inst = GenAIInstruments(telemetry.meter_provider.get_meter("t"))
    summary = _timeline(0.0, [50.0, 60.0]).summary(0.25)
    attrs = metric_attributes("text_completion", "p", "m", error_type="ValueError")
    record_generation(None, inst, attrs, duration_s=0.1, summary=summary)
    assert telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == []
    (dur,) = telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION)
    assert dur.attributes[sc.ERROR_TYPE] == "ValueError"


def test_advisory_buckets_without_views():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])  # no otel-llm Views
    inst = GenAIInstruments(mp.get_meter("t"))
    inst.time_to_first_token.record(0.03, {})
    points = [
        p
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
        for p in m.data.data_points
    ]
    assert tuple(points[0].explicit_bounds) == sc.BUCKETS_TTFT_S
    mp.shutdown()


def test_deferred_gap_queue_is_bounded(telemetry, monkeypatch):
    from otel_llm import _selftelemetry
    from otel_llm.instrumentation import _genai

    monkeypatch.setattr(_genai, "_MAX_PENDING_GAPS", 10)
    inst = GenAIInstruments(telemetry.meter_provider.get_meter("t"))
    before = _selftelemetry.dropped_counts().get(("token_gap", "queue_full"), 0)
    for _ in range(4):
        inst.defer_gaps([0.01] * 4, {}, None)
    assert _selftelemetry.dropped_counts()[("token_gap", "queue_full")] == before + 8
    (gap,) = telemetry.points(sc.OTEL_LLM_SERVER_TOKEN_GAP)
    assert gap.count == 8


def test_stamp_gpu_uuids(telemetry):
    tracer = telemetry.tracer_provider.get_tracer("t")
    set_process_gpu_uuids(["GPU-aaaa"])
    try:
        with tracer.start_as_current_span("a") as span:
            stamp_gpu_uuids(span)
    finally:
        set_process_gpu_uuids(None)
    assert telemetry.spans()[0].attributes[sc.OTEL_LLM_GPU_UUIDS] == ("GPU-aaaa",)


def test_pre_aggregated_gaps_equal_per_record_histogram(telemetry):
    """The producer path counts exactly what one SDK record() per gap would."""
    rng = np.random.default_rng(3)
    inst = GenAIInstruments(telemetry.meter_provider.get_meter("fast"), meter_provider=telemetry.meter_provider)
    reference = telemetry.meter_provider.get_meter("ref").create_histogram("ref.gaps", unit="s")
    attrs = metric_attributes("text_completion", "p", "m", "m")
    for _ in range(20):
        gaps = list(rng.gamma(2.0, 0.01, size=int(rng.integers(1, 64))))
        gaps += [0.01, 0.05]  # values exactly on bucket bounds go to the lower bucket
        inst.record_gaps(sorted(gaps), attrs)
        for g in gaps:
            reference.record(g, attrs)
    (fast,) = telemetry.points(sc.OTEL_LLM_SERVER_TOKEN_GAP)
    assert inst.token_gap is not None and fast.explicit_bounds == list(sc.BUCKETS_GAP_S)
    # the reference histogram uses the SDK default buckets: compare against a re-binning of the same values
    (ref,) = telemetry.points("ref.gaps")
    assert fast.count == ref.count and fast.sum == pytest.approx(ref.sum)
    assert fast.min == ref.min and fast.max == ref.max
    assert dict(fast.attributes) == attrs


def test_pre_aggregated_gap_buckets_match_sdk_buckets():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_llm._views import default_views

    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader], views=default_views())
    fast = GenAIInstruments(mp.get_meter("fast"), meter_provider=mp)
    slow = GenAIInstruments(mp.get_meter("slow"))  # deferred SDK path, same name, other scope
    rng = np.random.default_rng(5)
    gaps = sorted(list(rng.lognormal(-4, 1.2, size=500)) + list(sc.BUCKETS_GAP_S[:5]))
    fast.record_gaps(gaps, {"k": "v"})
    slow.record_gaps(gaps, {"k": "v"})
    by_scope = {
        sm.scope.name: m.data.data_points[0]
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == sc.OTEL_LLM_SERVER_TOKEN_GAP
    }
    a, b = by_scope["fast"], by_scope["slow"]
    assert list(a.bucket_counts) == list(b.bucket_counts)
    assert (a.count, a.min, a.max) == (b.count, b.min, b.max) and a.sum == pytest.approx(b.sum)
    fast.close()
    assert sc.OTEL_LLM_SERVER_TOKEN_GAP not in {
        m.name for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
        for m in sm.metrics if sm.scope.name == "fast"
    }
    mp.shutdown()


def test_pre_aggregated_record_matches_sdk_and_keeps_exemplars(telemetry, monkeypatch):
    """record() on the fast path: same point as the SDK instrument, exemplar from the sampled span."""
    fast = GenAIInstruments(telemetry.meter_provider.get_meter("fast"), meter_provider=telemetry.meter_provider)
    assert fast.preaggregated
    slow = GenAIInstruments(telemetry.meter_provider.get_meter("slow"), meter_provider=telemetry.meter_provider,
                            preaggregate=False)
    assert not slow.preaggregated
    tracer = telemetry.tracer_provider.get_tracer("t")
    rng = np.random.default_rng(11)
    values = list(rng.lognormal(-3, 1.0, size=200)) + list(sc.BUCKETS_TTFT_S)  # bounds: lower bucket
    with tracer.start_as_current_span("req") as span:
        for v in values:
            fast.time_to_first_token.record(v, {"m": "x"})
            slow.time_to_first_token.record(v, {"m": "x"})
    fast.time_to_first_token.record(float("nan"), {"m": "x"})  # dropped and counted, never raised
    data = telemetry.metric_reader.get_metrics_data()
    by_scope = {
        sm.scope.name: m.data.data_points[0]
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN
    }
    a, b = by_scope["fast"], by_scope["slow"]
    assert list(a.bucket_counts) == list(b.bucket_counts) and list(a.explicit_bounds) == list(b.explicit_bounds)
    assert (a.count, a.min, a.max) == (b.count, b.min, b.max) and a.sum == pytest.approx(b.sum)
    assert a.exemplars and {e.trace_id for e in a.exemplars} == {span.get_span_context().trace_id}
    monkeypatch.setenv("OTEL_LLM_PREAGGREGATE", "false")
    assert not GenAIInstruments(telemetry.meter_provider.get_meter("env"), meter_provider=telemetry.meter_provider).preaggregated


def test_exemplar_decision_follows_the_trace_based_filter(telemetry):
    """One decision per request: the sampled span's ids, nothing for an unsampled or absent span."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    inst = GenAIInstruments(telemetry.meter_provider.get_meter("ex"), meter_provider=telemetry.meter_provider)
    assert inst.preaggregated
    with telemetry.tracer_provider.get_tracer("t").start_as_current_span("req") as span:
        ctx = span.get_span_context()
        assert inst.exemplar_ids(trace.set_span_in_context(span)) == (ctx.span_id, ctx.trace_id)
        assert inst.exemplar_ids(None) == (ctx.span_id, ctx.trace_id)  # None = the current context
    unsampled = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(0)))
    assert inst.exemplar_ids(trace.set_span_in_context(unsampled)) is None
    assert inst.exemplar_ids(None) is None  # no span at all
