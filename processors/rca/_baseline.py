"""Robust per-component baselines of normal behaviour.

For every component (``(kind, service, operation)``: a span operation, an LLM
stage, a downstream) and every root operation, a :class:`BaselineStore` keeps
the most recent ``window`` observations and answers robust statistics: the
median, a robust scale (1.4826 x MAD, floored so that a perfectly steady
component does not turn every microsecond into a huge z), and the rate of
errors that *originate* there. Stage values are already per token where the
stage is normalised (see :mod:`._trace`).

While an incident is open the store is *frozen*: new observations are not
learned, so a fault cannot become the new normal while it is being explained.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ._trace import Component, TraceSummary

DEFAULT_WINDOW = 2048
DEFAULT_MAX_COMPONENTS = 20_000
MIN_SAMPLES = 5
# Scale floor: a fraction of the median plus an absolute floor (seconds, or
# seconds per token for normalised stages: kept tiny).
_REL_FLOOR = 0.05
_ABS_FLOOR = 1e-4


@dataclass(frozen=True, slots=True)
class Stats:
    median: float
    scale: float
    count: int
    error_rate: float

    def z(self, value: float) -> float:
        return (value - self.median) / self.scale

    def upper(self, k: float = 3.0) -> float:
        return self.median + k * self.scale


class _Series:
    """A ring of recent values in compact arrays (8 bytes a value, 1 an error flag).
    Statistics are recomputed lazily, once 5% of the window is new (amortised O(1)
    per observation on a busy stream)."""

    __slots__ = ("_dirty", "_pos", "_stats", "_window", "errors", "values")

    def __init__(self, window: int) -> None:
        self.values = array("d")
        self.errors = bytearray()
        self._window = window
        self._pos = 0
        self._stats: Stats | None = None
        self._dirty = 0

    def add(self, value: float, error: bool) -> None:
        if len(self.values) < self._window:
            self.values.append(value)
            self.errors.append(1 if error else 0)
        else:
            self.values[self._pos] = value
            self.errors[self._pos] = 1 if error else 0
            self._pos = (self._pos + 1) % self._window
        self._dirty += 1

    def stats(self, abs_floor: float) -> Stats:
        n = len(self.values)
        if self._stats is None or (self._dirty and self._dirty >= max(1, n // 20)) or (self._dirty and n < 100):
            arr = np.frombuffer(self.values, dtype=float, count=n)
            med = float(np.median(arr))
            mad = float(np.median(np.abs(arr - med)))
            scale = max(1.4826 * mad, _REL_FLOOR * abs(med), abs_floor)
            self._stats = Stats(med, scale, n, self.errors.count(1) / n)
            self._dirty = 0
        return self._stats


class BaselineStore:
    """Recent normal behaviour per component and per root operation."""

    def __init__(self, window: int = DEFAULT_WINDOW, min_samples: int = MIN_SAMPLES,
                 max_components: int = DEFAULT_MAX_COMPONENTS) -> None:
        if window < min_samples or min_samples < 1:
            raise ValueError("window must be >= min_samples >= 1")
        self.window = window
        self.min_samples = min_samples
        self._components: dict[Component, _Series] = {}
        self._roots: dict[tuple[str, str], _Series] = {}
        self._callees: dict[tuple[str, str], Component] = {}
        self._frozen = 0
        self.held_back = 0
        self.max_components = max_components
        self.overflow = 0
        """Observations not learned because ``max_components`` components exist already."""
        """Traces not learned because the store was frozen."""

    @property
    def frozen(self) -> bool:
        return self._frozen > 0

    def freeze(self) -> None:
        """Stop learning (nested calls need as many :meth:`thaw` calls)."""
        self._frozen += 1

    def thaw(self) -> None:
        self._frozen = max(0, self._frozen - 1)

    def learn(self, trace: TraceSummary) -> bool:
        """Learn one completed trace; False (and counted) while frozen.

        The call topology (which callee a CLIENT span reaches) is learned even
        while frozen: it names the callee of a call that fails before the
        callee records anything."""
        callees = self._callees
        for c in trace.contributions:
            if c.via is not None and c.via not in callees and len(callees) < 100_000:
                callees[c.via] = c.component
        if self._frozen:
            self.held_back += 1
            return False
        window = self.window
        comps = self._components
        for c in trace.contributions:
            series = comps.get(c.component)
            if series is None:
                if len(comps) >= self.max_components:
                    self.overflow += 1
                    continue
                series = comps[c.component] = _Series(window)
            series.add(c.value, c.error_origin)
        root = self._roots.get(trace.root_key)
        if root is None:
            root = self._roots[trace.root_key] = _Series(window)
        root.add(trace.duration, trace.error)
        return True

    def learn_all(self, traces: Iterable[TraceSummary]) -> None:
        for t in traces:
            self.learn(t)

    def component(self, component: Component) -> Stats | None:
        series = self._components.get(component)
        if series is None or len(series.values) < self.min_samples:
            return None
        return series.stats(_ABS_FLOOR if component[0] != "stage" else 1e-6)

    def root(self, key: tuple[str, str]) -> Stats | None:
        series = self._roots.get(key)
        if series is None or len(series.values) < self.min_samples:
            return None
        return series.stats(1e-3)

    def callee(self, caller: tuple[str, str]) -> Component | None:
        """The component a (service, CLIENT span name) normally reaches."""
        return self._callees.get(caller)

    def components(self) -> list[Component]:
        return list(self._components)

    def __len__(self) -> int:
        return len(self._components)
