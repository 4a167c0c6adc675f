"""Prometheus exposition text -> OpenTelemetry SDK metric points, faithfully.

:class:`FamilyConverter` turns one scrape (parsed by
``prometheus_client.parser.text_string_to_metric_families``) into SDK
``Metric`` objects:

* histograms -> ``Histogram`` points with vLLM's own bucket boundaries
  (cumulative ``le`` counts become per-bucket counts; ``+Inf`` is taken from
  ``_count`` when a scrape omits it). A histogram with no ``_sum``, or with
  neither ``+Inf`` nor ``_count``, or with decreasing cumulative counts, is
  dropped and counted (``otel_llm.dropped``, component ``vllm_bridge``);
* counters -> monotonic cumulative ``Sum`` points;
* gauges / untyped / info -> ``Gauge`` points (running / waiting requests
  become non-monotonic ``Sum`` points, the up-down-counter shape our own
  instrumentors give them).

Counters and histograms stay monotonic across vLLM restarts: when a series'
count goes down (or its ``_created`` timestamp changes) the last value seen
is folded into an offset that is added to every later value, so the bridged
series keeps growing from where it was (the counter-reset handling of
Prometheus' ``rate()``, done once here). A change of bucket boundaries
restarts the series (new start time).

Points are CUMULATIVE with the start time of the series (vLLM's ``_created``
when exposed, else the first scrape that saw it).
"""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_dropped
from otel_llm.instrumentation.vllm._mapping import (
    PREFERENCES,
    TARGETS,
    Target,
    fallback_name,
    label_attribute,
)

__all__ = ["FamilyConverter"]

_COMPONENT = "vllm_bridge"
_CUMULATIVE = AggregationTemporality.CUMULATIVE
_UPDOWN = {sc.OTEL_LLM_SERVER_REQUESTS_RUNNING, sc.OTEL_LLM_SERVER_REQUESTS_WAITING}


class _Series:
    """Reset-aware cumulative state of one bridged series."""

    __slots__ = ("bounds", "created", "last", "offset", "start_ns")

    def __init__(self, start_ns: int, created: float | None, bounds: tuple[float, ...] | None, width: int) -> None:
        self.start_ns = start_ns
        self.created = created
        self.bounds = bounds
        self.last = [0.0] * width
        self.offset = [0.0] * width

    def advance(self, raw: list[float], created: float | None) -> list[float]:
        """Fold a reset (count went down or ``_created`` changed) into the offset; return raw + offset."""
        reset = (created is not None and self.created is not None and created != self.created) or raw[-1] < self.last[-1]
        if reset:
            self.offset = [o + v for o, v in zip(self.offset, self.last, strict=False)]
        if created is not None:
            self.created = created
        self.last = raw
        return [o + v for o, v in zip(self.offset, raw, strict=False)]


def _start_ns(created: float | None, now_ns: int) -> int:
    if created is not None and 0 < created * 1e9 <= now_ns:
        return int(created * 1e9)
    return now_ns


def _as_counter(fam: Any) -> Any:
    """An untyped ``x_total`` family (no ``# TYPE`` line) is a counter by Prometheus naming convention."""
    if fam.type in ("unknown", "untyped") and fam.name.endswith("_total") and fam.samples \
            and all(s.name == fam.name for s in fam.samples):
        fam = copy.copy(fam)
        fam.name = fam.name[: -len("_total")]
        fam.type = "counter"
    return fam


