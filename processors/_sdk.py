"""Running the detectors inside a server process, plugged into the OTel SDK.

* :class:`DetectorSpanProcessor` -- an SDK ``SpanProcessor``. ``on_end``
  converts a finished request span to a :class:`SpanRecord` and puts it on a
  bounded queue (never blocks the host; a full queue drops the span and counts
  it: ``otel_llm.dropped{otel_llm.component="span_processor",
  otel_llm.reason="queue_full"}``). One daemon worker feeds the
  :class:`RequestAnomalyProcessor` and the :class:`SpanSeriesFeed`.
* :class:`SpanSeriesFeed` -- the span-derived metrics path: per interval and per
  series (service + model) it computes p95 TTFT, p95 TPOT, p95 duration and the
  request count and feeds them to a :class:`ThresholdProcessor`. The same feed
  runs in ``otel-llm analyze`` over OTLP spans.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from otel_llm.processors._features import is_request_span, request_series_attributes
from otel_llm.processors._model import Detection
from otel_llm.processors._spans import SpanRecord, from_readable_span

from otel_llm import semconv
from otel_llm._selftelemetry import report_dropped, report_error

_COMPONENT = "span_processor"
_FEED = "span_series_feed"

#: Span-derived series: metric name -> how to read the per-request value.
SPAN_SERIES: Mapping[str, tuple[str, ...]] = {
    semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: (semconv.OTEL_LLM_TTFT, semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
    semconv.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: (semconv.OTEL_LLM_TPOT,),
    semconv.GEN_AI_SERVER_REQUEST_DURATION: (),  # the span's own duration
}


def _p95(values: list[float]) -> float:
    v = sorted(values)
    k = 0.95 * (len(v) - 1)
    lo = int(math.floor(k))
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class SpanSeriesFeed:
    """Aggregates request spans into per-interval series and feeds a ThresholdProcessor.

    Each series gets the attribute ``otel_llm.statistic`` (``p95`` or ``count``).
    Spans arrive out of order (batching exporters, OTLP), so intervals stay open
    until the latest span end seen is ``grace_s`` past them (default 5 s, the SDK
    batch processor's delay); a span for an interval already closed is dropped and
    counted (``otel_llm.dropped{otel_llm.component="span_series_feed",
    otel_llm.reason="late_span"}``). When an interval closes, every series seen
    before gets its request count, 0 included (a stop in traffic is visible).
    """

    def __init__(self, thresholds: Any, interval_s: float = 10.0, grace_s: float = 5.0) -> None:
        if interval_s <= 0 or grace_s < 0:
            raise ValueError(f"need interval_s > 0 and grace_s >= 0, got {interval_s}, {grace_s}")
        self.thresholds = thresholds
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._open: dict[int, dict[tuple, dict[str, list[float]]]] = {}
        self._attrs: dict[tuple, dict[str, str]] = {}
        self._closed_upto: int | None = None  # intervals <= this are closed
        self._watermark = -math.inf
        self._lock = threading.Lock()
        self.late = 0
        self.partial = 0
        """Intervals still running at :meth:`flush`, dropped."""

    def add(self, span: SpanRecord) -> list[Detection]:
        if not is_request_span(span):
            return []
        idx = int(span.end // self.interval_s)
        out: list[Detection] = []
        with self._lock:
            if self._closed_upto is not None and idx <= self._closed_upto:
                self.late += 1
                report_dropped(_FEED, "late_span")
                return []
            attrs = request_series_attributes(span)
            key = tuple(sorted(attrs.items()))
            if key not in self._attrs and len(self._attrs) < 10_000:
                self._attrs[key] = attrs
            b = self._open.setdefault(idx, {}).setdefault(key, {m: [] for m in SPAN_SERIES})
            for metric, names in SPAN_SERIES.items():
                v = span.duration if not names else next(
                    (float(span.attributes[n]) for n in names if isinstance(span.attributes.get(n), (int, float))),
                    None,
                )
                if v is not None and math.isfinite(v):
                    b[metric].append(v)
            if span.end > self._watermark:
                self._watermark = span.end
            ready = [i for i in self._open if (i + 1) * self.interval_s + self.grace_s <= self._watermark]
            for i in sorted(ready):
                out += self._close_locked(i)
        return out

    def _close_locked(self, idx: int) -> list[Detection]:
        buckets = self._open.pop(idx, {})
        self._closed_upto = idx if self._closed_upto is None else max(self._closed_upto, idx)
        t = (idx + 1) * self.interval_s
        out: list[Detection] = []
        for key, attrs in self._attrs.items():
            b = buckets.get(key)
            count = len(b[semconv.GEN_AI_SERVER_REQUEST_DURATION]) if b else 0
            out += self.thresholds.observe(
                semconv.GEN_AI_SERVER_REQUEST_DURATION + ".count", {**attrs, semconv.OTEL_LLM_STATISTIC: "count"},
                t, float(count),
            )
            if b:
                for metric, values in b.items():
                    if values:
                        out += self.thresholds.observe(
                            metric, {**attrs, semconv.OTEL_LLM_STATISTIC: "p95"}, t, _p95(values)
                        )
        return out

    def flush(self, now: float | None = None) -> list[Detection]:
        """Close every open interval that has ended by ``now`` (shutdown; default the wall clock, or the time
        the data ends for a replay). One still running at ``now`` is dropped and counted
        (``otel_llm.reason="partial_interval"``): its short request count would read as a drop in traffic."""
        now = time.time() if now is None else now
        with self._lock:
            out: list[Detection] = []
            for i in sorted(self._open):
                if (i + 1) * self.interval_s <= now:
                    out += self._close_locked(i)
                else:
                    del self._open[i]
                    self._closed_upto = i if self._closed_upto is None else max(self._closed_upto, i)
                    self.partial += 1
                    report_dropped(_FEED, "partial_interval")
            return out


class DetectorSpanProcessor:
    """SDK ``SpanProcessor``: request spans -> anomaly scores and span-derived thresholds, off the host's thread."""

    def __init__(
        self,
        anomaly: Any = None,
        feed: SpanSeriesFeed | None = None,
        *,
        max_queue_size: int = 4096,
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {max_queue_size}")
        self.anomaly = anomaly
        self.feed = feed
        self._queue: collections.deque[SpanRecord] = collections.deque()
        self._max = max_queue_size
        self._cond = threading.Condition()
        self._busy = False
        self._shutdown = False
        self.dropped = 0
        self.processed = 0
        self._worker = threading.Thread(target=self._run, name="otel-llm-detectors", daemon=True)
        self._worker.start()

    # SpanProcessor interface ---------------------------------------------
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def _on_ending(self, span: Any) -> None:  # SDK >= 1.3x hook
        return None

    def on_end(self, span: Any) -> None:
        """Must not block or raise: convert and enqueue, or drop and count."""
        try:
            attrs = span.attributes or {}
            if semconv.GEN_AI_OPERATION_NAME not in attrs or semconv.OTEL_LLM_STAGE in attrs:
                return
            if self._shutdown:
                return
            record = from_readable_span(span)
            with self._cond:
                if len(self._queue) >= self._max:
                    self.dropped += 1
                    report_dropped(_COMPONENT, "queue_full")
                    return
                self._queue.append(record)
                self._cond.notify()
        except Exception as exc:
            report_error(_COMPONENT, exc)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._shutdown:
                    self._cond.wait()
                if not self._queue and self._shutdown:
                    return
                record = self._queue.popleft()
                self._busy = True
            try:
                if self.anomaly is not None:
                    self.anomaly.observe(record)
                if self.feed is not None:
                    self.feed.add(record)
                self.processed += 1
            except Exception as exc:
                report_error(_COMPONENT, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout_millis / 1000.0)

    def shutdown(self) -> None:
        with self._cond:
            if self._shutdown:
                return
            self._shutdown = True
            self._cond.notify_all()
        self._worker.join(5.0)
        try:
            if self.feed is not None:
                self.feed.flush()
        except Exception as exc:
            report_error(_COMPONENT, exc)


__all__ = ["SPAN_SERIES", "DetectorSpanProcessor", "SpanSeriesFeed"]
