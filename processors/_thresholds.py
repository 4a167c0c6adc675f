"""Dynamic thresholds: a learned band per series, an explicit alarm rule, predictive breach alerts.

Hot path (:meth:`ThresholdProcessor.observe` / :meth:`SeriesHandle.observe`):
O(1) per point -- drop bad input, append to a bounded history, compare the value
to the *cached* forecast band, step the alarm rule. Fitting happens off the hot
path: every ``refit_every`` points (and at least ``refit_interval_s`` of data
time apart) a snapshot of the history is refitted either on a background
worker thread (``refit="background"``, the default online) or synchronously in
the same call (``refit="inline"``: deterministic, what the evaluation harness
uses). Both run the same code.

Per series (metric name + its low-cardinality attributes): bounded history, a
:class:`~otel_llm.processors._forecast.BandForecaster` (AutoETS by default,
MSTL with a known season, conformal intervals optional), log scale for
heavy-tailed metrics. A fit failure falls back to the rolling-quantile band and
is counted (``otel_llm.instrumentation.errors{otel_llm.component="thresholds.fit",
error.type=...}``); the other series are unaffected.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from otel_llm.processors._alarm import OPENED, AlarmPolicy, AlarmRule
from otel_llm.processors._forecast import (
    VALID_MODELS,
    check_levels,
    check_model,
    level_key,
    normal_quantile,
)
from otel_llm.processors._model import CRITICAL_FACTOR, Detection, Severity
from otel_llm.processors._stream import DetectionStream

from otel_llm import semconv
from otel_llm._selftelemetry import report_dropped, report_error

_COMPONENT = "thresholds"
VALID_REFIT = ("background", "inline")
VALID_LOG_SCALE = ("auto", "on", "off")
_EMPTY: list[Detection] = []

#: Metric-name fragments that mark a heavy-tailed (latency-like) series for ``log_scale="auto"``.
HEAVY_TAILED_HINTS: tuple[str, ...] = (
    "duration", "latency", "time_to_first_token", "time_per_output_token", "ttft", "tpot", "token_gap",
    "response_time", "_seconds", ".seconds",
)

#: Saturating series and the limit they must stay under (``time-to-breach`` alerts).
DEFAULT_LIMITS: Mapping[str, float] = {
    semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION: 1.0,
    semconv.HW_GPU_MEMORY_UTILIZATION: 1.0,
}


_ONLINE_POLICY = AlarmPolicy(k=2, n=3)
"""The online alarm rule (2 of 3 past 4.5); ``OTEL_LLM_THRESHOLD_Z`` / ``_RARITY`` change fields of it."""


@dataclass(frozen=True)
class ThresholdConfig:
    """Settings of :class:`ThresholdProcessor`; ``validate()`` raises ValueError listing valid choices."""

    model: str = "auto_ets"
    levels: tuple[float, ...] = (80.0, 95.0)
    alarm_level: float | None = None
    """Band whose width defines one sigma for the z-score (default: the highest level)."""
    season_length: int | None = None
    daily_season: bool = True
    """Model ``robust`` without a ``season_length``: try one day of points (from the sampling
    interval) as the season, used only where it explains the series and the history holds three days."""
    weekly_season: bool = True
    """Like ``daily_season`` for one week (weekday/weekend traffic): needs three weeks of points in the
    history; where both seasons explain the series, the one with the smaller residuals is used."""
    found_season: bool = True
    """Model ``robust`` with ``daily_season`` or ``weekly_season`` on, where the timestamps name no day the
    history can hold (sequence-number stamps, per-second points): look for a repeating period in the
    data itself (:func:`~otel_llm.processors._forecast.detect_period`, at each full refit), used
    only where it explains the series, like the calendar ones."""
    conformal: bool = False
    log_scale: str = "auto"
    history: int = 512
    min_history: int = 30
    refit_every: int = 128
    """Points between full re-estimations of the model's parameters."""
    update_every: int = 4
    """Points between cheap state updates (statsforecast ``forward``) of the band."""
    refit_interval_s: float = 0.0
    refit: str = "background"
    refit_cpu_share: float = 0.25
    """Background fits sleep so they use at most this share of one core."""
    horizon: int | None = None
    flatline: bool = True
    """Alarm when the value stops changing (a stuck exporter or sensor): a run of identical values longer
    than twice the longest run in the history, and at least ``flatline_min`` points. Only with
    ``policy.direction == "both"`` (a stuck value is neither up nor down)."""
    flatline_min: int = 12
    hold_during_alarm: int = 0
    """While an alert is open, learn the forecast instead of the value for up to this many points
    (0 = off), so the band does not adapt to the fault it is reporting; past that, the new level is learned."""
    tail_scale: float = 1.0
    """Heavy-tailed noise (rolling-quantile band only): multiply its robust sigma by the history's tail
    ratio -- (q99 - q1) / IQR over a normal's 3.45 -- capped at this (1 = off). MAD describes the middle
    of a distribution; on heavy-tailed noise a point 4 MADs out is routine. Re-estimated at each full
    refit, in model space."""
    robust_window: int = 256
    """Points the rolling-quantile band (model ``robust`` and the fallback) looks back over."""
    policy: AlarmPolicy = _ONLINE_POLICY
    """Online default: 2 of the last 3 points past 4.5 band-sigmas (one noisy interval never pages)."""
    limits: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    breach_horizon_s: float = 900.0
    max_series: int = 10_000

    def validate(self) -> ThresholdConfig:
        check_model(self.model)
        levels = check_levels(self.levels)
        alarm_level = levels[-1] if self.alarm_level is None else float(self.alarm_level)
        if alarm_level not in levels:
            raise ValueError(f"alarm_level {alarm_level} must be one of the levels {list(levels)}")
        if self.refit not in VALID_REFIT:
            raise ValueError(f"refit {self.refit!r} is not valid; choose one of: {', '.join(VALID_REFIT)}")
        if self.log_scale not in VALID_LOG_SCALE:
            raise ValueError(f"log_scale {self.log_scale!r} is not valid; choose one of: {', '.join(VALID_LOG_SCALE)}")
        if self.model == "mstl" and not (self.season_length and self.season_length >= 2):
            raise ValueError("model 'mstl' needs season_length >= 2; use model 'auto_ets' when no season is known")
        if self.robust_window < 3:
            raise ValueError(f"robust_window must be >= 3 points, got {self.robust_window}")
        if self.min_history < 3:
            raise ValueError(f"min_history must be >= 3 points, got {self.min_history}")
        if self.history < self.min_history:
            raise ValueError(f"history ({self.history}) must be >= min_history ({self.min_history})")
        if self.refit_every < 1 or self.update_every < 1:
            raise ValueError(f"refit_every and update_every must be >= 1 point, got {self.refit_every}, {self.update_every}")
        if not (0 < self.refit_cpu_share <= 1):
            raise ValueError(f"refit_cpu_share must be in (0, 1], got {self.refit_cpu_share}")
        if not self.tail_scale >= 1.0:
            raise ValueError(f"tail_scale must be >= 1 (1 = off), got {self.tail_scale}")
        if self.max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {self.max_series}")
        self.policy.validate()
        return replace(self, levels=levels, alarm_level=alarm_level)

    @classmethod
    def from_env(cls, **overrides: Any) -> ThresholdConfig:
        """Explicit keyword > ``OTEL_LLM_THRESHOLD_*`` env var > default; bad values raise ValueError naming the variable."""
        from otel_llm import environment_variables as ev
        from otel_llm._env import env_choice, env_float, env_int, env_list

        kw: dict[str, Any] = {}
        if "model" not in overrides:
            kw["model"] = env_choice(ev.OTEL_LLM_THRESHOLD_MODEL, None, cls.model, VALID_MODELS)
        if "levels" not in overrides:
            raw = env_list(ev.OTEL_LLM_THRESHOLD_LEVELS)
            if raw:
                try:
                    kw["levels"] = check_levels(raw)
                except ValueError as exc:
                    raise ValueError(f"{ev.OTEL_LLM_THRESHOLD_LEVELS}: {exc}") from None
        if "season_length" not in overrides:
            kw["season_length"] = env_int(ev.OTEL_LLM_THRESHOLD_SEASON_LENGTH, None, None, minimum=2)
        if "policy" not in overrides:
            z = env_float(ev.OTEL_LLM_THRESHOLD_Z, None, None, minimum=0.1)
            rarity = env_int(ev.OTEL_LLM_THRESHOLD_RARITY, None, None, minimum=0)
            policy = _ONLINE_POLICY
            if z is not None:
                policy = replace(policy, threshold=z, recover=min(policy.recover, z))
            if rarity is not None:
                policy = replace(policy, rarity=rarity)
            kw["policy"] = policy
        return cls(**{**kw, **overrides}).validate()

    @property
    def band_horizon(self) -> int:
        return self.horizon or min(max(4 * self.update_every, 32), 1024)


