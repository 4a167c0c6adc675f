"""The explicit alarm rule shared by the threshold detectors (Merlion-like).

Input per point: a signed residual z-score (how many band-sigmas the point is
from the forecast). The rule, in order:

1. **direction** -- ``both`` uses ``|z|``, ``up`` uses ``z``, ``down`` uses ``-z``;
2. **persistence** -- a point is a *hit* when that exceeds ``threshold``; an
   alarm opens when at least ``k`` of the last ``n`` points are hits, or at
   once on a single point past ``instant`` (0 = off): a deviation that
   persists may be small, a lone point must be large;
3. **hysteresis** -- an open alarm closes only after ``recover_n`` consecutive
   points below ``recover`` (< ``threshold``), so a value hovering near the
   band does not flap;
4. **cooldown** -- after an alarm closes, ``cooldown`` points pass before
   another may open;
5. **re-arm** -- for ``rearm`` points after an alarm opens (0 = off), a new
   alarm opens only if its deviation is larger than any seen since that one
   opened: a series that flaps or spikes again at the same size is one alert,
   one that gets worse is a new one. With ``rearm_share`` > 0 the period is
   that share of the points the rule has judged so far, at most ``rearm``, so
   a young series re-arms quickly;
6. **rarity** -- with ``rarity`` R > 0, once the rule has judged 2R points, a
   single point past ``instant`` opens an alarm only if at most one in R of
   the points judged so far reached its size, and a run of ``k`` of ``n`` hits
   only if at most one in R of them sat in a run at least as large (its k-th
   largest |z|), unless it has lasted ``RUN_ESCAPE`` points. Both are counted
   outside alarms, on log histograms of 5 %-wide bins above ``threshold``. A
   series whose routine spikes or bursts are that large stops paging on each
   of them; a larger one still pages at once, and a deviation that stays
   pages when it has lasted. With ``rarity_max`` M > R the rate tightens as
   the series grows: at most two earlier points may have reached the size, or
   one in M of the points judged, whichever allows more (one in R at 2R
   points, one in M from 2M on), so the routine record spikes of a long
   heavy-tailed series stop paging while a short one is judged as before;
7. optional **EWMA chart** (``ewma`` = smoothing weight, 0 = off): the
   exponentially weighted mean of z, divided by its stationary standard
   deviation ``sqrt(ewma / (2 - ewma))``, counts like a point z, so a sustained
   small shift is caught before any single point crosses the threshold.

Warm-up (no alarms until enough history) is the caller's job: it does not
call :meth:`AlarmRule.step` before a band exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NONE, OPENED, CLOSED = 0, 1, -1
VALID_DIRECTIONS = ("both", "up", "down")


@dataclass(frozen=True)
class AlarmPolicy:
    threshold: float = 4.5
    recover: float = 2.0
    k: int = 1
    n: int = 1
    recover_n: int = 3
    cooldown: int = 0
    direction: str = "both"
    ewma: float = 0.0
    instant: float = 0.0
    rearm: int = 0
    rearm_share: float = 0.0
    rarity: int = 0
    rarity_max: int = 0

    def validate(self) -> AlarmPolicy:
        if self.direction not in VALID_DIRECTIONS:
            raise ValueError(f"direction {self.direction!r} is not valid; choose one of: {', '.join(VALID_DIRECTIONS)}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0 (band sigmas), got {self.threshold}")
        if not (0 <= self.recover <= self.threshold):
            raise ValueError(f"recover must be in [0, threshold={self.threshold}], got {self.recover}")
        if not (1 <= self.k <= self.n):
            raise ValueError(f"persistence needs 1 <= k <= n, got k={self.k} n={self.n}")
        if self.recover_n < 1:
            raise ValueError(f"recover_n must be >= 1, got {self.recover_n}")
        if not (0.0 <= self.ewma < 1.0):
            raise ValueError(f"ewma must be in [0, 1), got {self.ewma}")
        if self.instant and self.instant < self.threshold:
            raise ValueError(f"instant must be 0 (off) or >= threshold={self.threshold}, got {self.instant}")
        if self.cooldown < 0:
            raise ValueError(f"cooldown must be >= 0 points, got {self.cooldown}")
        if self.rearm < 0:
            raise ValueError(f"rearm must be >= 0 points (0 = off), got {self.rearm}")
        if not (0.0 <= self.rearm_share <= 1.0):
            raise ValueError(f"rearm_share must be in [0, 1] (0 = a fixed rearm period), got {self.rearm_share}")
        if self.rarity < 0:
            raise ValueError(f"rarity must be >= 0 points (0 = off), got {self.rarity}")
        if self.rarity_max and self.rarity_max < self.rarity:
            raise ValueError(f"rarity_max must be 0 (= rarity) or >= rarity={self.rarity}, got {self.rarity_max}")
        return self


_TAIL_BINS = 160
"""Bins of the |z| histograms behind ``rarity``: 5 % wide from ``threshold`` up (~2,500x; larger is one bin)."""
_TAIL_INV = 1.0 / math.log(1.05)
_TAIL_TOP = 1.05 ** (_TAIL_BINS - 1)
RUN_ESCAPE = 8
"""A run of hits that has lasted this many points opens an alarm however routine its size (``rarity``)."""


class AlarmRule:
    """Per-series state of an :class:`AlarmPolicy`. ``step(z)`` returns NONE, OPENED or CLOSED."""

    __slots__ = (
        "_p", "_ring", "_pos", "hits", "active", "calm", "cooldown_left", "peak", "hit", "zbar", "_zs", "steps",
        "rearm_left", "worst", "_lone", "_runs", "_es", "_runlen",
    )

    def __init__(self, policy: AlarmPolicy) -> None:
        self._p = policy
        self._ring = [False] * policy.n
        self._pos = 0
        self.hits = 0
        self.active = False
        self.calm = 0
        self.cooldown_left = 0
        self.peak = 0.0
        self.hit = False
        self.zbar = 0.0
        self.steps = 0
        """Points judged so far."""
        self.rearm_left = 0
        """Points left in the re-arm period of the last alarm that opened."""
        self.worst = 0.0
        """Largest effective z since the last alarm opened (for re-arm)."""
        rare = policy.rarity > 0
        self._lone = [0] * _TAIL_BINS if rare else None
        """Hits judged outside alarms, by |z| bin (for ``rarity``)."""
        self._runs = [0] * _TAIL_BINS if rare else None
        """Points judged outside alarms with k of the last n hits, by the k-th largest |z|'s bin (for ``rarity``)."""
        self._es = [0.0] * policy.n if rare else None
        self._runlen = 0
        self._zs = (policy.ewma / (2.0 - policy.ewma)) ** 0.5 if policy.ewma > 0 else 0.0

    def _rare(self, hist: list[int], e: float) -> bool:
        """Count ``e`` in ``hist``; did at most one in ``rarity`` of the points judged so far reach its bin?"""
        t = self._p.threshold
        b = int(math.log(e / t) * _TAIL_INV) if t <= e < t * _TAIL_TOP else _TAIL_BINS - 1
        hist[b] += 1
        if b == _TAIL_BINS - 1:
            return True  # off the scale (or not a number): never routine
        r = self._p.rarity
        if self.steps < 2 * r:
            return True  # too few points to know what is routine
        reached = -1  # itself aside
        for i in range(b, _TAIL_BINS):
            reached += hist[i]
        m = self._p.rarity_max
        if m > r:  # tightening with the series: two earlier points, or one in m, whichever allows more
            return reached <= 2 or reached * m <= self.steps
        return reached * r <= self.steps

    def effective(self, z: float) -> float:
        d = self._p.direction
        return abs(z) if d == "both" else (z if d == "up" else -z)

    def step(self, z: float) -> int:
        p = self._p
        e = abs(z) if p.direction == "both" else (z if p.direction == "up" else -z)
        if self._zs:
            self.zbar += p.ewma * (z - self.zbar)
            zb = self.zbar / self._zs
            eb = abs(zb) if p.direction == "both" else (zb if p.direction == "up" else -zb)
            if eb > e:
                e = eb
        self.steps += 1
        worst = self.worst
        rearming = self.rearm_left > 0
        if rearming:
            self.rearm_left -= 1
            if e > worst:
                self.worst = e
        hit = e >= p.threshold
        self.hit = hit
        ring = self._ring
        pos = self._pos
        self.hits += hit - ring[pos]
        ring[pos] = hit
        es = self._es
        if es is not None:
            es[pos] = e
        self._pos = pos + 1 if pos + 1 < p.n else 0
        if self.active:
            if e > self.peak:
                self.peak = e
            if e < p.recover:
                self.calm += 1
                if self.calm >= p.recover_n:
                    self.active = False
                    self.cooldown_left = p.cooldown
                    return CLOSED
            else:
                self.calm = 0
            return NONE
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return NONE
        lone = p.instant and e >= p.instant
        run = self.hits >= p.k
        if es is not None:  # rarity: routine spikes and bursts of this series do not page
            if hit:
                rare = self._rare(self._lone, e)
                lone = lone and rare
            if run:
                self._runlen += 1
                m = sorted(es, reverse=True)[p.k - 1]  # the run's level: its k-th largest |z|
                run = self._rare(self._runs, m) or self._runlen >= RUN_ESCAPE
            else:
                self._runlen = 0
        if run or lone:
            if rearming and e <= worst:
                return NONE  # re-arming: no worse than the alert that just fired
            self.active = True
            self.calm = 0
            self._runlen = 0
            self.peak = e
            if p.rearm:
                share = p.rearm_share
                self.rearm_left = min(p.rearm, int(share * self.steps)) if share else p.rearm
                self.worst = e
            return OPENED
        return NONE


__all__ = ["CLOSED", "NONE", "OPENED", "RUN_ESCAPE", "VALID_DIRECTIONS", "AlarmPolicy", "AlarmRule"]
