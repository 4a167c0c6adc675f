"""PyOD over a single metric series: the ``--detector pyod`` of ``otel-llm eval anomaly``.

Each point becomes a small feature row built only from the past: the value,
its change from the previous point, and its distance from the median of the
previous ``context`` points. An :class:`OutlierDetector` is refitted on the
last ``window`` rows every ``refit_every`` points (after ``min_fit``), and the
calibrated score goes through the same :class:`AlarmRule` as the threshold
detector (threshold ``1 - contamination``, hysteresis, cooldown).
"""

from __future__ import annotations

import collections
import math
import statistics

from otel_llm.processors._alarm import OPENED, AlarmPolicy, AlarmRule
from otel_llm.processors._outlier import OutlierDetector, check_detector


class PointAnomalyDetector:
    def __init__(
        self,
        detector: str = "ecod",
        contamination: float = 0.002,
        *,
        window: int = 1024,
        min_fit: int = 30,
        refit_every: int = 64,
        context: int = 8,
        cooldown: int = 0,
    ) -> None:
        self.detector = check_detector(detector)
        self.contamination = contamination
        self.window = window
        self.min_fit = min_fit
        self.refit_every = refit_every
        self.context = context
        thr = 1.0 - contamination
        self.rule = AlarmRule(AlarmPolicy(threshold=thr, recover=thr * 0.98, recover_n=3, cooldown=cooldown,
                                          direction="up").validate())
        self._rows: collections.deque[list[float]] = collections.deque(maxlen=window)
        self._recent: collections.deque[float] = collections.deque(maxlen=context)
        self._since = 0
        self.model: OutlierDetector | None = None
        self._last_t = -math.inf

    def observe(self, t: float, value: float) -> tuple[float, bool, bool]:
        """Returns (score in [0, 1], alert opened at this point, point judged abnormal)."""
        if not math.isfinite(value) or t <= self._last_t:
            return 0.0, False, False
        self._last_t = t
        if len(self._recent) < 2:
            self._recent.append(value)
            return 0.0, False, False
        row = [value, value - self._recent[-1], value - statistics.median(self._recent)]
        self._recent.append(value)
        score, opened, abnormal = 0.0, False, False
        if self.model is not None:
            score = float(self.model.score([row])[0])
            ev = self.rule.step(score)
            opened = ev == OPENED
            abnormal = self.rule.active and self.rule.hit
        self._rows.append(row)
        self._since += 1
        if len(self._rows) >= self.min_fit and (self.model is None or self._since >= self.refit_every):
            self._since = 0
            self.model = OutlierDetector(self.detector, min(self.contamination, 0.5), log_transform=False,
                                         feature_names=("value", "diff", "dev")).fit(list(self._rows))
        return score, opened, abnormal


__all__ = ["PointAnomalyDetector"]
