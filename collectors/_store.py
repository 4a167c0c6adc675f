"""A small, bounded, time-indexed memory of recent GPU samples and events.

Processors (anomaly features, RCA) ask "what was GPU U doing at time t":
``store.at(uuid, t)`` returns the newest sample taken at or before ``t``
(optionally no older than ``max_age_s``). Memory is bounded: at most
``max_samples`` samples per GPU (oldest evicted first), ``max_gpus`` GPUs
(new GPUs beyond it are dropped and counted), ``max_events`` events.
Thread-safe: the poller adds while processors read.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Iterable

from otel_llm.collectors._model import GpuSample
from otel_llm.collectors._state import GpuEvent

from otel_llm._selftelemetry import report_dropped


class GpuStateStore:
    def __init__(self, *, max_samples: int = 720, max_gpus: int = 64, max_events: int = 1000) -> None:
        if max_samples < 1 or max_gpus < 1 or max_events < 1:
            raise ValueError("max_samples, max_gpus and max_events must all be >= 1")
        self.max_samples = max_samples
        self.max_gpus = max_gpus
        self._lock = threading.Lock()
        self._times: dict[str, deque[float]] = {}
        self._samples: dict[str, deque[GpuSample]] = {}
        self._by_uuid: dict[str, list[str]] = {}
        self._events: deque[GpuEvent] = deque(maxlen=max_events)
        self.dropped = 0

    # ----------------------------------------------------------------- writes
    def add(self, samples: Iterable[GpuSample], events: Iterable[GpuEvent] = ()) -> None:
        """Record one poll. Out-of-order samples (older than the newest kept) are ignored."""
        with self._lock:
            for s in samples:
                key = s.key
                times = self._times.get(key)
                if times is None:
                    if len(self._times) >= self.max_gpus:
                        self.dropped += 1
                        report_dropped("gpu.store", "max_gpus", 1)
                        continue
                    times = self._times[key] = deque(maxlen=self.max_samples)
                    self._samples[key] = deque(maxlen=self.max_samples)
                    self._by_uuid.setdefault(s.uuid, []).append(key)
                if times and s.timestamp < times[-1]:
                    continue
                times.append(s.timestamp)
                self._samples[key].append(s)
            self._events.extend(events)

    # ------------------------------------------------------------------ reads
    def _key(self, uuid: str) -> str | None:
        if uuid in self._times:
            return uuid
        keys = self._by_uuid.get(uuid)
        return keys[0] if keys else None

    def at(self, uuid: str, t: float, *, max_age_s: float | None = None) -> GpuSample | None:
        """The newest sample of GPU ``uuid`` (or series key) taken at or before ``t``.

        None when there is none, or when it is older than ``max_age_s``
        (a GPU that went silent or was lost is not "fine" forever).
        """
        with self._lock:
            key = self._key(uuid)
            if key is None:
                return None
            times = self._times[key]
            i = bisect.bisect_right(times, t)
            if i == 0:
                return None
            s = self._samples[key][i - 1]
        if max_age_s is not None and t - s.timestamp > max_age_s:
            return None
        return s

    def window(self, uuid: str, t0: float, t1: float) -> list[GpuSample]:
        """Samples of GPU ``uuid`` with ``t0 <= timestamp <= t1``, oldest first."""
        with self._lock:
            key = self._key(uuid)
            if key is None:
                return []
            times = self._times[key]
            lo, hi = bisect.bisect_left(times, t0), bisect.bisect_right(times, t1)
            samples = self._samples[key]
            return [samples[i] for i in range(lo, hi)]

    def latest(self, uuid: str) -> GpuSample | None:
        with self._lock:
            key = self._key(uuid)
            return self._samples[key][-1] if key is not None and self._samples[key] else None

    def events(self, uuid: str | None = None, t0: float | None = None, t1: float | None = None) -> list[GpuEvent]:
        """Recorded events (lost, recovered, xid, throttle_start/end ...), optionally filtered."""
        with self._lock:
            evs = list(self._events)
        return [
            e for e in evs
            if (uuid is None or e.key == uuid or e.key.split("/", 1)[0] == uuid)
            and (t0 is None or e.timestamp >= t0) and (t1 is None or e.timestamp <= t1)
        ]

    def uuids(self) -> list[str]:
        with self._lock:
            return list(self._by_uuid)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(d) for d in self._samples.values())
