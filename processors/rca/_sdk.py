"""Run RCA inside an instrumented process: an SDK ``SpanProcessor``."""

from __future__ import annotations

import threading
import weakref
from collections import deque

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from otel_llm.processors._spans import from_readable_span

from otel_llm._selftelemetry import report_dropped, report_error

from ._processor import RcaProcessor


class RcaSpanProcessor(SpanProcessor):
    """Feeds finished spans to an :class:`RcaProcessor` and ticks it from a daemon thread.

    ``on_end`` only appends to a bounded buffer (never blocks the host; a full
    buffer drops and counts); conversion, assembly and ranking happen on the
    worker thread every ``interval_s``.
    """

    def __init__(self, rca: RcaProcessor | None = None, *, interval_s: float = 1.0, max_buffer: int = 100_000) -> None:
        if interval_s <= 0 or max_buffer < 1:
            raise ValueError("interval_s must be > 0 and max_buffer >= 1")
        self.rca = rca or RcaProcessor()
        self._buffer: deque[ReadableSpan] = deque()
        self._max = max_buffer
        self._interval = interval_s
        self._stop = threading.Event()
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, args=(weakref.WeakMethod(self._drain),),
                                        name="otel-llm-rca", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if len(self._buffer) >= self._max:
            report_dropped("rca.sdk", "buffer_full")
            return
        self._buffer.append(span)

    def _drain(self) -> None:
        records = []
        while self._buffer:
            span = self._buffer.popleft()
            try:
                records.append(from_readable_span(span))
            except Exception as exc:
                report_error("rca.sdk", exc)
        if records:
            self.rca.on_spans(records)
        self.rca.tick()

    def _run(self, drain_ref) -> None:
        while not self._stop.wait(self._interval):
            drain = drain_ref()
            if drain is None:
                return
            drain()
            del drain

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self._drain()
        return True

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()
        self.rca.flush()
        self.rca.shutdown()
