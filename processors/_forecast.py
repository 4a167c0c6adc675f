"""Forecast bands for dynamic thresholds (statsforecast behind one small contract).

Two paths, one result (STYLE habit 11):

* stateless ``forecast(y, h, level=(80, 95), model=...)`` -- statsforecast's own
  ``Model.forecast`` path;
* stateful ``BandForecaster(...).fit(y).predict(h)`` -- statsforecast's
  ``fit`` / ``predict`` path.

Both return ``dict[str, np.ndarray]`` with the fixed keys ``mean`` and
``lo-X`` / ``hi-X`` for every level X, each of length ``h``, in the series'
own unit. ``tests/test_thresholds_forecast.py`` asserts that the two paths
agree for every model.

Models (``VALID_MODELS``):

* ``auto_ets`` -- statsforecast ``AutoETS`` (default; seasonal when
  ``season_length`` > 1 and there are two full seasons);
* ``mstl`` -- statsforecast ``MSTL`` with an ``AutoETS`` trend, for a known
  season (needs ``season_length``);
* ``robust`` -- the rolling-quantile band: median and empirical quantiles of the
  last ``robust_window`` points. With a ``season_length`` P and at least
  ``SEASONS`` seasons of history it becomes *seasonal-robust* whenever the
  season explains the series: the centre is the median of the same phase
  (+-``SEASON_OFFSETS`` points) in the last ``SEASONS`` (2) seasons, the band the
  quantiles of the residuals from it; the season is used only when the typical
  residual is under ``SEASON_GATE`` times the typical deviation from the flat
  median (``seasonal_gate``), so a series without a real season keeps the flat
  band. Given several candidate periods (the threshold processor passes one
  day and one week of points), it uses the one with the smallest residuals
  on its own window among those the gate accepts, unless a longer one leaves
  under ``SEASON_GATE`` x its residuals over the same points (a daily season
  judged on a Friday alone looks as good as a weekly one). It is also the **fallback** whenever a
  statsforecast model fails to fit (``BandForecaster.fallback_`` names why).

``log_scale=True`` models ``log1p(y / c)`` (``c`` = 10% of the median positive
value) and maps the band back, which suits heavy-tailed, positive series
(latencies, TTFT, TPOT). A series with negative values is modelled linearly.
``conformal=True`` uses statsforecast ``ConformalIntervals`` instead of the
model's parametric intervals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

VALID_MODELS = ("auto_ets", "mstl", "robust")
DEFAULT_LEVELS: tuple[float, ...] = (80.0, 95.0)
_ROBUST_WINDOW = 256
SEASONS = 2
"""Past seasons the seasonal-robust centre looks back over."""
SEASON_OFFSETS = 2
"""Points either side of the same phase that also enter the seasonal median (absorbs jitter)."""
SEASON_GATE = 0.6
"""Use the season when median |seasonal residual| < this x median |deviation from the flat median|..."""
SEASON_GATE_TAIL = 0.4
"""...or when the 90th percentile of |seasonal residual| < this x that of |deviation|: a pattern held by a
minority of the points (a hump for a third of the day) leaves the median deviation small, so the median
test alone is marginal there and turns the season off for days after one odd day."""


def check_levels(level: Iterable[float] | None) -> tuple[float, ...]:
    """Validate confidence levels once, at the front door: numbers in (0, 100)."""
    if level is None:
        return DEFAULT_LEVELS
    if isinstance(level, (int, float)):
        level = [level]
    out = []
    for x in level:
        try:
            v = float(x)
        except (TypeError, ValueError):
            raise ValueError(f"level {x!r} is not a number; levels are percentages in (0, 100), e.g. [80, 95]") from None
        if not (0.0 < v < 100.0):
            raise ValueError(f"level {v!r} is out of range; levels are percentages in (0, 100), e.g. [80, 95]")
        out.append(v)
    if not out:
        raise ValueError("at least one level is needed, e.g. [80, 95]")
    return tuple(sorted(set(out)))


def _sf_levels(levels: Sequence[float]) -> list:
    """Levels as statsforecast keys them (``80`` -> ``lo-80``, ``99.5`` -> ``lo-99.5``)."""
    return [int(v) if float(v).is_integer() else v for v in levels]


def check_model(model: str) -> str:
    if model not in VALID_MODELS:
        raise ValueError(f"unknown forecast model {model!r}; choose one of: {', '.join(VALID_MODELS)}")
    return model


def level_key(prefix: str, level: float) -> str:
    """statsforecast's key form: ``lo-95``, ``hi-80``, ``hi-99.5``."""
    return f"{prefix}-{int(level) if float(level).is_integer() else level}"