def _longest_run(arr) -> int:
    """Longest run of identical consecutive values in ``arr`` before its last run (numpy, O(n)).

    The run still going on at the end is left out: it is what is being judged. A history that never
    changed has no longest run to compare with: ``-1`` (the caller then never calls a flatline)."""
    import numpy as np

    change = np.flatnonzero(np.diff(arr) != 0.0)
    if change.size == 0:
        return -1
    edges = np.concatenate(([-1], change))
    return int(np.max(np.diff(edges)))


_MISSING = (math.nan,)
_NORMAL_TAIL_RATIO = 3.449
"""(q99 - q1) / (q75 - q25) of a normal distribution: 2 x 2.326 / (2 x 0.6745)."""
GAP_RATIO = 1.5
"""Intervals outside (1/2, GAP_RATIO] sampling intervals are off the cadence: gaps, bursts, or a new cadence."""
CADENCE_CHANGE = 8
"""Such intervals in a row, of about the same length, that mean the sampling interval itself changed (adopted)."""
GRID_BOOT = 8
"""First intervals whose median is the sampling interval, before the time grid is anchored."""
GRID_PHASE_GAIN = 0.02
"""Share of each point's offset from its slot by which the grid's phase moves toward it."""
SEASON_SPREAD_Z = 2.5
"""A seasonal-robust band's sigma is at least the past seasons' disagreement at that phase (half the range
of their medians) over this: a value at the level of either past season reads at most 2.5 sigmas, so the
day after a one-hour outage does not page on its normal hour (the centre, their median, sits halfway)."""


