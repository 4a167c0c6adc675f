"""The streaming RCA processor: spans, detections and GPU state in; incidents out.

Feed it with :meth:`RcaProcessor.on_spans`, :meth:`on_detections` and
:meth:`on_gpu_samples`; call :meth:`tick` about once a second (the
``otel-llm analyze`` worker and :class:`RcaSpanProcessor` do). Each tick
closes complete traces, learns baselines from them, runs a small built-in
trigger (per root operation: many traces slower than normal or failing), opens
an :class:`Incident` on any trigger or Detection (freezing the baselines),
ranks root causes over the incident's window, re-ranks while it is open, and
closes it when its detections have ended and traffic is normal again. Each new
or changed incident goes to the :class:`DetectionSink`\\ s.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from otel_llm.processors._model import Detection, DetectionSink, Incident, RootCauseCandidate, Severity
from otel_llm.processors._spans import SpanRecord

from otel_llm import environment_variables as ev
from otel_llm._env import env_float, env_int
from otel_llm._selftelemetry import report_error

from ._assembly import (
    DEFAULT_MAX_SPANS,
    DEFAULT_MAX_TRACES,
    DEFAULT_QUIET_PERIOD_S,
    DEFAULT_ROOT_GRACE_S,
    TraceAssembler,
)
from ._baseline import DEFAULT_WINDOW, BaselineStore
from ._gpu import events_from_detections, events_from_samples, events_from_store
from ._offline import rank_summaries
from ._rank import DEFAULT_K, GpuAnomaly, _abnormal, _trace_deviations, rank
from ._trace import TraceSummary, summarize

_logger = logging.getLogger(__name__)
_COMPONENT = "rca"


class RcaProcessor:
    """Trace assembly + baselines + ranking + incident lifecycle (not thread-safe
    for feeding: one owner thread; :meth:`on_detections` may come from anywhere)."""

    def __init__(
        self,
        sinks: Sequence[DetectionSink] = (),
        *,
        quiet_period_s: float | None = None,
        root_grace_s: float = DEFAULT_ROOT_GRACE_S,
        max_traces: int | None = None,
        max_spans: int = DEFAULT_MAX_SPANS,
        baseline_window: int = DEFAULT_WINDOW,
        history_s: float = 900.0,
        max_history: int = 20_000,
        detect_window_s: float = 30.0,
        min_abnormal: int = 5,
        abnormal_fraction: float = 0.2,
        warmup_traces: int = 50,
        lookback_s: float = 30.0,
        rerank_interval_s: float = 10.0,
        resolve_after_s: float = 60.0,
        incident_timeout_s: float = 900.0,
        gpu_stale_s: float = 300.0,
        gpu_state: Any = None,
        clock: Callable[[], float] = time.time,
        self_detect: bool = True,
    ) -> None:
        quiet = env_float(ev.OTEL_LLM_RCA_QUIET_PERIOD, quiet_period_s, DEFAULT_QUIET_PERIOD_S, minimum=0.001)
        traces = env_int(ev.OTEL_LLM_RCA_MAX_TRACES, max_traces, DEFAULT_MAX_TRACES, minimum=1)
        if not 0 < abnormal_fraction <= 1 or min_abnormal < 1:
            raise ValueError("abnormal_fraction must be in (0, 1] and min_abnormal >= 1")
        self.sinks = list(sinks)
        self.assembler = TraceAssembler(quiet, root_grace_s, traces, max_spans)
        self.baselines = BaselineStore(baseline_window)
        self.history: deque[TraceSummary] = deque(maxlen=max_history)
        self.history_s = history_s
        self.detect_window_s = detect_window_s
        self.min_abnormal = min_abnormal
        self.abnormal_fraction = abnormal_fraction
        self.warmup_traces = warmup_traces
        self._normal_rate: dict[tuple[str, str], deque[tuple[float, bool]]] = {}
        self.lookback_s = lookback_s
        self.rerank_interval_s = rerank_interval_s
        self.resolve_after_s = resolve_after_s
        self.incident_timeout_s = incident_timeout_s
        if gpu_stale_s <= 0:
            raise ValueError("gpu_stale_s must be > 0")
        self.gpu_stale_s = gpu_stale_s
        self.gpu_state = gpu_state
        self.clock = clock
        self.self_detect = self_detect
        self.incident: Incident | None = None
        self.closed: deque[Incident] = deque(maxlen=100)
        self._lock = threading.Lock()
        self._pending: list[Detection] = []
        self._gpu_events: deque[GpuAnomaly] = deque(maxlen=10_000)
        # Open GPU anomalies from Detections without an end, by detection fingerprint:
        # closed when the detection ends, or after ``gpu_stale_s`` without news.
        self._gpu_open: dict[str, tuple[GpuAnomaly, float]] = {}
        self._last_xid: dict[str, int] = {}
        self._last_rank = 0.0
        self._last_abnormal = 0.0
        self._last_trigger = 0.0
        self._recent: deque[tuple[float, tuple[str, str], bool, float]] = deque(maxlen=100_000)
        self._issues: dict[str, int] = {}

    # ---- input -----------------------------------------------------------
    def on_spans(self, spans: Iterable[SpanRecord], now: float | None = None) -> None:
        self.assembler.add_many(spans, self.clock() if now is None else now)

    def on_detections(self, detections: Iterable[Detection]) -> None:
        with self._lock:
            self._pending.extend(detections)

    def on_gpu_samples(self, samples: Iterable[Any]) -> None:
        """GPU samples (``GpuSample``-like): throttling, a *new* XID, ECC, lost become GPU evidence."""
        self._gpu_events.extend(events_from_samples(samples, self._last_xid))

    def add_gpu_anomalies(self, anomalies: Iterable[GpuAnomaly]) -> None:
        self._gpu_events.extend(anomalies)

    @property
    def issues(self) -> dict[str, int]:
        """Counts of repaired span problems (duplicate ids, missing parents, skew, ...)."""
        return dict(self._issues)

    # ---- work ------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Incident]:
        """Advance time; returns incidents opened, updated or closed (also sent to sinks)."""
        now = self.clock() if now is None else now
        changed: list[Incident] = []
        try:
            for trace in self.assembler.poll(now):
                self._complete(trace.spans, trace.partial, now)
            self._trim(now)
            with self._lock:
                pending, self._pending = self._pending, []
            triggers = pending + (self._detect(now) if self.self_detect else [])
            self._gpu_from_detections(pending, now)
            if triggers:
                changed += self._open_or_extend(triggers, now)
            if self.incident is not None:
                if now - self._last_rank >= self.rerank_interval_s and self._rerank(now):
                    changed.append(self.incident)
                closed = self._maybe_close(now)
                if closed is not None:
                    changed.append(closed)
        except Exception as exc:  # the pipeline never raises into its host
            report_error(_COMPONENT, exc)
        unique = list({id(i): i for i in changed}.values())
        if unique:
            self._export(unique)
        return unique

    def analyze(self, start: float, end: float, now: float | None = None) -> list[RootCauseCandidate]:
        """On-demand ranking of ``[start, end]`` over the traces still in history."""
        window = [t for t in self.history if start <= t.start <= end]
        if not self.baselines.frozen:
            # No incident froze the baselines, so they have learned the window too: rank
            # against the traces outside it instead (as offline evaluation does).
            outside = [t for t in self.history if not start <= t.start <= end]
            if len(outside) >= self.baselines.min_samples:
                return rank_summaries(window, outside, gpu_events=self._gpu_in(start, end))
        reference = [t for t in self.history if t.start < start][-2000:]
        return rank(window, self.baselines, reference=reference, gpu_events=self._gpu_in(start, end))

    def flush(self, now: float | None = None) -> list[Incident]:
        now = self.clock() if now is None else now
        for trace in self.assembler.flush():
            self._complete(trace.spans, trace.partial, now)
        return self.tick(now)

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        for sink in self.sinks:
            try:
                sink.shutdown(timeout_millis)
            except Exception as exc:
                report_error(_COMPONENT + ".sink", exc)

    # ---- internals -------------------------------------------------------
    def _complete(self, spans: list[SpanRecord], partial: bool, now: float) -> None:
        summary = summarize(spans, partial=partial)
        if summary is None:
            return
        for key, n in summary.issues.items():
            self._issues[key] = self._issues.get(key, 0) + n
        abnormal = False
        root = self.baselines.root(summary.root_key)
        if root is not None and root.count >= self.warmup_traces:
            slow, err = _abnormal(summary, _trace_deviations(summary, self.baselines, DEFAULT_K), self.baselines,
                                  DEFAULT_K)
            abnormal = slow or err
            if not self.baselines.frozen:  # how often "abnormal" happens in normal times, per root
                rate = self._normal_rate.get(summary.root_key)
                if rate is None and len(self._normal_rate) < 10_000:
                    rate = self._normal_rate[summary.root_key] = deque(maxlen=1000)
                if rate is not None:
                    rate.append((now, abnormal))
        self._recent.append((now, summary.root_key, abnormal, summary.start))
        self.history.append(summary)
        self.baselines.learn(summary)

    def _trim(self, now: float) -> None:
        cutoff = now - self.history_s
        while self.history and self.history[0].end < cutoff:
            self.history.popleft()
        cutoff = now - self.detect_window_s
        while self._recent and self._recent[0][0] < cutoff:
            self._recent.popleft()

    def _detect(self, now: float) -> list[Detection]:
        totals: dict[tuple[str, str], list[float]] = {}
        for _, key, abnormal, start in self._recent:
            t = totals.setdefault(key, [0, 0, float("inf")])
            t[0] += 1
            if abnormal:
                t[1] += 1
                t[2] = min(t[2], start)
        out = []
        for (svc, op), (n, bad, first) in totals.items():
            # The normal rate excludes the detection window itself (that is what is judged).
            old = [a for t, a in self._normal_rate.get((svc, op), ()) if t < now - self.detect_window_s]
            base = sum(old) / len(old) if old else 0.0
            # Far above both the configured fraction and what normal traffic shows.
            if bad >= self.min_abnormal and bad / n >= max(self.abnormal_fraction, 3 * base):
                self._last_abnormal = now
                out.append(Detection(
                    kind="rca", series=f'traces{{service="{svc}",operation="{op}"}}', start=first,
                    score=bad / n, severity=Severity.WARNING,
                    attributes={"service.name": svc, "operation": op},
                    explanation=f"{int(bad)} of {int(n)} recent {svc} {op} traces slower than normal or failing",
                ))
        return out

    def _open_or_extend(self, triggers: list[Detection], now: float) -> list[Incident]:
        self._last_trigger = now
        inc = self.incident
        opened = inc is None
        if inc is None:
            start = min(d.start for d in triggers)
            inc = self.incident = Incident(id=uuid.uuid4().hex[:16], start=start, updated=now)
            self.baselines.freeze()
            self._last_rank = 0.0
        before = inc.severity
        known = {d.fingerprint: i for i, d in enumerate(inc.detections)}
        for d in triggers:
            if d.fingerprint in known:
                inc.detections[known[d.fingerprint]] = d
            else:
                known[d.fingerprint] = len(inc.detections)
                inc.detections.append(d)
            inc.start = min(inc.start, d.start)
            if d.severity is Severity.CRITICAL:
                inc.severity = Severity.CRITICAL
        inc.updated = now
        if opened:
            self._rerank(now)
            return [inc]
        if inc.severity is not before:  # escalated: sinks re-route it (Alertmanager fires the critical alert)
            return [inc]
        return []

    def _gpu_from_detections(self, detections: list[Detection], now: float) -> None:
        """Detections naming a GPU: an opening one is an open anomaly (until its closing
        Detection, same fingerprint, arrives); a closed one ends it. An open anomaly with no
        news for ``gpu_stale_s`` ends there: an old throttle is not evidence forever."""
        for d in detections:
            for an in events_from_detections([d]):
                key = d.fingerprint
                prev = self._gpu_open.pop(key, None)
                if an.end is None:
                    if prev is not None:  # an update of the same open detection: keep its start
                        an = GpuAnomaly(an.uuid, min(an.start, prev[0].start), None, an.reason, an.score)
                    if len(self._gpu_open) < 10_000:
                        self._gpu_open[key] = (an, now)
                else:
                    if prev is not None and prev[0].start < an.start:
                        an = GpuAnomaly(an.uuid, prev[0].start, an.end, an.reason, an.score)
                    self._gpu_events.append(an)
        for key, (an, seen) in list(self._gpu_open.items()):
            if now - seen >= self.gpu_stale_s:
                del self._gpu_open[key]
                self._gpu_events.append(GpuAnomaly(an.uuid, an.start, seen + self.gpu_stale_s, an.reason, an.score))

    def _gpu_in(self, start: float, end: float) -> list[GpuAnomaly]:
        events = [e for e in self._gpu_events if e.start <= end and (e.end is None or e.end >= start)]
        events += [e for e, _ in self._gpu_open.values() if e.start <= end]
        if self.gpu_state is not None:
            events += self._gpu_from_state(start, end)
        return events

    def _gpu_from_state(self, start: float, end: float) -> list[GpuAnomaly]:
        uuids = {u for t in self.history if start <= t.start <= end for u in t.gpu_uuids}
        try:
            return events_from_store(self.gpu_state, sorted(uuids), start, end)
        except Exception as exc:  # a store is a user-supplied source: never let it break RCA
            report_error(_COMPONENT + ".gpu_state", exc)
            return []

    def _rerank(self, now: float) -> bool:
        inc = self.incident
        assert inc is not None
        self._last_rank = now
        candidates = self.analyze(inc.start - self.lookback_s, now, now)
        before = [(c.kind, c.name) for c in inc.candidates[:3]]
        inc.candidates = candidates
        inc.updated = now
        top = inc.top
        inc.title = f"Likely root cause: {top.name}" if top else "Abnormal traffic, no root cause ranked yet"
        return [(c.kind, c.name) for c in candidates[:3]] != before

    def _maybe_close(self, now: float) -> Incident | None:
        inc = self.incident
        assert inc is not None
        active = any(d.end is None for d in inc.detections if d.kind != "rca")
        quiet_for = now - max(self._last_abnormal, self._last_trigger)
        if (not active and quiet_for >= self.resolve_after_s) or now - self._last_trigger >= self.incident_timeout_s:
            inc.end = now
            inc.updated = now
            self.incident = None
            self.closed.append(inc)
            self.baselines.thaw()
            return inc
        return None

    def _export(self, incidents: list[Incident]) -> None:
        for sink in self.sinks:
            try:
                sink.export(incidents)
            except Exception as exc:  # sinks must not raise; if one does, count it
                report_error(_COMPONENT + ".sink", exc)