def normal_quantile(level: float) -> float:
    """z such that a two-sided normal interval of ``z`` covers ``level`` %."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 200.0)


# ----------------------------------------------------------------------------
# transforms (pure)
# ----------------------------------------------------------------------------
def log_scale_constant(y: np.ndarray) -> float | None:
    """The ``c`` of ``log1p(y / c)``, or None when the series cannot go on a log scale."""
    if y.size == 0 or float(np.min(y)) < 0.0:
        return None
    pos = y[y > 0]
    if pos.size == 0:
        return None
    return 0.1 * float(np.median(pos))


def to_model_space(y: np.ndarray, c: float | None) -> np.ndarray:
    return y if c is None else np.log1p(np.maximum(y, 0.0) / c)


def from_model_space(z: np.ndarray, c: float | None) -> np.ndarray:
    if c is None:
        return z
    with np.errstate(over="ignore"):
        return c * np.expm1(z)  # a diverging band becomes inf and is caught by the finite check


# ----------------------------------------------------------------------------
# statsforecast models
# ----------------------------------------------------------------------------
def _sf_model(model: str, season_length: int | None, n: int, h: int, conformal: bool):
    from statsforecast.models import MSTL, AutoETS

    kwargs = {}
    if conformal:
        from statsforecast.utils import ConformalIntervals

        n_windows = max(2, min(5, (n - 10) // max(h, 1)))
        kwargs["prediction_intervals"] = ConformalIntervals(h=h, n_windows=n_windows)
    m = season_length or 1
    if model == "mstl":
        if m < 2:
            raise ValueError("model 'mstl' needs season_length >= 2 (the number of points in one season)")
        if n < 2 * m + 1:
            raise ValueError(f"model 'mstl' needs two full seasons ({2 * m + 1} points); have {n}")
        return MSTL(season_length=m, trend_forecaster=AutoETS(model="ZZN"), **kwargs)
    # auto_ets: seasonal only with two full seasons of data
    if m < 2 or n < 2 * m + 1:
        m = 1
    return AutoETS(season_length=m, **kwargs)


def _candidates(season_length: int | Sequence[int] | None) -> tuple[int, ...]:
    """``season_length`` as a tuple of candidate periods (the robust band may be given several)."""
    if not season_length:
        return ()
    if isinstance(season_length, (int, np.integer)):
        return (int(season_length),)
    return tuple(int(p) for p in season_length)


def detect_period(y, *, min_period: int = 8, max_period: int | None = None, min_acf: float = 0.3) -> int | None:
    """The series' strongest repeating period in points, found in the data, or None.

    For timestamps that name no calendar (sequence numbers, per-second data): the
    highest peak of the autocorrelation of the linearly detrended series, past
    its first zero crossing (so a trend or a random walk, which never
    decorrelates, has none), between ``min_period`` and half the points,
    where it is a local peak of at least ``min_acf``. The biased estimator
    favours the fundamental over its multiples. Missing slots (NaN) are left out.
    """
    y = np.asarray(y, dtype=float)
    y = y[~np.isnan(y)]
    n = y.size
    hi = n // 2 if max_period is None else min(int(max_period), n // 2)
    if hi < 2 * min_period:
        return None
    t = np.arange(n, dtype=float)
    x = y - np.polyval(np.polyfit(t, y, 1), t)
    v = float(np.dot(x, x))
    if not v > 1e-12 * max(float(np.dot(y, y)), 1e-300):
        return None  # constant (or a straight line)
    m = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, m)
    acf = np.fft.irfft(f * np.conj(f), m)[: hi + 2] / v
    below = np.flatnonzero(acf[1:] <= 0.0)
    if below.size == 0:
        return None
    lo = max(min_period, int(below[0]) + 1)
    if lo > hi:
        return None
    p = lo + int(np.argmax(acf[lo : hi + 1]))
    if acf[p] < min_acf or acf[p] < acf[p - 1] or acf[p] < acf[p + 1]:
        return None
    return p


def seasonal_history_needed(season_length: int, window: int = _ROBUST_WINDOW, seasons: int = SEASONS) -> int:
    """Points of history the seasonal-robust band needs to centre on ``seasons`` past seasons."""
    return seasons * season_length + SEASON_OFFSETS + max(window, season_length)


def _phase_values(y: np.ndarray, idx: np.ndarray, p: int, seasons: int) -> np.ndarray:
    """``y`` at the same phase (+-SEASON_OFFSETS) in each of the last ``seasons`` seasons before each
    ``idx``: shape (idx, seasons, 2 * SEASON_OFFSETS + 1)."""
    lags = np.array([j * p + o for j in range(1, seasons + 1) for o in range(-SEASON_OFFSETS, SEASON_OFFSETS + 1)])
    src = idx[:, None] - lags[None, :]
    src = np.clip(src, 0, y.size - 1)  # future indexes (idx beyond the data) only occur for o < 0 and h > p
    return y[src].reshape(idx.size, seasons, 2 * SEASON_OFFSETS + 1)


def _centre(v: np.ndarray) -> np.ndarray:
    """The seasonal centre from :func:`_phase_values`: the median of all of them per step."""
    n = v.shape[0]
    if np.isnan(v).any():
        # Missing slots (gaps): take the same offset from the other seasons, so the points either side
        # of a sharp daily rise stay balanced; then the median of what there is (NaN if nothing).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = np.where(np.isnan(v), np.nanmean(v, axis=1, keepdims=True), v).reshape(n, -1)
            return np.nanmedian(v, axis=1)
    return np.median(v.reshape(n, -1), axis=1)


def _seasonal_centre(y: np.ndarray, idx: np.ndarray, p: int, seasons: int = SEASONS) -> np.ndarray:
    """Median of ``y`` at the same phase (+-SEASON_OFFSETS) in the last ``seasons`` seasons before each ``idx``."""
    return _centre(_phase_values(y, idx, p, seasons))


def _seasons_held(n: int, p: int, window: int) -> int:
    """Past seasons the centre uses with ``n`` points: SEASONS once they are held, one until then (0: the
    history holds less than one season plus the residual window). A daily series of 5-minute points is
    judged against yesterday from its 578th point instead of a flat band until its 866th."""
    if n >= seasonal_history_needed(p, window):
        return SEASONS
    return 1 if n >= seasonal_history_needed(p, window, seasons=1) else 0


def seasonal_gate(y: np.ndarray, season_length: int | None, window: int = _ROBUST_WINDOW) -> np.ndarray | None:
    """Residuals of the last points from the seasonal centre, or None when the season does not help.

    None when there is no season, too little history, or the season does not
    explain the series: median |residual| >= SEASON_GATE x median |y - median(y)|
    over the same points, and the same with their 90th percentiles and
    SEASON_GATE_TAIL.
    """
    p = season_length or 0
    if p < 2:
        return None
    k = _seasons_held(y.size, p, window)
    if not k:
        return None
    m = max(window, p)
    idx = np.arange(y.size - m, y.size)
    r = y[idx] - _seasonal_centre(y, idx, p, k)
    w = y[idx]
    ok = ~np.isnan(r)
    if not ok.all():  # missing slots (or no past value at their phase) are left out
        if ok.sum() < m // 2:
            return None
        r, w = r[ok], w[ok]
    dr, dw = np.abs(r - np.median(r)), np.abs(w - np.median(w))
    if float(np.median(dr)) < SEASON_GATE * float(np.median(dw)):
        return r
    if float(np.quantile(dr, 0.9)) < SEASON_GATE_TAIL * float(np.quantile(dw, 0.9)):
        return r
    return None


def robust_band(
    y: np.ndarray, h: int, levels: Sequence[float], window: int = _ROBUST_WINDOW,
    season_length: int | Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Median and empirical quantiles of the last ``window`` points, flat over ``h``; seasonal-robust
    (centre = same phase of past seasons, band = residual quantiles) when :func:`seasonal_gate` says so.

    ``season_length`` may be several candidate periods (a day and a week of points): of those the gate
    accepts, the one with the smallest median absolute residual on its own window is used, unless a
    longer one leaves under ``SEASON_GATE`` x its residuals over the same points (see :func:`_robust`)."""
    return _robust(y, h, levels, window, season_length)[0]