def _tail_factor(arr, cap: float) -> float:
    """How much heavier than a normal's the history's tails are, in [1, cap] (1 with too few points)."""
    import numpy as np

    arr = arr[~np.isnan(arr)]  # missing slots (gaps)
    if arr.size < 200:
        return 1.0
    q1, q25, q75, q99 = np.quantile(arr, [0.01, 0.25, 0.75, 0.99])
    iqr = q75 - q25
    if not iqr > 0:
        return 1.0
    return float(min(max((q99 - q1) / iqr / _NORMAL_TAIL_RATIO, 1.0), cap))


def series_key(metric: str, attributes: Mapping[str, Any] | None) -> str:
    """``metric{a="x",b="y"}`` with attributes sorted: the :attr:`Detection.series` form."""
    if not attributes:
        return metric
    inner = ",".join(f'{k}="{attributes[k]}"' for k in sorted(attributes))
    return f"{metric}{{{inner}}}"


def is_heavy_tailed(metric: str) -> bool:
    low = metric.lower()
    return any(h in low for h in HEAVY_TAILED_HINTS)


class _Band:
    """A cached forecast: model-space centre and one-sided sigmas, plus the drawn band."""

    __slots__ = ("n0", "h", "c", "tmean", "sup", "sdn", "mean", "lo", "hi", "fallback")

    def __init__(self, n0, h, c, tmean, sup, sdn, mean, lo, hi, fallback) -> None:
        self.n0, self.h, self.c = n0, h, c
        self.tmean, self.sup, self.sdn = tmean, sup, sdn
        self.mean, self.lo, self.hi = mean, lo, hi
        self.fallback = fallback


class SeriesState:
    """Everything kept per series. Read-only for callers (``handle.state``)."""

    __slots__ = (
        "key", "metric", "attributes", "log", "limit", "hist", "n", "last_t", "dt", "band", "fit_n", "fit_t",
        "pending", "rule", "z", "score", "value", "j", "open_start", "open_detection", "predictive",
        "last_event", "alarm_len", "fits", "updates", "fallbacks", "forecaster", "full_fit_n", "run", "run_limit",
        "stuck", "tail", "slow", "slow_dt", "filled", "period", "boot", "t0", "pos0", "span", "slots", "reread", "shared",
    )

    def __init__(self, key: str, metric: str, attributes: Mapping[str, Any], cfg: ThresholdConfig, log: bool) -> None:
        self.key = key
        self.metric = metric
        self.attributes = dict(attributes)
        self.log = log
        self.limit = cfg.limits.get(metric)
        self.hist: collections.deque[float] = collections.deque(maxlen=cfg.history)
        self.n = 0
        self.last_t = -math.inf
        self.dt = 0.0
        self.band: _Band | None = None
        self.fit_n = 0
        self.fit_t = -math.inf
        self.pending = False
        self.rule = AlarmRule(cfg.policy)
        self.z = 0.0
        self.score = 0.0
        self.value = math.nan
        self.j = 0
        self.open_start = 0.0
        self.open_detection: Detection | None = None
        self.predictive: Detection | None = None
        self.last_event = 0
        self.alarm_len = 0
        self.fits = 0
        self.updates = 0
        self.fallbacks = 0
        self.forecaster: Any = None
        self.full_fit_n = 0
        self.run = 0
        """Consecutive points equal to the latest value."""
        self.run_limit = math.inf
        """Run length that counts as a flatline (set at each fit from the history; inf = off)."""
        self.stuck = False
        self.tail = 1.0
        """Factor on the rolling-quantile band's robust sigma for heavy tails (``tail_scale``)."""
        self.slow = 0
        """Consecutive intervals off the cadence (outside (1/2, GAP_RATIO] x dt) and of about the same length
        ``slow_dt`` (CADENCE_CHANGE in a row: the new sampling interval)."""
        self.slow_dt = 0.0
        self.boot: list[float] | None = []
        """The first GRID_BOOT intervals (None once the time grid is anchored)."""
        self.t0 = 0.0
        self.pos0 = 0
        """The time grid: a point at time t belongs at history position pos0 + (t - t0) / dt."""
        self.shared = 0
        """Points that fell in the previous point's slot (judged; their value replaced that one in the history)."""
        self.span = 0.0
        self.slots = 0
        """Time spanned and slots held since the cadence was set (dt = span / slots; see ``_on_grid``)."""
        self.reread = 16
        """Slot count at which dt is next re-read (doubling)."""
        self.period: int | None = None
        """Season found in the data (``found_season``; None: none found, or the calendar gives one)."""
        self.filled = 0
        """Slots of missing points filled into the history so seasons keep their phase (see ``_fill_gap``)."""

    def current_band(self) -> tuple[float, float, float] | None:
        """(lower, forecast, upper) at the alarm level for the latest point, in the series' unit."""
        b = self.band
        if b is None:
            return None
        j = min(max(self.n - b.n0 - 1, 0), b.h - 1)
        return b.lo[j], b.mean[j], b.hi[j]


class SeriesHandle:
    """Fast path for one series: ``handle.observe(t, value)`` skips the key lookup."""

    __slots__ = ("_proc", "state")

    def __init__(self, proc: ThresholdProcessor, state: SeriesState) -> None:
        self._proc = proc
        self.state = state

    def observe(self, t: float, value: float) -> list[Detection]:
        return self._proc._observe(self.state, t, value)


