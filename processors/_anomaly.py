"""PyOD over requests: score every finished request, page on the *rate* of abnormal ones.

:class:`RequestAnomalyProcessor`:

* ``observe(span_record) -> list[Detection]`` -- the plain API (SDK span
  processor worker and ``otel-llm analyze`` both call it): builds the feature
  row (:mod:`._features`), scores it with the current :class:`OutlierDetector`,
  keeps the row in a sliding window, refits on that window every
  ``refit_every`` rows (background thread, or inline), and updates the per-series
  rate of abnormal requests;
* ``score_span(span_record) -> RequestScore | None`` -- the per-request verdict
  with its attribution (what ``observe`` computes, returned to the caller);
* a :class:`Detection` (kind ``anomaly``) opens only when, within the last
  ``rate_window_s`` seconds of a series (service + model), at least
  ``min_anomalies`` requests are abnormal and they are more than
  ``rate_threshold`` of the requests, out of at least ``min_scored`` scored
  requests (so "5 of 6" right after the first fit never pages); it closes when the rate falls under half
  of that. One outlier never pages anyone.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from otel_llm.processors._features import (
    FEATURES,
    GpuStateFn,
    is_request_span,
    request_features,
    request_series_attributes,
)
from otel_llm.processors._model import CRITICAL_FACTOR, Detection, Severity
from otel_llm.processors._outlier import VALID_DETECTORS, OutlierDetector, check_detector
from otel_llm.processors._spans import SpanRecord
from otel_llm.processors._stream import DetectionStream
from otel_llm.processors._thresholds import series_key

from otel_llm import semconv
from otel_llm._selftelemetry import report_error

_COMPONENT = "anomaly"
#: GPU columns that rise and fall with the traffic itself.
LOAD_FEATURES: tuple[str, ...] = ("gpu_util", "gpu_sm_active", "gpu_power")
#: Columns where only *higher* than usual is trouble: a request that is abnormal only by being faster,
#: cooler or lighter than usual on these (and perhaps through :data:`LOAD_FEATURES`) is flagged and
#: explained but does not page (a quiet spell after a busy hour makes every request "abnormally fast").
HIGHER_IS_WORSE: tuple[str, ...] = (
    "duration", "ttft", "tpot", "gap_p99", "gap_max", "queue_time", "gpu_mem_used", "gpu_temp", "gpu_throttle",
)
_SERIES_METRIC = semconv.OTEL_LLM_ANOMALY_REQUESTS


@dataclass(frozen=True)
class RequestScore:
    trace_id: str
    span_id: str
    t: float
    score: float
    """Calibrated to [0, 1]."""
    anomalous: bool
    features: Mapping[str, float]
    contributions: Mapping[str, float] = field(default_factory=dict)
    """Feature -> share of the evidence (empty for normal requests)."""
    explanation: str = ""
    load_only: bool = False
    """Abnormal only through :data:`LOAD_FEATURES`: not counted toward the rate of abnormal requests."""
    better_only: bool = False
    """Abnormal only by being lower than usual on :data:`HIGHER_IS_WORSE` columns (and through load):
    not counted toward the rate of abnormal requests."""

    @property
    def counts(self) -> bool:
        """Counts toward the per-series rate that pages."""
        return self.anomalous and not (self.load_only or self.better_only)


@dataclass
class _RateSeries:
    key: str
    attributes: dict[str, str]
    events: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))
    counted: int = 0
    """Events in the window that count toward the rate (abnormal and not load-only)."""
    open: Detection | None = None


def _fmt_feature(name: str, value: float, dev: float) -> str:
    where = "high" if dev > 0 else "low"
    return f"{name}={value:.4g} ({where})"


class RequestAnomalyProcessor:
    """Per-request outlier scores and a rate-of-abnormal-requests detector. Thread-safe."""

    def __init__(
        self,
        detector: str | None = None,
        contamination: float | None = None,
        *,
        window: int = 2048,
        min_fit: int = 512,
        refit_every: int = 256,
        refit: str = "background",
        rate_window_s: float = 60.0,
        rate_threshold: float = 0.2,
        min_anomalies: int = 3,
        min_scored: int = 20,
        gpu_state: GpuStateFn | None = None,
        load_features: Sequence[str] = LOAD_FEATURES,
        stream: DetectionStream | None = None,
        meter_provider: Any = None,
        emit_metrics: bool = True,
        random_state: int = 0,
    ) -> None:
        from otel_llm import environment_variables as ev
        from otel_llm._env import env_choice, env_float

        detector = env_choice(ev.OTEL_LLM_ANOMALY_DETECTOR, detector, "ecod", VALID_DETECTORS)
        contamination = env_float(ev.OTEL_LLM_ANOMALY_CONTAMINATION, contamination, 0.04, minimum=1e-6, maximum=0.5)
        assert contamination is not None
        self.detector = check_detector(detector)
        if not (0.0 < contamination <= 0.5):
            raise ValueError(f"contamination must be in (0, 0.5], got {contamination}")
        if refit not in ("background", "inline"):
            raise ValueError(f"refit {refit!r} is not valid; choose one of: background, inline")
        if min_fit < 10 or window < min_fit:
            raise ValueError(f"need 10 <= min_fit <= window, got min_fit={min_fit} window={window}")
        if not (0.0 < rate_threshold <= 1.0) or min_anomalies < 1 or rate_window_s <= 0:
            raise ValueError("rate_threshold must be in (0, 1], min_anomalies >= 1, rate_window_s > 0")
        if min_scored < min_anomalies:
            raise ValueError(f"min_scored must be >= min_anomalies ({min_anomalies}), got {min_scored}")
        unknown = sorted(set(load_features) - set(FEATURES))
        if unknown:
            raise ValueError(f"load_features {unknown} are not features; choose from: {', '.join(FEATURES)}")
        self.load_features = tuple(load_features)
        self._load_idx = frozenset(FEATURES.index(f) for f in self.load_features)
        self._better_idx = {f: FEATURES.index(f) for f in HIGHER_IS_WORSE}
        self.contamination = contamination
        self.min_fit = min_fit
        self.refit_every = refit_every
        self.rate_window_s = rate_window_s
        self.rate_threshold = rate_threshold
        self.min_anomalies = min_anomalies
        self.min_scored = min_scored
        self.gpu_state = gpu_state
        self.random_state = random_state
        self.stream = stream if stream is not None else DetectionStream()
        self.model: OutlierDetector | None = None
        self._rows: collections.deque[list[float]] = collections.deque(maxlen=window)
        self._since_fit = 0
        self._fitting = False
        self._lock = threading.RLock()
        self._series: dict[tuple, _RateSeries] = {}
        self.fit_failures = 0
        self.scored = 0
        self.flagged = 0
        self._inline = refit == "inline"
        self._worker_cond = threading.Condition()
        self._pending: list[list[float]] | None = None
        self._closed = False
        self._worker: threading.Thread | None = None
        if not self._inline:
            self._worker = threading.Thread(target=self._run, name="otel-llm-anomaly", daemon=True)
            self._worker.start()
        self._counter = None
        if emit_metrics:
            from opentelemetry import metrics

            meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_llm.processors.anomaly")
            self._counter = meter.create_counter(
                semconv.OTEL_LLM_ANOMALY_REQUESTS, unit="{request}", description="Requests the outlier detector flagged"
            )

    # -------------------------------------------------------------- fitting
    def _fit_rows(self, rows: list[list[float]]) -> None:
        try:
            import numpy as np

            model = OutlierDetector(
                self.detector, self.contamination, feature_names=FEATURES, random_state=self.random_state
            ).fit(np.asarray(rows, dtype=float))
            self.model = model  # atomic swap
        except Exception as exc:  # one bad window never stops scoring with the previous model
            self.fit_failures += 1
            report_error(f"{_COMPONENT}.fit", exc)

    def _maybe_refit(self) -> None:
        n = len(self._rows)
        if n < self.min_fit or self._fitting:
            return
        if self.model is not None and self._since_fit < self.refit_every:
            return
        self._since_fit = 0
        snapshot = list(self._rows)
        if self._inline:
            self._fit_rows(snapshot)
            return
        self._fitting = True
        with self._worker_cond:
            self._pending = snapshot
            self._worker_cond.notify()

    def _run(self) -> None:
        while True:
            with self._worker_cond:
                while self._pending is None and not self._closed:
                    self._worker_cond.wait()
                if self._closed:
                    return
                rows, self._pending = self._pending, None
            self._fit_rows(rows)
            with self._worker_cond:
                self._fitting = False
                self._worker_cond.notify_all()

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        with self._worker_cond:
            return self._worker_cond.wait_for(
                lambda: self._pending is None and not self._fitting, timeout_millis / 1000.0
            )

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        with self._worker_cond:
            self._closed = True
            self._worker_cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout_millis / 1000.0)

    # -------------------------------------------------------------- scoring
    def score_row(self, row: Mapping[str, float], *, trace_id: str = "", span_id: str = "", t: float = 0.0,
                  learn: bool = True) -> RequestScore | None:
        """Score one feature row (None while the first model is not fitted yet)."""
        vec = [float(row.get(f, math.nan)) for f in FEATURES]
        with self._lock:
            model = self.model
            if learn:
                self._rows.append(vec)
                self._since_fit += 1
        result = None
        if model is not None:
            s = float(model.score([vec])[0])
            anomalous = s >= model.threshold_
            contributions: dict[str, float] = {}
            explanation = ""
            load_only = better_only = False
            if anomalous:
                contributions = model.explain([vec])
                dev = model.deviation([vec])
                top = [k for k in contributions][:3]
                explanation = (
                    f"abnormal request (score {s:.3f}); "
                    + ", ".join(f"{_fmt_feature(k, row.get(k, math.nan), dev.get(k, 0.0))} {contributions[k]:.0%}"
                                for k in top)
                )
                load_only, better_only, set_aside = self._benign(model, vec, dev)
                if load_only:
                    explanation += f"; normal at usual GPU load ({', '.join(self.load_features)}): not paged"
                elif better_only:
                    low = [k for k in contributions if k in set_aside][:3] or set_aside[:3]
                    explanation += f"; otherwise normal, only lower than usual ({', '.join(low)}): not paged"
            result = RequestScore(trace_id, span_id, t, s, anomalous, dict(row), contributions, explanation,
                                  load_only, better_only)
            self.scored += 1
            self.flagged += anomalous
        if learn:
            with self._lock:
                self._maybe_refit()
        return result

    def _benign(self, model: OutlierDetector, vec: list[float], dev: Mapping[str, float]) -> tuple[bool, bool, list[str]]:
        """Is an abnormal row normal once its load columns (``load_only``), then also its better-than-usual
        columns (``better_only``), are set at the training median? Returns the better columns set aside."""
        load = self._load_idx
        if (load and any(not math.isnan(vec[j]) for j in load)
                and float(model.score([[math.nan if j in load else v for j, v in enumerate(vec)]])[0])
                < model.threshold_):
            return True, False, []
        lower = [f for f, j in self._better_idx.items() if dev.get(f, 0.0) < 0.0 and not math.isnan(vec[j])]
        if not lower:
            return False, False, []
        aside = load | {self._better_idx[f] for f in lower}
        row = [math.nan if j in aside else v for j, v in enumerate(vec)]
        return False, float(model.score([row])[0]) < model.threshold_, lower

    def score_span(self, span: SpanRecord, *, learn: bool = True) -> RequestScore | None:
        if not is_request_span(span):
            return None
        row = request_features(span, self.gpu_state)
        return self.score_row(row, trace_id=span.trace_id, span_id=span.span_id, t=span.end, learn=learn)

    def observe(self, span: SpanRecord) -> list[Detection]:
        """Score a finished span and update its series' rate. Never raises for bad spans."""
        try:
            res = self.score_span(span)
            if res is None:
                return []
            return self._rate(request_series_attributes(span), res)
        except Exception as exc:
            report_error(_COMPONENT, exc)
            return []

    # ----------------------------------------------------------------- rate
    def _rate(self, attrs: dict[str, str], res: RequestScore) -> list[Detection]:
        if res.anomalous and self._counter is not None:
            self._counter.add(1, attrs)
        cache = tuple(sorted(attrs.items()))
        with self._lock:
            rs = self._series.get(cache)
            if rs is None:
                rs = self._series[cache] = _RateSeries(series_key(_SERIES_METRIC, attrs), attrs)
            rs.events.append(res)
            rs.counted += res.counts
            horizon = res.t - self.rate_window_s
            while rs.events and (rs.events[0].t < horizon or len(rs.events) == rs.events.maxlen):
                old = rs.events.popleft()
                rs.counted -= old.counts
            total = len(rs.events)
            rate = rs.counted / total if total else 0.0
            out: list[Detection] = []
            if (rs.open is None and total >= self.min_scored and rs.counted >= self.min_anomalies
                    and rate > self.rate_threshold):
                bad = [e for e in rs.events if e.counts]
                agg: collections.Counter[str] = collections.Counter()
                for e in bad:
                    for k, v in e.contributions.items():
                        agg[k] += v / len(bad)
                top = ", ".join(f"{k} {v:.0%}" for k, v in agg.most_common(3))
                det = Detection(
                    kind="anomaly", series=rs.key, start=bad[0].t, score=rate,
                    severity=Severity.CRITICAL if rate > CRITICAL_FACTOR * self.rate_threshold else Severity.WARNING,
                    metric=_SERIES_METRIC, attributes=dict(attrs), value=rate, band=(0.0, self.rate_threshold),
                    explanation=(
                        f"{rs.counted} of {total} requests ({rate:.0%}) in the last {self.rate_window_s:g} s were "
                        f"abnormal ({self.detector}, contamination {self.contamination:g}); top features: {top}. "
                        f"Example: {bad[-1].explanation}"
                    ),
                    contributions={k: round(v, 4) for k, v in agg.most_common()},
                    trace_ids=tuple(e.trace_id for e in bad[-5:] if e.trace_id),
                )
                rs.open = det
                out.append(det)
            elif rs.open is not None and rate <= self.rate_threshold / 2:
                det = replace(rs.open, end=res.t, score=rate, value=rate,
                              explanation=f"rate of abnormal requests back to {rate:.0%}")
                rs.open = None
                out.append(det)
            elif (rs.open is not None and rate > CRITICAL_FACTOR * self.rate_threshold
                  and rs.open.severity is not Severity.CRITICAL):
                # escalated: the same open detection (same start) again, now critical (see the threshold processor)
                rs.open = replace(rs.open, severity=Severity.CRITICAL, score=rate, value=rate,
                                  explanation=f"{rs.open.explanation}; escalated to critical: {rs.counted} of {total} "
                                              f"requests ({rate:.0%}) abnormal")
                out.append(rs.open)
        if out:
            self.stream.publish(out)
        return out


__all__ = ["HIGHER_IS_WORSE", "LOAD_FEATURES", "RequestAnomalyProcessor", "RequestScore"]