def _season_spread(v: np.ndarray) -> np.ndarray:
    """Half the range of the past seasons' medians per step, from :func:`_phase_values`: how far the
    seasons the centre is made of disagree there (0 where they agree or a season is missing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmedian(v, axis=2)
        d = (np.nanmax(m, axis=1) - np.nanmin(m, axis=1)) / 2.0
    return np.where(np.isnan(d), 0.0, d)


def _robust(
    y, h, levels, window, season_length
) -> tuple[dict[str, np.ndarray], float, int | None, np.ndarray | None]:
    """:func:`robust_band` plus the robust sigma of the points the band is made of (1.4826 x MAD, at
    least the smallest gap between distinct values), the season it used (None: the flat band) and, for
    each step, how far the past seasons disagree at that phase (:func:`_season_spread`; None unless the
    centre is the median of two or more seasons)."""
    y = np.asarray(y, dtype=float)
    if y.size == 0:
        raise ValueError("robust band needs at least one point")
    best = None
    accepted = [(p, r) for p in sorted(_candidates(season_length)) if (r := seasonal_gate(y, p, window)) is not None]
    for p, r in accepted:
        spread = float(np.median(np.abs(r - np.median(r))))
        if best is None or spread < best[0]:
            best = (spread, p, r)
    longer = [(p, r) for p, r in accepted if p > best[1]] if best is not None else []
    if longer:
        # Each season's own residual window is its last max(window, period) points, so a daily season is
        # judged on its last day alone: on a Friday it ties a weekly one and then pages every weekend.
        # Over the same points (the longest season's window), a longer season that leaves under
        # SEASON_GATE x the chosen one's residuals explains what that one misses, and is used instead.
        seasons = {p: _seasons_held(y.size, p, window) for p, _ in accepted}
        span = min(max(r.size for _, r in accepted), *(y.size - k * p - SEASON_OFFSETS for p, k in seasons.items()))
        idx = np.arange(y.size - span, y.size, max(span // 512, 1))  # every k-th point: a median needs no more

        def common(p: int) -> float:
            d = y[idx] - _seasonal_centre(y, idx, p, seasons[p])
            d = d[~np.isnan(d)]
            return float(np.median(np.abs(d - np.median(d)))) if d.size else math.inf

        chosen = common(best[1])
        for p, r in longer:
            if common(p) < SEASON_GATE * chosen:
                best = (best[0], p, r)
                break
    spread = None
    if best is not None:
        held = _seasons_held(y.size, best[1], window)
        v = _phase_values(y, np.arange(y.size, y.size + h), best[1], held)
        w, shift = best[2], _centre(v)
        if held >= 2:
            spread = _season_spread(v)
    else:
        w, shift = y[-window:], np.zeros(h)
        if np.isnan(w).any():  # missing slots (gaps): the last ``window`` points that were seen
            w = y[~np.isnan(y)][-window:]
    med = float(np.median(w))
    if np.isnan(shift).any():  # no past value at that phase: the median of the last points seen
        shift = np.where(np.isnan(shift), float(np.median(y[~np.isnan(y)][-window:])) - med, shift)
    out = {"mean": shift + med}
    for lv in levels:
        lo, hi = np.quantile(w, [(100.0 - lv) / 200.0, (100.0 + lv) / 200.0])
        out[level_key("lo", lv)] = shift + float(lo)
        out[level_key("hi", lv)] = shift + float(hi)
    # At least one step of the data's resolution (the smallest gap between distinct values): a window
    # of zeros with a few ones (a sparse error counter) has MAD 0, and its next 1 is one step, not 1e9 sigmas.
    u = np.unique(w)
    step = float(np.min(np.diff(u))) if u.size > 1 else 0.0
    sig = max(1.4826 * float(np.median(np.abs(w - med))), step)
    return out, sig, (best[1] if best is not None else None), spread


def _from_model_space_dict(res: dict, c: float | None, levels: Sequence[float]) -> dict[str, np.ndarray]:
    keys = ["mean"] + [level_key(p, lv) for lv in levels for p in ("lo", "hi")]
    return {k: from_model_space(np.asarray(res[k], dtype=float), c) for k in keys}


def _prepare(y, log_scale: bool, missing_ok: bool = False) -> tuple[np.ndarray, float | None]:
    arr = np.asarray(y, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError("cannot forecast an empty series")
    finite = np.isfinite(arr)
    if not finite.all() and not (missing_ok and finite.any() and not np.isinf(arr).any()):
        raise ValueError("series contains NaN or inf; drop them before forecasting")
    c = log_scale_constant(arr[finite]) if log_scale else None
    return to_model_space(arr, c), c


def interpolate_missing(z: np.ndarray) -> np.ndarray:
    """``z`` with its NaN slots (missing points) linearly interpolated; ``z`` itself if it has none."""
    miss = np.isnan(z)
    if not miss.any():
        return z
    idx = np.arange(z.size)
    return np.interp(idx, idx[~miss], z[~miss])


def forecast(
    y,
    h: int,
    level: Iterable[float] | None = DEFAULT_LEVELS,
    *,
    model: str = "auto_ets",
    season_length: int | None = None,
    log_scale: bool = False,
    conformal: bool = False,
) -> dict[str, np.ndarray]:
    """Stateless forecast band: fit on ``y`` and forecast ``h`` steps (raises on failure)."""
    levels = check_levels(level)
    check_model(model)
    if h < 1:
        raise ValueError(f"h must be >= 1, got {h}")
    z, c = _prepare(y, log_scale)
    if model == "robust":
        return _from_model_space_dict(robust_band(z, h, levels, season_length=season_length), c, levels)
    sf = _sf_model(model, season_length, z.size, h, conformal)
    res = sf.forecast(y=z, h=h, level=_sf_levels(levels))
    return _from_model_space_dict(res, c, levels)


class BandForecaster:
    """Stateful forecast band (estimator-style: ``fit`` returns self, learned state ends in ``_``).

    ``fit`` never raises for a bad series when ``fallback=True``: a
    statsforecast failure switches this fit to :func:`robust_band` and sets
    ``fallback_`` to the exception type name (the caller counts it).
    """

    def __init__(
        self,
        model: str = "auto_ets",
        *,
        level: Iterable[float] | None = DEFAULT_LEVELS,
        season_length: int | Sequence[int] | None = None,
        log_scale: bool = False,
        conformal: bool = False,
        fallback: bool = True,
        robust_window: int = _ROBUST_WINDOW,
    ) -> None:
        self.model = check_model(model)
        self.level = check_levels(level)
        if self.model != "robust":
            seasons = _candidates(season_length)
            if len(seasons) > 1:
                raise ValueError(
                    f"several candidate seasons {season_length} are only for model 'robust'; give one season_length"
                )
            season_length = seasons[0] if seasons else None
        self.season_length = season_length
        self.log_scale = log_scale
        self.conformal = conformal
        self.fallback = fallback
        self.robust_window = robust_window

    def fit(self, y, h: int = 1) -> BandForecaster:
        """Fit on ``y``. ``h`` is only used to size conformal windows."""
        z, c = _prepare(y, self.log_scale, missing_ok=True)
        self.scale_ = c
        self.n_obs_ = z.size
        self.fallback_: str | None = None
        self.error_: BaseException | None = None
        self.season_: int | None = None
        self.model_ = None
        self.y_ = self._keep(z)
        if self.model == "robust":
            return self
        try:
            self.model_ = _sf_model(self.model, self.season_length, z.size, h, self.conformal).fit(
                interpolate_missing(z)
            )
        except Exception as exc:
            if not self.fallback:
                raise
            self.model_ = None
            self.fallback_ = type(exc).__qualname__
            self.error_ = exc
        return self

    def _keep(self, z: np.ndarray) -> np.ndarray:
        """The tail of the history the robust band needs (whole seasons when a season is known)."""
        p = max(_candidates(self.season_length), default=0)
        need = seasonal_history_needed(p, self.robust_window) if p >= 2 else self.robust_window
        return z[-need:].copy()

    def update(self, y, h: int) -> dict[str, np.ndarray]:
        """Band for ``h`` steps after the newer history ``y``, keeping the fitted parameters.

        statsforecast's ``forward`` path: the model's state is re-filtered over
        ``y`` without re-estimating parameters (~100x cheaper than ``fit``). The
        log-scale constant of the last ``fit`` is kept so the two stay comparable.
        """
        if not hasattr(self, "n_obs_"):
            raise RuntimeError("call fit() before update()")
        arr = np.asarray(y, dtype=float).ravel()
        z = to_model_space(arr, self.scale_)
        self.y_ = self._keep(z)
        return self._band(h, lambda: self.model_.forward(y=interpolate_missing(z), h=h, level=_sf_levels(self.level)))

    def predict(self, h: int) -> dict[str, np.ndarray]:
        if not hasattr(self, "n_obs_"):
            raise RuntimeError("call fit() before predict()")
        if h < 1:
            raise ValueError(f"h must be >= 1, got {h}")
        return self._band(h, lambda: self.model_.predict(h=h, level=_sf_levels(self.level)))

    def _band(self, h: int, model_call) -> dict[str, np.ndarray]:
        """The model's band from ``model_call()`` when it is finite; otherwise (with ``fallback``)
        drop the model, remember why, and return the robust rolling-quantile band.

        ``robust_sigma_`` is the model-space robust sigma (1.4826 x MAD) of the points a robust band
        was made of, None when the band came from a statsforecast model; ``season_spread_``, for a
        seasonal-robust band, how far its past seasons disagree at each step (model space, else None)."""
        self.robust_sigma_: float | None = None
        self.season_spread_: np.ndarray | None = None
        if self.model_ is not None:
            try:
                out = _from_model_space_dict(model_call(), self.scale_, self.level)
                if all(np.all(np.isfinite(v)) for v in out.values()):
                    self.season_ = self.season_length  # one period or None for statsforecast models
                    return out
                raise FloatingPointError("forecast band is not finite")
            except Exception as exc:
                if not self.fallback:
                    raise
                self.fallback_ = type(exc).__qualname__
                self.error_ = exc
                self.model_ = None
        band, self.robust_sigma_, self.season_, self.season_spread_ = _robust(
            self.y_, h, self.level, self.robust_window, self.season_length
        )
        return _from_model_space_dict(band, self.scale_, self.level)


def forecast_cross(mean: np.ndarray, limit: float) -> int | None:
    """Index of the first forecast step at or above ``limit`` (None if never)."""
    hits = np.flatnonzero(np.asarray(mean) >= limit)
    return int(hits[0]) if hits.size else None


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))


__all__ = [
    "DEFAULT_LEVELS",
    "VALID_MODELS",
    "BandForecaster",
    "check_levels",
    "check_model",
    "forecast",
    "forecast_cross",
    "level_key",
    "normal_quantile",
    "robust_band",
    "seasonal_gate",
    "seasonal_history_needed",
]
