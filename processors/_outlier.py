"""A PyOD detector behind the estimator contract, with calibrated scores and attribution.

:class:`OutlierDetector` (STYLE habit 10):

* ``__init__`` stores and checks hyperparameters only (unknown detector names
  and bad contamination fail here, listing the valid choices);
* ``fit(X)`` returns ``self``; learned state ends in ``_``;
* ``decision_function(X)`` is "higher = more anomalous" and does not change
  this object's state. ECOD and COPOD in PyOD score a batch *together with the
  training data*, so a row's score would depend on the other rows of the
  batch; we score such detectors one row at a time (under a lock, since PyOD
  caches on the model) so every row's score is its own;
* ``score(X)`` calibrates to [0, 1]: the fraction of training rows that score
  below the row (an empirical CDF of the combined statistic, see ``score``), so
  ``predict``, which flags rows at or above ``1 - contamination``, flags about
  that share of normal rows; the threshold is derived in one place,
  :attr:`threshold_`;
* ``explain(x)`` is a per-feature attribution independent of the detector:
  each feature's two-sided tail probability under the training window's
  empirical distribution, as ``-log`` evidence, normalised to shares; past the
  training range (where that probability is 0) an exponential tail fitted to
  the most extreme training rows, so the farther out of two out-of-range
  columns leads. Within the range this is ECOD's own per-feature decomposition
  (ECOD's score sums these tail terms); for the others it names which columns
  are out of range.

Features go through a log in their own unit, ``log1p(x / u)`` with ``u`` the
column's median positive training value (request features are non-negative and
heavy-tailed, and a plain ``log1p`` is nearly linear for sub-second latencies),
and a robust standardisation (median / IQR) before the detector;
NaN is imputed with the training median; a column that is missing in most
training rows is left out (``features_in_``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

VALID_DETECTORS = ("ecod", "iforest", "hbos", "copod", "loda")
_ROW_WISE = frozenset({"ecod", "copod"})
_MIN_TAIL_SCALE = 0.1
"""Smallest tail scale (robust-z units) for ``explain`` past the training range: a bounded column's
training rows can end abruptly, and a value just past them should not dwarf one far out in another."""


def _make(name: str, contamination: float, random_state: int):
    if name == "ecod":
        from pyod.models.ecod import ECOD

        return ECOD(contamination=contamination)
    if name == "copod":
        from pyod.models.copod import COPOD

        return COPOD(contamination=contamination)
    if name == "iforest":
        from pyod.models.iforest import IForest

        return IForest(contamination=contamination, random_state=random_state, n_estimators=100)
    if name == "hbos":
        from pyod.models.hbos import HBOS

        return HBOS(contamination=contamination)
    from pyod.models.loda import LODA

    try:  # its random projections: seeded where PyOD takes a seed (3.x), so a refit on the same rows agrees
        return LODA(contamination=contamination, random_state=random_state)
    except TypeError:
        return LODA(contamination=contamination)


def check_detector(name: str) -> str:
    if name not in VALID_DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(VALID_DETECTORS)}")
    return name


class OutlierDetector:
    def __init__(
        self,
        detector: str = "ecod",
        contamination: float = 0.04,
        *,
        feature_names: Sequence[str] | None = None,
        min_presence: float = 0.5,
        random_state: int = 0,
        log_transform: bool = True,
    ) -> None:
        self.detector = check_detector(detector)
        if not (0.0 < float(contamination) <= 0.5):
            raise ValueError(f"contamination must be in (0, 0.5], got {contamination}")
        self.contamination = float(contamination)
        self.feature_names = tuple(feature_names) if feature_names is not None else None
        self.min_presence = min_presence
        self.random_state = random_state
        self.log_transform = log_transform
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ fit
    def _log(self, X: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(X, 0.0) / self.unit_) if self.log_transform else X

    def _transform(self, X: np.ndarray) -> np.ndarray:
        Z = self._log(X[:, self.columns_])
        Z = np.where(np.isnan(Z), self.fill_, Z)
        return (Z - self.center_) / self.scale_

    def fit(self, X, y=None) -> OutlierDetector:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[0] < 10:
            raise ValueError(f"fit needs a 2-D array with at least 10 rows, got shape {X.shape}")
        self.n_features_in_ = X.shape[1]
        presence = np.mean(~np.isnan(X), axis=0)
        cols = np.flatnonzero(presence >= self.min_presence)
        if cols.size == 0:
            raise ValueError("no feature is present in enough rows to fit")
        self.columns_ = cols
        names = self.feature_names or tuple(f"x{i}" for i in range(X.shape[1]))
        self.features_in_ = tuple(names[i] for i in cols)
        # each column's unit: its median positive value (1 where it has none, e.g. a throttle flag never set)
        P = np.where(X[:, cols] > 0.0, X[:, cols], np.inf)
        k = np.sum(np.isfinite(P), axis=0)
        P.sort(axis=0)
        mid = P[np.maximum(k - 1, 0) // 2, np.arange(cols.size)]
        self.unit_ = np.where(k > 0, mid, 1.0)
        L = self._log(X[:, cols])
        self.fill_ = np.nanmedian(L, axis=0)
        L = np.where(np.isnan(L), self.fill_, L)
        self.center_ = np.median(L, axis=0)
        q75, q25 = np.percentile(L, [75, 25], axis=0)
        spread = (q75 - q25) / 1.349
        std = L.std(axis=0)
        # a column constant in training: any change is far out (1% of log scale = 1 sigma)
        self.scale_ = np.where(spread > 1e-12, spread, np.where(std > 1e-12, std, 0.01))
        Z = (L - self.center_) / self.scale_
        model = _make(self.detector, self.contamination, self.random_state)
        model.fit(Z)
        self.model_ = model
        train = np.asarray(model.decision_scores_, dtype=float)
        self.train_scores_ = np.sort(train)
        S = np.sort(Z, axis=0)
        self.sorted_columns_ = S
        # Exponential tails past the training range, for ``explain`` (mean excess of the k most extreme rows)
        n = S.shape[0]
        k = min(max(5, n // 20), n - 1)
        self.tail_rows_ = k
        self.upper_edge_ = S[n - k - 1]
        self.lower_edge_ = S[k]
        self.upper_scale_ = np.maximum(S[n - k :].mean(axis=0) - self.upper_edge_, _MIN_TAIL_SCALE)
        self.lower_scale_ = np.maximum(self.lower_edge_ - S[:k].mean(axis=0), _MIN_TAIL_SCALE)
        maxz = np.max(np.abs(Z), axis=1)
        self.train_maxz_ = np.sort(maxz)
        self.train_combined_ = np.sort(self._combine(train, maxz))
        self.threshold_ = 1.0 - self.contamination
        return self

    # ---------------------------------------------------------------- score
    def decision_function(self, X) -> np.ndarray:
        """Raw scores, higher = more anomalous; each row scored on its own."""
        Z = self._transform(np.atleast_2d(np.asarray(X, dtype=float)))
        with self._lock:
            if self.detector in _ROW_WISE:
                return np.array([float(self.model_.decision_function(Z[i : i + 1])[0]) for i in range(Z.shape[0])])
            return np.asarray(self.model_.decision_function(Z), dtype=float)

    def _combine(self, raw: np.ndarray, maxz: np.ndarray) -> np.ndarray:
        """The larger of the two empirical CDFs: the detector's raw score, and the largest robust |z|."""
        cal = np.searchsorted(self.train_scores_, raw, side="left") / float(self.train_scores_.size)
        guard = np.searchsorted(self.train_maxz_, maxz, side="left") / float(self.train_maxz_.size)
        return np.maximum(cal, guard)

    def score(self, X) -> np.ndarray:
        """Calibrated scores in [0, 1]: the share of training rows scoring lower.

        The statistic is the larger of two calibrations: the PyOD detector's raw
        score, and the row's largest per-feature robust |z| (a guard:
        multivariate detectors such as ECOD sum evidence over all features, so
        one feature far out of range in an otherwise normal row can stay under
        their threshold). The larger of two CDFs is not itself one (a normal row
        passes ``1 - contamination`` on either with up to twice that
        probability), so it is calibrated once more against the training rows'
        own values of it.
        """
        X = np.atleast_2d(np.asarray(X, dtype=float))
        raw = self.decision_function(X)
        maxz = np.max(np.abs(self._transform(X)), axis=1)
        combined = self._combine(raw, maxz)
        return np.searchsorted(self.train_combined_, combined, side="left") / float(self.train_combined_.size)

    def predict(self, X) -> np.ndarray:
        return (self.score(X) >= self.threshold_).astype(int)

    def explain(self, x) -> dict[str, float]:
        """Feature -> share of the evidence (sums to 1), largest first.

        A feature's evidence is ``-log`` of its two-sided tail probability
        under the training window's empirical distribution. Past the training
        range, where the empirical probability is 0 for every value, it follows
        an exponential tail fitted to the most extreme training rows (so a value
        far out counts more than one just past the edge, and two out-of-range
        features are ranked by how far out each is); ties go to the larger |z|.
        """
        z = self._transform(np.atleast_2d(np.asarray(x, dtype=float)))[0]
        S = self.sorted_columns_
        n = S.shape[0]
        cap = np.log(n + 1.0)
        share = self.tail_rows_ / (n + 1.0)
        ev = np.empty(z.size)
        for j in range(z.size):
            zj = z[j]
            le = np.searchsorted(S[:, j], zj, side="right")
            ge = n - np.searchsorted(S[:, j], zj, side="left")
            m = min(le, ge)
            if m == 0:  # past the training range: extrapolate the tail
                if ge == 0:
                    excess = (zj - self.upper_edge_[j]) / self.upper_scale_[j]
                else:
                    excess = (self.lower_edge_[j] - zj) / self.lower_scale_[j]
                ev[j] = max(cap, -np.log(2.0 * share) + min(excess, 1e6))  # finite: an inf value still leads
            else:
                ev[j] = max(0.0, -np.log(2.0 * m / (n + 1.0)))
        total = float(ev.sum())
        if total <= 0:
            return {}
        order = sorted(range(z.size), key=lambda j: (-ev[j], -abs(z[j])))
        return {self.features_in_[j]: round(float(ev[j] / total), 4) for j in order if ev[j] > 0}

    def deviation(self, x) -> dict[str, float]:
        """Feature -> robust z (in log space) of ``x``: the sign says above or below normal."""
        z = self._transform(np.atleast_2d(np.asarray(x, dtype=float)))[0]
        return {k: float(v) for k, v in zip(self.features_in_, z, strict=True)}


__all__ = ["VALID_DETECTORS", "OutlierDetector", "check_detector"]