class FamilyConverter:
    """Convert parsed families into SDK metrics; keeps per-series state between scrapes (thread-safe).

    ``base_attributes`` are added to every point (``gen_ai.provider.name``,
    ``server.address``/``server.port`` of the scraped endpoint).
    ``include_unmapped`` bridges ``vllm:*`` families without a mapping under
    ``otel_llm.vllm.*``; families not starting with ``vllm:`` are ignored.
    """

    def __init__(self, base_attributes: Mapping[str, Any], *, include_unmapped: bool = True) -> None:
        self._base = dict(base_attributes)
        self._include_unmapped = include_unmapped
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._created: dict[str, dict[tuple, float]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------
    def convert(self, families: Iterable[Any], now_ns: int) -> list[Metric]:
        fams = [f for f in families if f.name.startswith("vllm:")]
        # Text format 0.0.4 renders a counter's / histogram's _created as a separate gauge family.
        names = {f.name for f in fams}
        created: dict[str, dict[tuple, float]] = {}
        kept = []
        for f in fams:
            base = f.name[: -len("_created")] if f.name.endswith("_created") else None
            if base is not None and base in names and f.type in ("gauge", "unknown", "untyped"):
                created[base] = {tuple(sorted(s.labels.items())): s.value for s in f.samples}
            else:
                kept.append(f)
        fams = [_as_counter(f) for f in kept]
        self._created = created
        present = {f.name for f in fams}
        chosen: dict[str, str] = {}
        for target, prefs in PREFERENCES.items():
            for name in prefs:
                if name in present:
                    chosen[target] = name
                    break
        out: dict[tuple[str, str], Metric] = {}
        with self._lock:
            for fam in fams:
                target = TARGETS.get(fam.name)
                if target is not None and chosen.get(target.name, fam.name) != fam.name:
                    target = None  # a preferred family feeds this target; keep this one namespaced
                if target is None:
                    if not self._include_unmapped:
                        continue
                    target = fallback_name(fam.name)
                metric = self._convert_family(fam, target, now_ns)
                if metric is None:
                    continue
                key = (metric.name, type(metric.data).__name__)
                prev = out.get(key)
                if prev is None:
                    out[key] = metric
                else:  # two families share a target (token usage input/output): merge their points
                    data = prev.data
                    merged = list(data.data_points) + list(metric.data.data_points)
                    if isinstance(data, Histogram):
                        new = Histogram(merged, data.aggregation_temporality)
                    elif isinstance(data, Sum):
                        new = Sum(merged, data.aggregation_temporality, data.is_monotonic)
                    else:
                        new = Gauge(merged)
                    out[key] = Metric(prev.name, prev.description, prev.unit, new)
        return list(out.values())

    # ------------------------------------------------------------------
    def _attributes(self, labels: Mapping[str, str], target: Target) -> dict[str, Any]:
        attrs = dict(self._base)
        for k, v in labels.items():
            attrs[label_attribute(k)] = v
        attrs.update(target.extra)
        return attrs

    def _convert_family(self, fam: Any, target: Target, now_ns: int) -> Metric | None:
        if fam.type == "histogram":
            points = self._histogram_points(fam, target, now_ns)
            return Metric(target.name, target.description, target.unit, Histogram(points, _CUMULATIVE)) if points else None
        if fam.type == "counter":
            points = self._counter_points(fam, target, now_ns)
            return Metric(target.name, target.description, target.unit, Sum(points, _CUMULATIVE, True)) if points else None
        if fam.type in ("gauge", "unknown", "untyped", "info", "stateset"):
            points = [
                NumberDataPoint(self._attributes(s.labels, target), now_ns, now_ns, float(s.value))
                for s in fam.samples
                if not s.name.endswith("_created") and math.isfinite(s.value)
            ]
            if not points:
                return None
            if target.name in _UPDOWN:
                return Metric(target.name, target.description, target.unit, Sum(points, _CUMULATIVE, False))
            return Metric(target.name, target.description, target.unit, Gauge(points))
        report_dropped(_COMPONENT, f"unsupported_type_{fam.type}")
        return None

    def _counter_points(self, fam: Any, target: Target, now_ns: int) -> list[NumberDataPoint]:
        totals: dict[tuple, tuple[dict, float]] = {}
        created: dict[tuple, float] = {}
        for s in fam.samples:
            key = tuple(sorted(s.labels.items()))
            if key not in created and key in self._created.get(fam.name, {}):
                created[key] = self._created[fam.name][key]
            if s.name.endswith("_created"):
                created[key] = s.value
            elif s.name.endswith("_total") or s.name == fam.name:
                totals[key] = (s.labels, s.value)
        points = []
        for key, (labels, value) in totals.items():
            if not math.isfinite(value) or value < 0:
                report_dropped(_COMPONENT, "bad_counter_value")
                continue
            skey = (fam.name, key)
            state = self._series.get(skey)
            c = created.get(key)
            if state is None:
                state = self._series[skey] = _Series(_start_ns(c, now_ns), c, None, 1)
            (value,) = state.advance([value], c)
            points.append(NumberDataPoint(self._attributes(labels, target), state.start_ns, now_ns, value))
        return points

    def _histogram_points(self, fam: Any, target: Target, now_ns: int) -> list[HistogramDataPoint]:
        groups: dict[tuple, dict[str, Any]] = {}
        for s in fam.samples:
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            g = groups.setdefault(tuple(sorted(labels.items())), {"labels": labels, "buckets": {}})
            suffix = s.name[len(fam.name):]
            if suffix == "_bucket":
                g["buckets"][float(s.labels["le"])] = s.value
            elif suffix in ("_count", "_sum", "_created"):
                g[suffix] = s.value
        points = []
        for key, g in groups.items():
            buckets: dict[float, float] = g["buckets"]
            count = buckets.pop(math.inf, None)
            if count is None:
                count = g.get("_count")
            total = g.get("_sum")
            if count is None or total is None or not buckets:
                report_dropped(_COMPONENT, "incomplete_histogram")
                continue
            bounds = tuple(sorted(buckets))
            cumulative = [buckets[b] for b in bounds] + [count]
            if any(b < a for a, b in zip(cumulative, cumulative[1:], strict=False)):
                report_dropped(_COMPONENT, "non_monotonic_histogram")
                continue
            raw = [cumulative[0]] + [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)]  # per-bucket counts
            created = g.get("_created", self._created.get(fam.name, {}).get(key))
            skey = (fam.name, key)
            state = self._series.get(skey)
            if state is None or state.bounds != bounds:
                state = self._series[skey] = _Series(_start_ns(created, now_ns), created, bounds, len(raw) + 2)
            # vector = per-bucket counts..., sum, count (count last: it drives reset detection)
            values = state.advance([*raw, total, count], created)
            bucket_counts = [int(round(v)) for v in values[: len(raw)]]
            points.append(
                HistogramDataPoint(
                    attributes=self._attributes(g["labels"], target),
                    start_time_unix_nano=state.start_ns,
                    time_unix_nano=now_ns,
                    count=int(round(values[-1])),
                    sum=values[-2],
                    bucket_counts=bucket_counts,
                    explicit_bounds=list(bounds),
                    min=math.inf,
                    max=-math.inf,
                )
            )
        return points
