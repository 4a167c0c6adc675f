"""The analysis side of ``otel-llm analyze``: a bounded queue and one worker.

Receivers :meth:`Pipeline.submit` decoded requests (never blocking: a full
queue answers False and the receiver tells the client to retry later). The
worker converts spans to :class:`SpanRecord` s, feeds the RCA processor and any
span consumers (the threshold / PyOD detectors: ``callable(span) ->
list[Detection]``), feeds metric consumers (``callable(request) ->
list[Detection]``) and GPU anomalies found in OTLP metrics, and ticks the RCA
processor about once a second. Nothing a payload contains can stop the worker:
failures are counted per component.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from otel_llm._selftelemetry import report_dropped, report_error
from otel_llm.processors._model import Detection
from otel_llm.processors._spans import SpanRecord

from ._metrics import GpuMetricWatcher
from ._otlp import spans_from_request

SpanConsumer = Callable[[SpanRecord], Sequence[Detection] | None]
MetricConsumer = Callable[[Any], Sequence[Detection] | None]
_COMPONENT = "analyze.pipeline"


class Pipeline:
    def __init__(
        self,
        rca: Any,
        *,
        span_consumers: Sequence[SpanConsumer] = (),
        metric_consumers: Sequence[MetricConsumer] = (),
        max_items: int = 256,
        max_spans: int = 500_000,
        tick_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_items < 1 or max_spans < 1 or tick_interval_s <= 0:
            raise ValueError("max_items and max_spans must be >= 1, tick_interval_s > 0")
        self.rca = rca
        self.span_consumers = list(span_consumers)
        self.metric_consumers = list(metric_consumers)
        self.gpu_watcher = GpuMetricWatcher()
        self.max_items, self.max_spans = max_items, max_spans
        self.tick_interval_s = tick_interval_s
        self.clock = clock
        self._queue: deque[tuple[str, Any, int]] = deque()
        self._queued_spans = 0
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque(maxlen=64)
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self.stats: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="otel-llm-analyze", daemon=True)
        self._thread.start()

    def full(self, spans: int = 0) -> bool:
        return len(self._queue) >= self.max_items or self._queued_spans + spans > self.max_spans

    def submit(self, signal: str, request: Any, spans: int = 0) -> bool:
        """Queue a decoded request (``signal`` is ``traces`` or ``metrics``); False when full."""
        with self._cond:
            if self._stop or self.full(spans):
                self.stats["refused_requests"] += 1
                self.stats[f"refused_{signal}"] += spans or 1
                report_dropped(_COMPONENT, "queue_full", spans or 1)
                return False
            self._queue.append((signal, request, spans))
            self._queued_spans += spans
            self._cond.notify()
        return True

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the worker thread (the RCA state's one owner), ahead of queued
        data; returns a Future. Used for on-demand ranking and incident listings."""
        future: Future = Future()
        with self._cond:
            if self._stop:
                future.set_exception(RuntimeError("the analysis pipeline is shut down"))
                return future
            self._calls.append((fn, future))
            self._cond.notify()
        return future

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued has been processed (then tick once)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.02)
            return not self._queue and not self._busy

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout_s)
        try:
            self.rca.flush()
        except Exception as exc:
            report_error(_COMPONENT, exc)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_interval_s
        while True:
            with self._cond:
                while not self._queue and not self._calls and not self._stop:
                    if not self._cond.wait(max(0.0, next_tick - time.monotonic())):
                        break
                if self._stop:
                    return
                calls = list(self._calls)
                self._calls.clear()
                item = self._queue.popleft() if self._queue else None
                if item is not None:
                    self._queued_spans -= item[2]
                self._busy = item is not None
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except Exception as exc:
                        future.set_exception(exc)
            try:
                if item is not None:
                    self._process(*item)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_interval_s
                    self.rca.tick(self.clock())
            except Exception as exc:  # the worker never dies
                report_error(_COMPONENT, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _process(self, signal: str, request: Any, spans: int) -> None:
        now = self.clock()
        if signal == "traces":
            records = spans_from_request(request)
            self.stats["spans"] += len(records)
            if len(records) < spans:
                self.stats["invalid_spans"] += spans - len(records)
            self.rca.on_spans(records, now)
            detections: list[Detection] = []
            for consumer in self.span_consumers:
                try:
                    for r in records:
                        found = consumer(r)
                        if found:
                            detections.extend(found)
                except Exception as exc:
                    report_error(f"{_COMPONENT}.span_consumer", exc)
            if detections:
                self.rca.on_detections(detections)
        else:
            self.stats["metric_requests"] += 1
            anomalies = self.gpu_watcher.observe(request)
            if anomalies:
                self.rca.add_gpu_anomalies(anomalies)
            for consumer in self.metric_consumers:
                try:
                    found = consumer(request)
                    if found:
                        self.rca.on_detections(found)
                except Exception as exc:
                    report_error(f"{_COMPONENT}.metric_consumer", exc)
