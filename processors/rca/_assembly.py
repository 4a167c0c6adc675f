"""Streaming trace assembly: spans in, complete traces out.

A trace is complete when no span of it arrived for ``quiet_period_s``, or
``root_grace_s`` after its root span (the one without a parent) arrived.
Memory is bounded: at most ``max_traces`` open traces and ``max_spans`` open
spans; past either bound the trace idle the longest is closed early (emitted
as *partial*, counted as evicted). A span of a trace already emitted is a
*late* span: counted and dropped (ids of recently emitted traces are kept in a
bounded set). Nothing here raises on input.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from otel_llm.processors._spans import SpanRecord

from otel_llm._selftelemetry import report_dropped

_COMPONENT = "rca.assembly"

DEFAULT_QUIET_PERIOD_S = 10.0
DEFAULT_ROOT_GRACE_S = 2.0
DEFAULT_MAX_TRACES = 50_000
DEFAULT_MAX_SPANS = 1_000_000


@dataclass(slots=True)
class _Open:
    spans: list[SpanRecord]
    last_seen: float
    root_deadline: float | None = None


@dataclass(slots=True)
class AssembledTrace:
    trace_id: str
    spans: list[SpanRecord]
    partial: bool = False
    """True when closed early by eviction (memory bound), not by quiet period or root."""


@dataclass
class AssemblyStats:
    spans: int = 0
    traces: int = 0
    evicted_traces: int = 0
    late_spans: int = 0
    invalid_spans: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class TraceAssembler:
    """Group spans by trace id until each trace is complete.

    Not thread-safe: one owner (the analysis worker) calls :meth:`add` and
    :meth:`poll`. ``now`` is the caller's clock (unix seconds), so tests and
    offline replays drive time explicitly.
    """

    def __init__(
        self,
        quiet_period_s: float = DEFAULT_QUIET_PERIOD_S,
        root_grace_s: float = DEFAULT_ROOT_GRACE_S,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_spans: int = DEFAULT_MAX_SPANS,
        remember_completed: int = 100_000,
    ) -> None:
        if quiet_period_s <= 0 or root_grace_s < 0:
            raise ValueError("quiet_period_s must be > 0 and root_grace_s >= 0")
        if max_traces < 1 or max_spans < 1 or remember_completed < 0:
            raise ValueError("max_traces and max_spans must be >= 1, remember_completed >= 0")
        self.quiet_period_s = quiet_period_s
        self.root_grace_s = root_grace_s
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._remember = remember_completed
        self._open: OrderedDict[str, _Open] = OrderedDict()  # least recently active first
        self._rooted: dict[str, float] = {}  # trace id -> root deadline
        self._done: OrderedDict[str, None] = OrderedDict()
        self._span_count = 0
        self._ready: list[AssembledTrace] = []
        self.stats = AssemblyStats()

    @property
    def open_traces(self) -> int:
        return len(self._open)

    @property
    def open_spans(self) -> int:
        return self._span_count

    def add(self, span: SpanRecord, now: float) -> None:
        self.add_many((span,), now)

    def add_many(self, spans: Iterable[SpanRecord], now: float) -> None:
        open_ = self._open
        for span in spans:
            tid = span.trace_id
            if not tid or not span.span_id:
                self.stats.invalid_spans += 1
                report_dropped(_COMPONENT, "invalid_span")
                continue
            entry = open_.get(tid)
            if entry is None:
                if tid in self._done:
                    self.stats.late_spans += 1
                    report_dropped(_COMPONENT, "late_span")
                    continue
                entry = open_[tid] = _Open([span], now)
                self.stats.traces += 1
            else:
                entry.spans.append(span)
                entry.last_seen = now
                open_.move_to_end(tid)
            self._span_count += 1
            self.stats.spans += 1
            if not span.parent_id and entry.root_deadline is None:
                entry.root_deadline = now + self.root_grace_s
                self._rooted[tid] = entry.root_deadline
        while len(open_) > self.max_traces or self._span_count > self.max_spans:
            tid, _ = next(iter(open_.items()))
            self._close(tid, partial=True)
            self.stats.evicted_traces += 1
            report_dropped(_COMPONENT, "evicted_open_trace")

    def poll(self, now: float) -> list[AssembledTrace]:
        """Close and return every trace complete at ``now``."""
        for tid, deadline in list(self._rooted.items()):
            if deadline <= now:
                self._close(tid, partial=False)
        cutoff = now - self.quiet_period_s
        open_ = self._open
        while open_:
            tid, entry = next(iter(open_.items()))
            if entry.last_seen > cutoff:
                break
            self._close(tid, partial=False)
        ready, self._ready = self._ready, []
        return ready

    def flush(self) -> list[AssembledTrace]:
        """Close every open trace now (shutdown, end of an offline replay)."""
        for tid in list(self._open):
            self._close(tid, partial=False)
        ready, self._ready = self._ready, []
        return ready

    def _close(self, tid: str, partial: bool) -> None:
        entry = self._open.pop(tid, None)
        self._rooted.pop(tid, None)
        if entry is None:
            return
        self._span_count -= len(entry.spans)
        if self._remember:
            self._done[tid] = None
            if len(self._done) > self._remember:
                self._done.popitem(last=False)
        self._ready.append(AssembledTrace(tid, entry.spans, partial))


def group_by_trace(spans: Iterable[SpanRecord]) -> list[AssembledTrace]:
    """Offline assembly: every span grouped by trace id, in first-seen order."""
    groups: dict[str, list[SpanRecord]] = {}
    for span in spans:
        if span.trace_id and span.span_id:
            groups.setdefault(span.trace_id, []).append(span)
    return [AssembledTrace(tid, group) for tid, group in groups.items()]
