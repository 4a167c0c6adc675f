"""The metrics path: OTel metric points -> :class:`ThresholdProcessor`.

:func:`feed_metrics_data` takes SDK ``MetricsData`` (what a ``MetricExporter``
receives) and feeds one point per series and export:

* gauges and sums: the point's value;
* histograms: the mean of the observations since the previous export (from the
  change of cumulative ``sum`` / ``count``; delta temporality is used as is);
  an interval with no new observation feeds nothing.

Series = metric name + the point's attributes (metric attributes are
low-cardinality by convention). :class:`ThresholdMetricExporter` wraps any
exporter: it feeds the detector, then forwards the data unchanged. The
``otel-llm analyze`` service calls :meth:`ThresholdProcessor.observe` directly
with decoded OTLP points, which is the same per-point call.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from otel_llm.processors._model import Detection

from otel_llm import semconv
from otel_llm._selftelemetry import report_error

_COMPONENT = "metrics_feed"

#: Metrics fed by default (saturating gauges and latency histograms of the server).
DEFAULT_METRICS: frozenset[str] = frozenset({
    semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
    semconv.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN,
    semconv.GEN_AI_SERVER_REQUEST_DURATION,
    semconv.OTEL_LLM_SERVER_QUEUE_DURATION,
    semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION,
    semconv.OTEL_LLM_SERVER_REQUESTS_WAITING,
    semconv.OTEL_LLM_SERVER_REQUESTS_RUNNING,
    semconv.HW_GPU_MEMORY_UTILIZATION,
    semconv.HW_GPU_UTILIZATION,
})


class MetricsFeed:
    """Remembers cumulative histogram state between exports. Thread-safe enough for one exporter."""

    def __init__(self, thresholds: Any, include: Iterable[str] | None = None) -> None:
        self.thresholds = thresholds
        self.include = frozenset(include) if include is not None else DEFAULT_METRICS
        self._hist: dict[tuple, tuple[float, int]] = {}

    def feed(self, metrics_data: Any) -> list[Detection]:
        out: list[Detection] = []
        for rm in getattr(metrics_data, "resource_metrics", ()) or ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name not in self.include:
                        continue
                    try:
                        out += self._metric(metric)
                    except Exception as exc:  # one odd metric never stops the others
                        report_error(_COMPONENT, exc)
        return out

    def _metric(self, metric: Any) -> list[Detection]:
        from opentelemetry.sdk.metrics.export import AggregationTemporality, Histogram

        out: list[Detection] = []
        data = metric.data
        for p in data.data_points:
            attrs = dict(p.attributes or {})
            t = p.time_unix_nano / 1e9
            if isinstance(data, Histogram):
                key = (metric.name, tuple(sorted(attrs.items())))
                s, c = float(p.sum), int(p.count)
                if data.aggregation_temporality == AggregationTemporality.CUMULATIVE:
                    ps, pc = self._hist.get(key, (0.0, 0))
                    self._hist[key] = (s, c)
                    if c < pc:  # reset
                        ps, pc = 0.0, 0
                    s, c = s - ps, c - pc
                if c <= 0:
                    continue
                value = s / c
            else:
                value = p.value
            out += self.thresholds.observe(metric.name, attrs, t, value)
        return out


class ThresholdMetricExporter:
    """A ``MetricExporter`` that feeds a ThresholdProcessor, then forwards to ``downstream`` (if any)."""

    def __init__(self, thresholds: Any, downstream: Any = None, include: Iterable[str] | None = None) -> None:
        from opentelemetry.sdk.metrics.export import MetricExporter

        self.feed = MetricsFeed(thresholds, include)
        self.downstream = downstream
        base = downstream if downstream is not None else MetricExporter
        self._preferred_temporality = getattr(base, "_preferred_temporality", {}) or {}
        self._preferred_aggregation = getattr(base, "_preferred_aggregation", {}) or {}

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any):
        from opentelemetry.sdk.metrics.export import MetricExportResult

        try:
            self.feed.feed(metrics_data)
        except Exception as exc:
            report_error(_COMPONENT, exc)
        if self.downstream is None:
            return MetricExportResult.SUCCESS
        return self.downstream.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True if self.downstream is None else self.downstream.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self.downstream is not None:
            self.downstream.shutdown(timeout_millis=timeout_millis, **kwargs)


def _register_as_metric_exporter() -> None:
    from opentelemetry.sdk.metrics.export import MetricExporter

    MetricExporter.register(ThresholdMetricExporter)


_register_as_metric_exporter()

__all__ = ["DEFAULT_METRICS", "MetricsFeed", "ThresholdMetricExporter"]
