"""Turn finished spans and GPU samples into the demo's key time series.

Spans are bucketed by their end time into windows of ``window_s``; a window is
emitted once the clock has passed its end by ``lag_s`` (spans of requests that
ended in it have arrived by then). Series keys follow the processors'
convention: ``metric{attr="value",...}`` with low-cardinality attributes only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from otel_llm import semconv
from otel_llm.collectors._model import GpuSample
from otel_llm.demo._gpus import F_GPU_TEMP, F_GPU_UTIL, F_SM_CLOCK, F_THROTTLE_REASONS
from otel_llm.demo._telemetry import SERVICE_GATEWAY, SERVICE_LLM, SERVICE_RETRIEVAL
from otel_llm.processors._spans import KIND_SERVER, SpanRecord

# Series names (metric part) of the key series.
REQUEST_RATE = "http.server.request.rate"
ERROR_RATIO = "http.server.error.ratio"
TTFT_P95 = semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN + ".p95"
TPOT_P95 = semconv.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN + ".p95"
QUEUE_P95 = semconv.OTEL_LLM_SERVER_QUEUE_DURATION + ".p95"
DURATION_P95 = "http.server.request.duration.p95"
GPU_SM_CLOCK = semconv.OTEL_LLM_GPU_CLOCK_SM
GPU_TEMP = semconv.HW_TEMPERATURE
GPU_UTIL = semconv.HW_GPU_UTILIZATION
GPU_THROTTLE = semconv.OTEL_LLM_GPU_THROTTLE
INSTANCE = "service.instance.id"


def series_key(metric: str, attrs: dict[str, str] | None = None) -> str:
    if not attrs:
        return metric
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(attrs.items()))
    return f"{metric}{{{inner}}}"


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Point:
    series: str
    metric: str
    attributes: dict[str, str]
    timestamp: float
    value: float


@dataclass
class _Window:
    gw_count: int = 0
    gw_errors: int = 0
    gw_ttft: list[float] = field(default_factory=list)
    gw_dur: list[float] = field(default_factory=list)
    llm_ttft: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    llm_tpot: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    llm_queue: list[float] = field(default_factory=list)
    ret_dur: list[float] = field(default_factory=list)


class SeriesAggregator:
    """Windows spans into the key series; GPU samples pass through as points."""

    def __init__(self, window_s: float = 2.0, lag_s: float = 1.0, replicas: Sequence[str] = ()) -> None:
        """``replicas``: GPU UUIDs in replica order; per-replica series are keyed ``service.instance.id``
        (``replica-<i>``), not by GPU, so a latency symptom is never mistaken for a GPU signal."""
        self.replica_of = {g: f"replica-{i}" for i, g in enumerate(replicas)}
        self.window_s = window_s
        self.lag_s = lag_s
        self._windows: dict[int, _Window] = defaultdict(_Window)
        self._emitted_until: int | None = None
        self.late_spans = 0

    def add_spans(self, spans: Iterable[SpanRecord]) -> None:
        for s in spans:
            if s.kind != KIND_SERVER:
                continue
            w = int(s.end // self.window_s)
            if self._emitted_until is not None and w <= self._emitted_until:
                self.late_spans += 1
                continue
            win = self._windows[w]
            if s.service == SERVICE_GATEWAY:
                win.gw_count += 1
                win.gw_errors += int(s.error)
                win.gw_dur.append(s.duration)
                ttft = s.attributes.get(semconv.OTEL_LLM_TTFT)
                if isinstance(ttft, (int, float)):
                    win.gw_ttft.append(float(ttft))
            elif s.service == SERVICE_LLM:
                gpus = s.attributes.get(semconv.OTEL_LLM_GPU_UUIDS) or ()
                gpu = str(gpus[0]) if len(gpus) else ""
                ttft = s.attributes.get(semconv.OTEL_LLM_TTFT)
                if isinstance(ttft, (int, float)):
                    win.llm_ttft[gpu].append(float(ttft))
                tpot = s.attributes.get(semconv.OTEL_LLM_TPOT)
                if isinstance(tpot, (int, float)):
                    win.llm_tpot[gpu].append(float(tpot))
                q = s.attributes.get(semconv.OTEL_LLM_QUEUE_TIME)
                if isinstance(q, (int, float)):
                    win.llm_queue.append(float(q))
            elif s.service == SERVICE_RETRIEVAL:
                win.ret_dur.append(s.duration)

    def flush(self, now: float, *, final: bool = False) -> list[Point]:
        """Points of every window that has closed by ``now`` (all windows when ``final``)."""
        limit = int((now - self.lag_s) // self.window_s) - 1
        if self._emitted_until is None:
            first = min(self._windows) if self._windows else limit + 1
            self._emitted_until = first - 1
        if final:
            limit = max([limit, *self._windows]) if self._windows else limit
        out: list[Point] = []
        for w in range(self._emitted_until + 1, limit + 1):
            out.extend(self._points(w, self._windows.pop(w, _Window())))
        self._emitted_until = max(self._emitted_until, limit)
        return out

    def _replica(self, base: dict[str, str], gpu: str) -> dict[str, str]:
        replica = self.replica_of.get(gpu)
        return {**base, INSTANCE: replica} if replica else base

    def _points(self, w: int, win: _Window) -> list[Point]:
        ts = (w + 1) * self.window_s
        out: list[Point] = []

        def add(metric: str, value: float, attrs: dict[str, str] | None = None) -> None:
            if value is None or not math.isfinite(value):
                return
            a = dict(attrs or {})
            out.append(Point(series_key(metric, a), metric, a, ts, float(value)))

        gw = {"service.name": SERVICE_GATEWAY}
        add(REQUEST_RATE, win.gw_count / self.window_s, gw)
        if win.gw_count:
            add(ERROR_RATIO, win.gw_errors / win.gw_count, gw)
        add(TTFT_P95, quantile(win.gw_ttft, 0.95), gw)
        add(DURATION_P95, quantile(win.gw_dur, 0.95), gw)
        llm = {"service.name": SERVICE_LLM}
        for gpu, xs in win.llm_ttft.items():
            add(TTFT_P95, quantile(xs, 0.95), self._replica(llm, gpu))
        for gpu, xs in win.llm_tpot.items():
            add(TPOT_P95, quantile(xs, 0.95), self._replica(llm, gpu))
        add(QUEUE_P95, quantile(win.llm_queue, 0.95), llm)
        add(DURATION_P95, quantile(win.ret_dur, 0.95), {"service.name": SERVICE_RETRIEVAL})
        return out


def gpu_points(samples: Iterable[GpuSample]) -> list[Point]:
    out: list[Point] = []
    for s in samples:
        attrs = {semconv.HW_ID: s.uuid}
        for metric, fid, scale in ((GPU_SM_CLOCK, F_SM_CLOCK, 1e6), (GPU_TEMP, F_GPU_TEMP, 1.0),
                                   (GPU_UTIL, F_GPU_UTIL, 0.01)):
            v = s.fields.get(fid)
            if v is not None and math.isfinite(v):
                out.append(Point(series_key(metric, attrs), metric, attrs, s.timestamp, float(v) * scale))
        reasons = s.fields.get(F_THROTTLE_REASONS)
        if reasons is not None:
            out.append(Point(series_key(GPU_THROTTLE, attrs), GPU_THROTTLE, attrs, s.timestamp,
                             1.0 if int(reasons) else 0.0))
    return out
