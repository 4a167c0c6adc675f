"""Finish instrumented calls off the request path: one bounded worker thread per process.

What a call must do before it returns (timestamps, a snapshot of the tensors
it reads) stays on the request path; the bookkeeping that only turns that
data into telemetry -- counting tokens, the gap summary, span attributes,
``span.end(end_time=...)``, metric records -- is handed to :data:`FINISHER`
(a ``deque.append``, no thread wake-up) and runs on its worker thread, which
polls every :data:`POLL_S` while work keeps coming and then runs whenever the
caller releases the GIL (device waits, torch ops, I/O). On a GPU server that
work overlaps the next request's device time; on a CPU-only host it still
costs the same CPU, just not inside the caller's latency
(``benchmarks/overhead.py`` reports both). Waking the worker per call was
measured and rejected: a woken thread takes the GIL at once and the job ran
inside the caller's return path.

When it is used (:func:`DeferPolicy.allows`): only when every span processor
of the span's provider already exports asynchronously (``BatchSpanProcessor``),
so deferring the end adds no visible delay of its own. A
``SimpleSpanProcessor`` (tests, debugging: the user asked for spans the moment
they end) or any other processor keeps finishing synchronously. Switch off
with ``OTEL_LLM_DEFER_FINISH=false``.

Obligations:

* nothing lost: when the queue is full (:data:`MAX_PENDING`) the call is
  finished inline (back-pressure, never a drop); a failing job is reported
  once (``report_error``) and the next job runs;
* flushable: :meth:`Finisher.flush` returns once every job submitted before it
  has run. :class:`FlushSpanProcessor` is put *first* in the provider's
  processors, so ``TracerProvider.force_flush()`` / ``shutdown()`` drain our
  jobs before the exporters flush; metric collection drains too
  (``HistogramProducer``), and an ``atexit`` hook drains at interpreter exit;
* fork-safe: a child process starts its own worker on first use.
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from otel_llm._selftelemetry import report_error

__all__ = ["FINISHER", "LINGER_S", "MAX_PENDING", "POLL_S", "DeferPolicy", "Finisher", "FlushSpanProcessor", "flush_before_collect"]

MAX_PENDING = 4096  # calls waiting to be finished; beyond it a call finishes inline
POLL_S = 0.01  # the worker's period while jobs keep coming
LINGER_S = 1.0  # idle time after which the worker sleeps until woken
_COMPONENT = "instrumentation.finisher"


class Finisher:
    """A FIFO of zero-argument jobs, run in batches by one daemon thread started on first use.

    Submitting is a ``deque.append`` -- it wakes nobody. While jobs keep coming the worker
    wakes every :data:`POLL_S` and runs what has queued (a woken thread would take the GIL
    straight away and run the job inside the caller's latency); after :data:`LINGER_S`
    without jobs it sleeps until the next submit wakes it.
    """

    def __init__(self, max_pending: int = MAX_PENDING, poll_s: float = POLL_S, linger_s: float = LINGER_S) -> None:
        self.max_pending = max_pending
        self.poll_s = poll_s
        self.linger_s = linger_s
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._run_lock = threading.RLock()  # held while jobs run: flush() waits for the one in flight
        self._wake = threading.Event()
        self._idle = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def submit(self, job: Callable[[], None]) -> None:
        """Queue ``job`` for the worker (run inline when the queue is full or no thread can start)."""
        if self._pid != os.getpid() and not self._start():
            self._run(job)
            return
        jobs = self._jobs
        if len(jobs) >= self.max_pending:
            self._run(job)  # back-pressure: the caller pays, nothing is dropped
            return
        jobs.append(job)
        if self._idle:
            self._wake.set()

    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Run every job submitted so far (in this thread) and wait for the one in flight; False on timeout."""
        if not self._run_lock.acquire(timeout=-1 if timeout_s is None else max(timeout_s, 0.0)):
            return False
        try:
            self._drain()
        finally:
            self._run_lock.release()
        return True

    @property
    def pending(self) -> int:
        return len(self._jobs)

    # -- internals -----------------------------------------------------------
    def _after_fork(self) -> None:
        """In a forked child: the parent's thread, locks and queued jobs belong to the parent."""
        self._jobs = collections.deque()
        self._run_lock = threading.RLock()
        self._start_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = False
        self._thread = None
        self._pid = 0

    def _start(self) -> bool:
        with self._start_lock:
            if self._pid == os.getpid():
                return True
            try:
                thread = threading.Thread(target=self._loop, name="otel-llm-finisher", daemon=True)
                thread.start()
            except RuntimeError as exc:  # interpreter shutting down
                report_error(_COMPONENT, exc)
                return False
            self._thread = thread
            self._pid = os.getpid()
            return True

    def _loop(self) -> None:
        jobs = self._jobs
        sleep = time.sleep
        monotonic = time.monotonic
        last = monotonic()
        while True:
            sleep(self.poll_s)
            if jobs:
                with self._run_lock:
                    self._drain()
                last = monotonic()
            elif monotonic() - last > self.linger_s:
                self._wake.clear()
                self._idle = True
                if not jobs:  # re-check after announcing: a submit in between sees _idle and sets the event
                    self._wake.wait()
                self._idle = False
                last = monotonic()

    def _drain(self) -> None:
        jobs = self._jobs
        while jobs:
            try:
                job = jobs.popleft()
            except IndexError:
                return
            self._run(job)

    @staticmethod
    def _run(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:  # a job must never kill the worker
            report_error(_COMPONENT, exc)


FINISHER = Finisher()
atexit.register(FINISHER.flush, 5.0)


def flush_before_collect() -> None:
    """Metric-collection hook: record every finished call's points before the reader collects."""
    FINISHER.flush(5.0)


class FlushSpanProcessor(SpanProcessor):
    """A span processor that only drains :data:`FINISHER` on ``force_flush`` / ``shutdown``."""

    def shutdown(self) -> None:
        FINISHER.flush(5.0)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return FINISHER.flush(timeout_millis / 1000.0)


_FLUSH = FlushSpanProcessor()


class DeferPolicy:
    """Decides per span whether its call may finish on the worker; caches the decision per processor set."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._cache: tuple[Any, Any, bool] = (None, None, False)  # (multi-processor, its processors, decision)

    def allows(self, span: Any) -> bool:
        """True when ``span``'s provider exports only through batch processors (ours is then placed first)."""
        if not self.enabled:
            return False
        multi = getattr(span, "_span_processor", None)  # SDK Span -> the provider's multi-processor
        if multi is None:
            return False
        procs = getattr(multi, "_span_processors", None)
        cached = self._cache  # one read: other threads replace the whole tuple
        if multi is cached[0] and procs is cached[1]:
            return cached[2]
        ok = False
        try:
            ok = self._prepare(multi, procs)
        except Exception as exc:  # an SDK without these internals: finish synchronously
            report_error(_COMPONENT, exc)
        self._cache = (multi, getattr(multi, "_span_processors", None), ok)
        return ok

    @staticmethod
    def _prepare(multi: Any, procs: Any) -> bool:
        if not isinstance(procs, tuple):
            return False
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporting = [p for p in procs if p is not _FLUSH]
        if not exporting or not all(isinstance(p, BatchSpanProcessor) for p in exporting):
            return False
        if procs[:1] != (_FLUSH,):
            with multi._lock:  # first: force_flush / shutdown drain our jobs before the exporters flush
                multi._span_processors = (_FLUSH, *(p for p in multi._span_processors if p is not _FLUSH))
        return True
