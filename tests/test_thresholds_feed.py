"""The metrics path: an SDK metric reader's data feeds the threshold detector."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from otel_llm.processors._metrics_feed import MetricsFeed, ThresholdMetricExporter
from otel_llm.processors._thresholds import ThresholdConfig, ThresholdProcessor

from otel_llm import semconv


def _proc():
    return ThresholdProcessor(ThresholdConfig(model="robust", refit="inline", min_history=5), emit_metrics=False)


def test_histogram_interval_means_and_gauges_feed_series():
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    ttft = meter.create_histogram(semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, unit="s")
    kv = meter.create_gauge(semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION)
    ignored = meter.create_counter("something.else")
    proc = _proc()
    feed = MetricsFeed(proc)
    attrs = {semconv.GEN_AI_REQUEST_MODEL: "tiny"}
    for i in range(12):
        for _ in range(3):
            ttft.record(0.05 + 0.01 * i, attrs)
        kv.set(0.1 * (i % 5), attrs)
        ignored.add(1)
        feed.feed(reader.get_metrics_data())
    states = {s.metric: s for s in proc.states()}
    assert set(states) == {semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION}
    h = states[semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN]
    assert h.n == 12 and abs(h.value - 0.16) < 1e-9  # the interval mean, not the cumulative mean
    assert h.log  # latency: log scale
    assert states[semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION].n == 12
    assert h.attributes == attrs
    provider.shutdown()


def test_wrapping_exporter_feeds_and_forwards():
    forwarded = []

    class Downstream:
        _preferred_temporality = {}
        _preferred_aggregation = {}

        def export(self, data, timeout_millis=10_000, **kw):
            from opentelemetry.sdk.metrics.export import MetricExportResult

            forwarded.append(data)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kw):
            pass

    proc = _proc()
    exporter = ThresholdMetricExporter(proc, Downstream())
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    g = provider.get_meter("t").create_gauge(semconv.OTEL_LLM_SERVER_REQUESTS_WAITING)
    for i in range(3):
        g.set(i)
        reader.force_flush()
    assert len(forwarded) == 3
    assert proc.states()[0].n == 3
    provider.shutdown()
