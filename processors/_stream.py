"""The stream of detections every processor publishes and exporters / RCA consume.

:class:`DetectionStream` is a tiny in-process bus:

* ``publish(detections)`` never blocks and never raises: each subscriber has its
  own bounded queue; when one is full the *oldest* detection is dropped for that
  subscriber only and counted (``otel_llm.dropped{component="detection_stream",
  reason="subscriber_full"}``).
* ``subscribe(callback)`` delivers on a daemon worker thread per subscriber, so
  a slow exporter never slows a detector. A callback that raises is logged once
  and counted; delivery goes on.
* ``subscribe()`` with no callback returns a :class:`Subscription` to poll
  (``drain()``) -- what tests and the ``otel-llm analyze`` loop use.
* ``recent()`` keeps the last ``history`` detections for late readers.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable

from otel_llm.processors._model import Detection

from otel_llm._selftelemetry import report_dropped, report_error

_COMPONENT = "detection_stream"
_DEFAULT_QUEUE = 10_000
_DEFAULT_HISTORY = 1_000


class Subscription:
    """One subscriber's bounded queue. Thread-safe."""

    def __init__(self, stream: DetectionStream, maxsize: int, callback: Callable[[Detection], None] | None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._stream = stream
        self._queue: collections.deque[Detection] = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self._callback = callback
        self.dropped = 0
        self._thread: threading.Thread | None = None
        if callback is not None:
            self._thread = threading.Thread(target=self._run, name="otel-llm-detections", daemon=True)
            self._thread.start()

    def _offer(self, detection: Detection) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
                report_dropped(_COMPONENT, "subscriber_full")
            self._queue.append(detection)
            self._cond.notify()

    def drain(self, max_items: int | None = None) -> list[Detection]:
        """Take what is queued now (at most ``max_items``), oldest first."""
        with self._cond:
            n = len(self._queue) if max_items is None else min(max_items, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def get(self, timeout: float | None = None) -> Detection | None:
        """Wait up to ``timeout`` seconds for the next detection (None on timeout/close)."""
        with self._cond:
            if not self._queue and not self._closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)

    def _run(self) -> None:
        assert self._callback is not None
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue and self._closed:
                    return
                item = self._queue.popleft()
                self._cond.notify_all()
            try:
                self._callback(item)
            except Exception as exc:  # a subscriber's failure never stops delivery
                report_error(_COMPONENT, exc)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until a callback subscriber has consumed its queue."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop delivery; a callback subscriber first delivers what is queued."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._stream._remove(self)


class DetectionStream:
    """Fan-out of :class:`Detection` objects to bounded subscriber queues."""

    def __init__(self, history: int = _DEFAULT_HISTORY) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._recent: collections.deque[Detection] = collections.deque(maxlen=history)
        self.published = 0

    def subscribe(
        self, callback: Callable[[Detection], None] | None = None, *, maxsize: int = _DEFAULT_QUEUE
    ) -> Subscription:
        sub = Subscription(self, maxsize, callback)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def publish(self, detections: Detection | Iterable[Detection]) -> None:
        """Deliver to every subscriber; never blocks, never raises."""
        items = [detections] if isinstance(detections, Detection) else list(detections)
        if not items:
            return
        subs = self._subs  # copy-on-write list: no lock needed to read
        with self._lock:
            self._recent.extend(items)
            self.published += len(items)
        for sub in subs:
            for d in items:
                sub._offer(d)

    def recent(self) -> list[Detection]:
        with self._lock:
            return list(self._recent)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.close()


__all__ = ["DetectionStream", "Subscription"]