def score_from_z(z_eff: float, threshold: float) -> float:
    """Map an effective z to [0, 1): 0.5 exactly at the alarm threshold."""
    return z_eff / (z_eff + threshold) if z_eff > 0 else 0.0


class ThresholdProcessor:
    """Learned bands and alarms for many series.

    Producers on several threads are safe for *different* series (series creation
    is locked); the points of one series must come from one thread at a time, as
    they do from a metric exporter, a span worker or an OTLP receiver's queue.


    * ``observe(metric, attributes, t, value) -> list[Detection]`` -- detections
      opened or closed by this point (also published on :attr:`stream`);
    * ``series(metric, attributes)`` -- a :class:`SeriesHandle` for the fast path;
    * ``force_flush()`` waits for pending background fits; ``shutdown()`` stops the worker.
    """

    def __init__(
        self,
        config: ThresholdConfig | None = None,
        *,
        stream: DetectionStream | None = None,
        meter_provider: Any = None,
        emit_metrics: bool = True,
    ) -> None:
        self.config = (config or ThresholdConfig()).validate()
        self.stream = stream if stream is not None else DetectionStream()
        self._series: dict[Any, SeriesState] = {}
        self._lock = threading.Lock()
        self._zq = normal_quantile(self.config.alarm_level)
        self._critical_z = CRITICAL_FACTOR * self.config.policy.threshold
        self.dropped: collections.Counter[str] = collections.Counter()
        self.fit_failures: collections.Counter[str] = collections.Counter()
        self._queue: collections.deque[tuple[SeriesState, list[float], int, float]] = collections.deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._worker: threading.Thread | None = None
        if self.config.refit == "background":
            self._worker = threading.Thread(target=self._run, name="otel-llm-thresholds", daemon=True)
            self._worker.start()
        if emit_metrics:
            self._register_gauges(meter_provider)

    # ------------------------------------------------------------------ series
    def series(self, metric: str, attributes: Mapping[str, Any] | None = None) -> SeriesHandle:
        attributes = attributes or {}
        cache_key = (metric, tuple(sorted(attributes.items())))
        st = self._series.get(cache_key)
        if st is None:
            try:
                st = self._create(cache_key, metric, attributes)
            except _SeriesLimit:
                raise ValueError(f"series limit reached ({self.config.max_series}); raise max_series") from None
        return SeriesHandle(self, st)

    def _create(self, cache_key, metric: str, attributes: Mapping[str, Any]) -> SeriesState:
        with self._lock:
            st = self._series.get(cache_key)
            if st is not None:
                return st
            if len(self._series) >= self.config.max_series:
                raise _SeriesLimit()
            cfg = self.config
            log = cfg.log_scale == "on" or (cfg.log_scale == "auto" and is_heavy_tailed(metric))
            st = SeriesState(series_key(metric, attributes), metric, attributes, cfg, log)
            self._series[cache_key] = st
            return st

    def states(self) -> list[SeriesState]:
        return list(self._series.values())

    def observe(self, metric: str, attributes: Mapping[str, Any] | None, t: float, value: float) -> list[Detection]:
        """Feed one point (``t`` unix seconds). Never raises for bad data: drops and counts it."""
        cache_key = (metric, tuple(sorted(attributes.items())) if attributes else ())
        st = self._series.get(cache_key)
        if st is None:
            try:
                st = self._create(cache_key, metric, attributes or {})
            except _SeriesLimit:
                self._drop("series_limit")
                return _EMPTY
        return self._observe(st, t, value)

    def observe_many(self, points: Iterable[tuple[str, Mapping[str, Any] | None, float, float]]) -> list[Detection]:
        out: list[Detection] = []
        for metric, attrs, t, v in points:
            d = self.observe(metric, attrs, t, v)
            if d:
                out.extend(d)
        return out

    def _drop(self, reason: str) -> None:
        self.dropped[reason] += 1
        report_dropped(_COMPONENT, reason)

    # ---------------------------------------------------------------- hot path
    def _observe(self, s: SeriesState, t: float, value: float) -> list[Detection]:
        try:
            value = float(value)
            t = float(t)
        except (TypeError, ValueError):
            self._drop("not_a_number")
            return _EMPTY
        if value != value or value == math.inf or value == -math.inf or t != t:
            self._drop("non_finite")
            return _EMPTY
        if t <= s.last_t:
            self._drop("out_of_order")
            return _EMPTY
        merge = False
        if s.n:
            iv = t - s.last_t
            dt = s.dt
            if s.boot is None and 0.5 * dt < iv <= GAP_RATIO * dt:  # the common case, inline (see _on_grid)
                s.slow = 0
                s.span += iv
                s.slots += 1
                if s.slots >= s.reread:
                    dt = self._reread(s)
                behind = s.pos0 + (t - s.t0) / dt - s.n
                if behind >= 0.75 or behind <= -0.75:
                    merge = self._place(s, behind, dt)
                elif behind:
                    s.t0 += GRID_PHASE_GAIN * behind * dt
            else:
                merge = self._on_grid(s, iv, t)
        s.last_t = t
        if not merge:
            s.n += 1
        s.run = s.run + 1 if value == s.value else 1
        s.value = value
        out = _EMPTY
        b = s.band
        learn = value
        if b is not None:
            j = s.n - b.n0 - 1
            if j >= b.h:
                j = b.h - 1
            elif j < 0:  # a point in the previous slot, just after a fit
                j = 0
            s.j = j
            c = b.c
            x = value if c is None else math.log1p((value if value > 0.0 else 0.0) / c)
            d = x - b.tmean[j]
            z = d / b.sup[j] if d >= 0.0 else d / b.sdn[j]
            s.stuck = s.run >= s.run_limit
            if s.stuck:  # a flatline: at least a threshold hit, whatever the band says
                th = self.config.policy.threshold
                if -th < z < th:
                    z = th if z >= 0.0 else -th
            s.z = z
            rule = s.rule
            ev = rule.step(z)
            s.score = score_from_z(rule.effective(z), self.config.policy.threshold)
            s.last_event = ev
            if ev:
                out = [self._event(s, ev, t, value, j)]
            elif rule.active and rule.peak >= self._critical_z:
                opened = s.open_detection
                if opened is not None and opened.severity is not Severity.CRITICAL:
                    out = [self._escalate(s, opened, value, j)]
            hold = self.config.hold_during_alarm
            if hold and rule.active:
                s.alarm_len += 1
                if s.alarm_len <= hold:
                    learn = b.mean[j]  # the band does not learn the fault while it is being reported
            else:
                s.alarm_len = 0
        else:
            s.last_event = 0
        if merge:
            s.hist[-1] = learn
        else:
            s.hist.append(learn)
        cfg = self.config
        if (
            not s.pending
            and s.n >= cfg.min_history
            and (s.fit_n == 0 or s.n - s.fit_n >= cfg.update_every)
            and t - s.fit_t >= cfg.refit_interval_s
        ):
            fitted = self._schedule(s, t)
            if fitted:
                out = [*out, *fitted]
        return out

    def _on_grid(self, s: SeriesState, iv: float, t: float) -> bool:
        """Learn the sampling interval and keep the history on the time grid it defines.

        The seasonal band finds "the same time yesterday" by position, so position must follow
        time. The interval is the time spanned since the cadence was set over the slots it held:
        an interval up to 1.75 sampling intervals is one slot, a longer one is a gap of as many
        slots as it spans (so timestamp jitter cancels out, where a running mean of the intervals
        moved the period by a few points at every refit); it is re-read each time the count
        doubles, keeping the grid's phase. A point's place on the grid says how many points are
        missing before it or that it shares the previous point's slot (``_place``). CADENCE_CHANGE
        intervals in a row outside (1/2, GAP_RATIO] intervals and of about the same length are a new
        sampling interval, adopted at once. ``_observe`` runs the common case (an interval within
        the cadence) inline and calls this for the first GRID_BOOT intervals and the others. Returns
        True when the point shares the previous slot."""
        boot = s.boot
        if boot is not None:  # the first intervals: their median, no gaps yet
            boot.append(iv)
            boot.sort()
            s.dt = dt = boot[len(boot) // 2]
            if len(boot) >= GRID_BOOT:
                s.boot = None
                self._set_grid(s, t)
                for v in boot:
                    self._span(s, v, dt)
            return False
        # an interval outside the cadence: a gap, a burst of early points, or the first of a new cadence
        dt = s.dt
        s.slow = s.slow + 1 if s.slow and abs(iv - s.slow_dt) <= 0.25 * s.slow_dt else 1
        s.slow_dt = iv
        if s.slow >= CADENCE_CHANGE:  # the sampling interval changed: adopt it
            s.dt, s.slow = iv, 0
            self._set_grid(s, t)
            return False
        self._span(s, iv, dt)
        if s.slots >= s.reread:
            dt = self._reread(s)
        return self._place(s, s.pos0 + (t - s.t0) / dt - s.n, dt)

    @staticmethod
    def _span(s: SeriesState, iv: float, dt: float) -> None:
        """Add an interval (one of the first GRID_BOOT, or one off the cadence; the inline common case
        adds its own one slot) to the span and slots that give dt: up to 1.75 dt one slot, longer as
        many as it spans, under dt / 4 none (a duplicate or a burst is not a slot of this cadence)."""
        if iv >= 0.25 * dt:
            s.span += iv
            s.slots += 1 if iv <= 1.75 * dt else round(iv / dt)

    @staticmethod
    def _reread(s: SeriesState) -> float:
        """Re-read the interval from the span and slots (at 16, 32, 64, ... slots), keeping the phase."""
        s.reread = 1 << s.slots.bit_length()
        s.t0 += (s.n - 1 - s.pos0) * s.dt  # re-anchored at the last point's slot
        s.pos0 = s.n - 1
        s.dt = s.span / s.slots
        return s.dt

    def _place(self, s: SeriesState, behind: float, dt: float) -> bool:
        """Place a point ``behind`` slots after the next position: fill the missing slots before it,
        or put it in the previous point's slot (its value replaces that one, where seasons keep the
        grid); one early or late by less than 3/4 of a slot is where it should be. The grid's phase
        then moves GRID_PHASE_GAIN of the way toward the point. True when the slot is shared."""
        merge = False
        if behind >= 0.75:
            missing = int(behind + 0.25)
            s.pos0 -= missing - self._fill_gap(s, missing)
            behind -= missing
        elif behind <= -0.75:
            if self._grid_seasons(s):
                merge = True
                s.shared += 1
                behind += 1.0
            else:
                k = round(-behind)
                s.pos0 += k
                behind += k
        if behind:
            s.t0 += GRID_PHASE_GAIN * behind * dt
        return merge

    @staticmethod
    def _set_grid(s: SeriesState, t: float) -> None:
        """Anchor a new time grid (interval ``s.dt``) at the point at time t."""
        s.t0 = t
        s.pos0 = s.n
        s.span = 0.0
        s.slots = 0
        s.reread = 16

    def _grid_seasons(self, s: SeriesState) -> tuple[int, ...]:
        """Seasons (in points) whose phase the history keeps on the time grid; () for none."""
        from otel_llm.processors._forecast import _candidates

        return _candidates(self._season(s))

    def _fill_gap(self, s: SeriesState, missing: int) -> int:
        """Keep a seasonal series' history on its time grid across ``missing`` absent points.

        The seasonal band finds "the same time yesterday" by position in the history, so a gap
        (a scrape that failed, an exporter restart, hours missing from a dataset) would shift
        every later day. Where the band uses a season, each missing slot gets the value one season
        earlier (keeping the shape's edges: a median over fewer points at a sharp daily rise tips to
        the wrong side); elsewhere the slot is held as NaN: the seasonal centre takes the median of
        the past values it has at that phase, the flat band the last points seen, and statsforecast
        models get the slots interpolated. The slots are never judged and count only as history (and
        in ``state.filled``). Gaps longer than the longest season hold only their remainder modulo it
        (the phase is all that matters). Series with no season to keep in phase are left as they are."""
        ps = self._grid_seasons(s)
        if not ps or missing < 1:
            return 0
        longest = max(ps)
        if missing > longest:
            missing %= longest
        hist = s.hist
        used = getattr(s.forecaster, "season_", None)
        if used and used <= len(hist):
            for _ in range(missing):
                hist.append(hist[-used])
        else:
            hist.extend(_MISSING * missing)
        s.n += missing
        s.filled += missing
        return missing

    def _event(self, s: SeriesState, ev: int, t: float, value: float, j: int) -> Detection:
        b = s.band
        assert b is not None
        cfg = self.config
        lv = cfg.alarm_level
        band = (b.lo[j], b.hi[j])
        direction = "above" if s.z > 0 else "below"
        if ev == OPENED:
            s.open_start = t
            peak = s.rule.peak
            sev = Severity.CRITICAL if peak >= self._critical_z else Severity.WARNING
            p = cfg.policy
            det = Detection(
                kind="threshold", series=s.key, start=t, end=None, score=s.score, severity=sev, metric=s.metric,
                attributes=dict(s.attributes), value=value, band=band, level=lv,
                explanation=(
                    f"{s.metric} = {value:.6g} is {direction} its {lv:g}% band "
                    f"[{band[0]:.6g}, {band[1]:.6g}] (forecast {b.mean[j]:.6g}); z = {s.z:.2f} "
                    + (
                        f"(one point past {p.instant:g}; threshold {p.threshold:g})"
                        if p.instant and s.rule.hits < p.k
                        else f"(threshold {p.threshold:g}, {s.rule.hits} of last {p.n} points)"
                    )
                    + ("; log-scale model" if s.log else "")
                    + (f"; heavy tails: sigma x{s.tail:.2f}" if s.tail > 1.0 else "")
                    + (f"; flatline: the same value for {s.run} points" if s.stuck else "")
                    + (f"; rolling-quantile fallback ({b.fallback})" if b.fallback else "")
                ),
            )
            s.open_detection = det
        else:
            opened = s.open_detection
            det = Detection(
                kind="threshold", series=s.key, start=opened.start if opened else s.open_start, end=t,
                score=s.score, severity=opened.severity if opened else Severity.WARNING, metric=s.metric,
                attributes=dict(s.attributes), value=value, band=band, level=lv,
                explanation=f"{s.metric} back inside its {lv:g}% band [{band[0]:.6g}, {band[1]:.6g}]",
            )
            s.open_detection = None
        self._publish([det])
        return det

    def _escalate(self, s: SeriesState, opened: Detection, value: float, j: int) -> Detection:
        """The open ``warning`` alert of ``s`` has grown past the critical level: the same detection (same
        start, same fingerprint, still open) with severity ``critical``, published as an update. Sinks treat
        it as one: Alertmanager resolves the warning and fires the critical alert, the RCA incident turns
        critical. Not a new onset (``last_event`` stays NONE, so the harness scores one alarm)."""
        b = s.band
        assert b is not None
        det = replace(
            opened, severity=Severity.CRITICAL, score=s.score, value=value, band=(b.lo[j], b.hi[j]),
            explanation=(
                f"{opened.explanation}; escalated to critical: {s.metric} = {value:.6g}, z = {s.z:.2f} "
                f"(past {self._critical_z:g})"
            ),
        )
        s.open_detection = det
        self._publish([det])
        return det

    def _publish(self, dets: list[Detection]) -> None:
        try:
            self.stream.publish(dets)
        except Exception as exc:  # pragma: no cover - stream never raises
            report_error(_COMPONENT, exc)

    # ----------------------------------------------------------------- fitting
    def _schedule(self, s: SeriesState, t: float) -> list[Detection]:
        """Fit now (inline: returns the predictive detections) or queue for the worker."""
        snap = list(s.hist)
        if self._worker is None:
            return self._fit(s, snap, s.n, t)
        s.pending = True
        with self._cond:
            self._queue.append((s, snap, s.n, t))
            self._cond.notify()
        return _EMPTY

    def _fit(self, s: SeriesState, y: list[float], n_at: int, t: float) -> list[Detection]:
        """Fit one series and swap its cached band. Never raises (one bad series never stops the others)."""
        import numpy as np
        from otel_llm.processors._forecast import BandForecaster, to_model_space

        cfg = self.config
        try:
            arr = np.asarray(y, dtype=float)
            h = cfg.band_horizon
            bf = s.forecaster
            failed_before = bf.fallback_ if bf is not None else None
            if bf is None or n_at - s.full_fit_n >= cfg.refit_every:
                failed_before = None
                self._find_period(s, arr)
                bf = BandForecaster(
                    cfg.model, level=cfg.levels, season_length=self._season(s), log_scale=s.log,
                    conformal=cfg.conformal, robust_window=cfg.robust_window,
                ).fit(arr, h=h)
                res = bf.predict(h)
                s.forecaster = bf
                s.full_fit_n = n_at
                if cfg.tail_scale > 1.0:
                    s.tail = _tail_factor(to_model_space(arr, bf.scale_), cfg.tail_scale)
                s.fits += 1
            else:
                res = bf.update(arr, h)
                s.updates += 1
            if bf.fallback_ and not failed_before:
                s.fallbacks += 1
                self.fit_failures[bf.fallback_] += 1
                report_error(f"{_COMPONENT}.fit", bf.error_ or RuntimeError(bf.fallback_))
            c = bf.scale_
            lv = cfg.alarm_level
            mean = res["mean"]
            lo, hi = res[level_key("lo", lv)], res[level_key("hi", lv)]
            tmean = to_model_space(mean, c)
            tlo, thi = to_model_space(lo, c), to_model_space(hi, c)
            if bf.robust_sigma_ is not None:
                # Rolling-quantile band (model or fallback): one symmetric sigma, the larger of the
                # band's half-width and the robust MAD sigma. One-sided widths of a skewed window
                # would hide exactly the upward spikes that matter (the upper tail is the tail).
                sig = np.maximum(
                    np.maximum((thi - tlo) / (2.0 * self._zq), bf.robust_sigma_ * s.tail), 1e-3 * np.abs(tmean)
                )
                if bf.season_spread_ is not None:  # where the past seasons disagree, so does the centre
                    sig = np.maximum(sig, bf.season_spread_ / SEASON_SPREAD_Z)
                sup = sdn = np.maximum(sig, 1e-9)
            else:
                ty = to_model_space(arr[~np.isnan(arr)][-256:], c)
                mad = float(np.median(np.abs(ty - np.median(ty)))) * 1.4826
                floor = np.maximum(np.maximum(0.1 * mad, 1e-3 * np.abs(tmean)), 1e-9)
                sup = np.maximum((thi - tmean) / self._zq, floor)
                sdn = np.maximum((tmean - tlo) / self._zq, floor)
            s.band = _Band(
                n_at, h, c, tmean.tolist(), sup.tolist(), sdn.tolist(), mean.tolist(), lo.tolist(), hi.tolist(),
                bf.fallback_,
            )
            if cfg.flatline and cfg.policy.direction == "both":
                longest = _longest_run(arr)
                s.run_limit = max(cfg.flatline_min, 2 * longest + 1) if longest >= 0 else math.inf
            s.fit_n = n_at
            s.fit_t = t
            if s.limit is not None:
                return self._predict_breach(s, arr, t)
            return _EMPTY
        except Exception as exc:
            self.fit_failures[type(exc).__qualname__] += 1
            report_error(f"{_COMPONENT}.fit", exc)
            s.fit_n = n_at  # retry after refit_every more points
            s.fit_t = t
            return _EMPTY
        finally:
            s.pending = False

    def _season(self, s: SeriesState) -> int | tuple[int, ...] | None:
        """The season length to model: configured, or the calendar seasons (one day, one week of points)
        for ``robust`` (``daily_season`` / ``weekly_season``) that the history can hold, or else the
        period found in the data (``found_season``)."""
        cfg = self.config
        if cfg.season_length:
            return cfg.season_length
        return self._calendar(s) or s.period

    def _calendar(self, s: SeriesState) -> tuple[int, ...] | None:
        from otel_llm.processors._forecast import seasonal_history_needed

        cfg = self.config
        days = [d for d, on in ((1, cfg.daily_season), (7, cfg.weekly_season)) if on]
        if not (days and cfg.model == "robust" and s.dt > 0.0):
            return None
        ps = [round(d * 86400.0 / s.dt) for d in days]
        ps = tuple(p for p in ps if p >= 4 and seasonal_history_needed(p, cfg.robust_window) <= cfg.history)
        return ps or None

    def _find_period(self, s: SeriesState, arr) -> None:
        """Look for a season in the data where the calendar gives none (``found_season``)."""
        from otel_llm.processors._forecast import (
            SEASON_OFFSETS,
            SEASONS,
            detect_period,
            seasonal_history_needed,
        )

        cfg = self.config
        if not (cfg.found_season and cfg.model == "robust" and not cfg.season_length
                and (cfg.daily_season or cfg.weekly_season)):
            return
        day = round(86400.0 / s.dt) if s.dt > 0.0 else 0
        if day >= 4 and seasonal_history_needed(day, cfg.robust_window) <= cfg.history:
            return  # the timestamps name a usable day: the calendar seasons (as configured) decide
        # the longest period whose seasons and residual window the history can hold
        longest = (cfg.history - SEASON_OFFSETS) // (SEASONS + 1)
        s.period = detect_period(arr, max_period=longest)

    def _predict_breach(self, s: SeriesState, arr, t: float) -> list[Detection]:
        """Time-to-breach: a trend forecast of a saturating series crossing its limit."""
        import numpy as np
        from otel_llm.processors._forecast import forecast_cross
        from statsforecast.models import Holt

        cfg = self.config
        limit = s.limit
        assert limit is not None
        dt = s.dt if s.dt > 0 else 1.0
        steps = int(min(max(cfg.breach_horizon_s / dt, 1), 1000))
        current = float(arr[-1])
        eta = None
        if current < limit and arr.size >= 10:
            mean = Holt().forecast(y=arr[~np.isnan(arr)][-256:], h=steps)["mean"]
            j = forecast_cross(mean, limit)
            if j is not None:
                eta = (j + 1) * dt
        if eta is not None and s.predictive is None:
            det = Detection(
                kind="predictive", series=s.key, start=t, score=float(min(1.0, 1.0 - eta / cfg.breach_horizon_s + 0.5)),
                severity=Severity.WARNING, metric=s.metric, attributes=dict(s.attributes), value=current,
                band=(-math.inf, limit),
                explanation=(
                    f"{s.metric} = {current:.4g} is forecast to reach its limit {limit:g} in about {eta:.0f} s "
                    f"(trend over the last {min(arr.size, 256)} points)"
                ),
            )
            s.predictive = det
            self._publish([det])
            return [det]
        if eta is None and s.predictive is not None:
            old = s.predictive
            s.predictive = None
            det = replace(old, end=t, explanation=f"{s.metric} no longer forecast to reach {limit:g}")
            self._publish([det])
            return [det]
        return _EMPTY

    def _run(self) -> None:
        share = self.config.refit_cpu_share
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._queue.clear()
                    self._cond.notify_all()
                    return
                s, snap, n_at, t = self._queue.popleft()
                self._busy = True
            t0 = time.perf_counter()
            self._fit(s, snap, n_at, t)
            spent = time.perf_counter() - t0
            with self._cond:
                self._busy = False
                self._cond.notify_all()
            if share < 1.0:
                time.sleep(spent * (1.0 - share) / share)

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        """Wait until queued background fits are done."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout_millis / 1000.0)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout_millis / 1000.0)

    # ----------------------------------------------------------------- metrics
    def _register_gauges(self, meter_provider: Any) -> None:
        from opentelemetry import metrics

        meter = (meter_provider or metrics.get_meter_provider()).get_meter("otel_llm.processors.thresholds")
        meter.create_observable_gauge(
            semconv.OTEL_LLM_THRESHOLD_UPPER, callbacks=[lambda o: self._observe_band(2)],
            description="Upper edge of the learned band (series' unit)",
        )
        meter.create_observable_gauge(
            semconv.OTEL_LLM_THRESHOLD_LOWER, callbacks=[lambda o: self._observe_band(0)],
            description="Lower edge of the learned band (series' unit)",
        )
        meter.create_observable_gauge(
            semconv.OTEL_LLM_THRESHOLD_FORECAST, callbacks=[lambda o: self._observe_band(1)],
            description="Forecast (centre of the band)",
        )
        meter.create_observable_gauge(
            semconv.OTEL_LLM_ANOMALY_SCORE, callbacks=[lambda o: self._observe_scores()], unit="1",
            description="Anomaly score in [0, 1]; 0.5 is the alarm threshold",
        )

    def _attrs(self, s: SeriesState) -> dict[str, Any]:
        return {**s.attributes, semconv.OTEL_LLM_METRIC: s.metric}

    def _observe_band(self, which: int):
        from opentelemetry.metrics import Observation

        out = []
        lv = self.config.alarm_level
        for s in self.states():
            band = s.current_band()
            if band is not None:
                attrs = self._attrs(s)
                if which != 1:
                    attrs[semconv.OTEL_LLM_LEVEL] = lv
                out.append(Observation(band[which], attrs))
        return out

    def _observe_scores(self):
        from opentelemetry.metrics import Observation

        return [
            Observation(s.score, {**self._attrs(s), semconv.OTEL_LLM_DETECTOR: "threshold"})
            for s in self.states() if s.band is not None
        ]


class _SeriesLimit(Exception):
    pass


__all__ = [
    "DEFAULT_LIMITS",
    "HEAVY_TAILED_HINTS",
    "VALID_MODELS",
    "SeriesHandle",
    "SeriesState",
    "ThresholdConfig",
    "ThresholdProcessor",
    "is_heavy_tailed",
    "score_from_z",
    "series_key",
]
