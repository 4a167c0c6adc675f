"""GPU trouble read from OTLP metrics, as RCA evidence.

The GPU collectors export ``otel_llm.gpu.throttle`` (1 while a clock-event
reason is active, per ``otel_llm.gpu.throttle.reason``),
``otel_llm.gpu.xid.events`` (a counter per XID code) and ``hw.status`` (1 for
the GPU's current ``hw.state``), each with ``hw.id`` = the GPU UUID. This
watcher turns a harmful throttle, a growing XID counter, or a ``degraded`` /
``failed`` state into :class:`~otel_llm.processors.rca.GpuAnomaly` s. Bounded:
at most ``max_series`` counter series are remembered.
"""

from __future__ import annotations

from typing import Any

from otel_llm import semconv
from otel_llm.processors.rca import GpuAnomaly

_HARMLESS_THROTTLE = {"gpu_idle", "applications_clocks_setting", "display_clock_setting", "sync_boost"}


def _attrs(kvs) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        which = kv.value.WhichOneof("value")
        if which in ("string_value", "int_value", "double_value", "bool_value"):
            out[kv.key] = getattr(kv.value, which)
    return out


def _points(metric):
    which = metric.WhichOneof("data")
    if which in ("gauge", "sum"):
        for p in getattr(metric, which).data_points:
            value = p.as_double if p.WhichOneof("value") == "as_double" else float(p.as_int)
            yield p, value


class GpuMetricWatcher:
    def __init__(self, max_series: int = 10_000) -> None:
        self._xid: dict[tuple[str, str], float] = {}
        self.max_series = max_series

    def observe(self, request: Any) -> list[GpuAnomaly]:
        """GPU anomalies in one ``ExportMetricsServiceRequest``."""
        out: list[GpuAnomaly] = []
        for rm in request.resource_metrics:
            resource = _attrs(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    name = metric.name
                    if name not in (semconv.OTEL_LLM_GPU_THROTTLE, semconv.OTEL_LLM_GPU_XID_EVENTS, semconv.HW_STATUS):
                        continue
                    for p, value in _points(metric):
                        attrs = {**resource, **_attrs(p.attributes)}
                        uuid = attrs.get(semconv.HW_ID)
                        if not isinstance(uuid, str):
                            continue
                        t = p.time_unix_nano / 1e9
                        if name == semconv.OTEL_LLM_GPU_THROTTLE:
                            reason = str(attrs.get(semconv.OTEL_LLM_GPU_THROTTLE_REASON, ""))
                            if value >= 1 and reason not in _HARMLESS_THROTTLE:
                                out.append(GpuAnomaly(uuid, t, t, f"clock throttling ({reason})", 1.0))
                        elif name == semconv.HW_STATUS:
                            state = attrs.get(semconv.HW_STATE)
                            if value >= 1 and state in ("degraded", "failed"):
                                out.append(GpuAnomaly(uuid, t, t, f"hw.state {state}", 1.0 if state == "failed" else 0.7))
                        else:
                            code = str(attrs.get(semconv.OTEL_LLM_GPU_XID, "?"))
                            key = (uuid, code)
                            prev = self._xid.get(key)
                            if (prev is None and value > 0) or (prev is not None and value > prev):
                                out.append(GpuAnomaly(uuid, t, t, f"XID {code}", 1.0))
                            if key in self._xid or len(self._xid) < self.max_series:
                                self._xid[key] = value
        return out


class OtlpThresholdFeed:
    """OTLP metrics -> :meth:`ThresholdProcessor.observe`, one point per series and export.

    The same rules as the in-process ``MetricsFeed``: gauges and sums feed the point's value;
    histograms feed the mean of the observations since the previous export (from the change
    of cumulative sum / count; delta points as they are; resets start over). Only the metrics
    in ``include`` (default: the thresholds' ``DEFAULT_METRICS``) are fed. Bounded: at most
    ``max_series`` cumulative histogram states are remembered.
    """

    def __init__(self, thresholds: Any, include: Any = None, max_series: int = 10_000) -> None:
        if include is None:
            from otel_llm.processors.thresholds import DEFAULT_METRICS as include
        self.thresholds = thresholds
        self.include = frozenset(include)
        self.max_series = max_series
        self._hist: dict[tuple, tuple[float, int]] = {}

    def __call__(self, request: Any) -> list:
        out: list = []
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name in self.include:
                        out += self._metric(metric)
        return out

    def _metric(self, metric: Any) -> list:
        out: list = []
        which = metric.WhichOneof("data")
        if which in ("gauge", "sum"):
            for p, value in _points(metric):
                out += self.thresholds.observe(metric.name, _attrs(p.attributes), p.time_unix_nano / 1e9, value)
        elif which == "histogram":
            cumulative = metric.histogram.aggregation_temporality == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
            for p in metric.histogram.data_points:
                attrs = _attrs(p.attributes)
                s, c = float(p.sum), int(p.count)
                if cumulative:
                    key = (metric.name, tuple(sorted(attrs.items())))
                    ps, pc = self._hist.get(key, (0.0, 0))
                    if key in self._hist or len(self._hist) < self.max_series:
                        self._hist[key] = (s, c)
                    if c < pc:  # reset
                        ps, pc = 0.0, 0
                    s, c = s - ps, c - pc
                if c > 0:
                    out += self.thresholds.observe(metric.name, attrs, p.time_unix_nano / 1e9, s / c)
        return out
