"""In process, for real: the reference server (tiny torch model) with the detectors on its tracer provider."""

from __future__ import annotations

import time

import httpx
from otel_llm.processors import DetectionStream, from_readable_span
from otel_llm.processors.anomaly import RequestAnomalyProcessor
from otel_llm.processors.sdk import DetectorSpanProcessor, SpanSeriesFeed
from otel_llm.processors.thresholds import ThresholdConfig, ThresholdProcessor

from otel_llm import semconv
from otel_llm.testing import Telemetry


def test_slow_prefill_requests_are_flagged_with_ttft_named(tiny_model):
    from otel_llm.server import create_app, run_in_thread

    tel = Telemetry()
    stream = DetectionStream()
    sub = stream.subscribe()
    anomaly = RequestAnomalyProcessor("ecod", 0.05, refit="inline", min_fit=20, refit_every=1000,
                                      rate_threshold=0.05, min_anomalies=2, min_scored=5, stream=stream,
                                      emit_metrics=False)
    thresholds = ThresholdProcessor(ThresholdConfig(model="robust", refit="inline", min_history=5), stream=stream,
                                    emit_metrics=False)
    sp = DetectorSpanProcessor(anomaly, SpanSeriesFeed(thresholds, interval_s=0.2))
    model, tok = tiny_model
    app = create_app(model, tok, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider,
                     torch_threads=1)
    handle = run_in_thread(app)
    try:
        with httpx.Client(timeout=20) as client:
            # Warm the server up before the detectors see anything: a cold first request can take longer
            # than the injected 0.4 s, and with it in the training window the slow requests' TTFT would
            # not be the most extreme thing about them.
            for _ in range(2):
                assert client.post(handle.url + "/v1/completions",
                                   json={"prompt": "warm-up", "max_tokens": 8, "stream": True}).status_code == 200
            tel.tracer_provider.add_span_processor(sp)
            slowest = 0.0
            for i in range(24):
                t0 = time.perf_counter()
                r = client.post(handle.url + "/v1/completions",
                                json={"prompt": f"request {i}", "max_tokens": 8, "stream": True, "seed": i})
                slowest = max(slowest, time.perf_counter() - t0)
                assert r.status_code == 200
            assert sp.force_flush(10_000)
            assert anomaly.model is not None
            # Twice the slowest request the model may have learned from: on a busy machine a training request can
            # stall too, and a delay inside the training range would not be the most extreme thing about them.
            app.state.faults.set(prefill_delay_s=max(0.4, 2 * slowest))
            for i in range(3):
                client.post(handle.url + "/v1/completions",
                            json={"prompt": f"request {i}", "max_tokens": 8, "stream": True, "seed": i})
        assert sp.force_flush(10_000)
    finally:
        handle.stop()
        sp.shutdown()
        tel.shutdown()
    assert sp.processed == 27 and sp.dropped == 0
    dets = [d for d in sub.drain() if d.kind == "anomaly"]
    assert dets, "a burst of slow-prefill requests must open an anomaly detection"
    d = dets[0]
    assert "ttft" in d.explanation and len(d.trace_ids) >= 2
    # The per-request attribution of the slow requests names what was perturbed. (The detection's
    # aggregate spreads over every abnormal request in its 60 s window, so it is not asserted on.)
    records = [from_readable_span(sp_) for sp_ in tel.spans()]
    first_seen: dict[str, float] = {}
    for rec in records:
        first_seen[rec.trace_id] = min(rec.start, first_seen.get(rec.trace_id, rec.start))
    slow_traces = set(sorted(first_seen, key=first_seen.get)[-3:])  # the last three requests
    scores = [r for r in (anomaly.score_span(rec, learn=False) for rec in records if rec.trace_id in slow_traces)
              if r is not None]
    assert {r.trace_id for r in scores} == slow_traces, "the three slow-prefill requests are scored"
    for r in scores:
        assert r.anomalous
        top2 = sorted(r.contributions, key=r.contributions.get, reverse=True)[:2]
        assert set(top2) & {"ttft", "duration"}, r.explanation
    assert any(s.metric == semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN for s in thresholds.states())
