"""What real GPU data demands between polls: lost GPUs, XID changes, monotonic counters, health.

:class:`GpuTracker` is fed every poll's samples and keeps, per GPU series
(:attr:`GpuSample.key`):

* **lost GPUs** -- a GPU seen before and missing from a poll that *succeeded*
  is lost (XID 79 "fallen off the bus" looks exactly like this: its series
  vanish). A failed poll (``ok=False``: scrape error, dropout) loses nobody;
* **XID events** -- DCGM's XID field holds the *last* XID code, so an event is
  a *change* of that value (the first non-zero value seen counts once);
* **monotonic counters** -- a counter that goes down (driver reload, exporter
  restart) is treated as a reset: the total keeps growing from where it was;
* **health** -- ``hw.state`` ok / degraded / failed from loss, XIDs, row-remap
  and ECC fields; and the active throttle reasons.

It is pure bookkeeping (no I/O; times come from the samples), bounded by ``max_gpus``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from otel_llm.collectors._fields import COUNTER_FIELDS, VIOLATION_REASONS, F, throttle_reasons
from otel_llm.collectors._model import GpuSample

from otel_llm._selftelemetry import report_dropped

_logger = logging.getLogger("otel_llm.collectors")

# XIDs after which the GPU needs a reset / is unusable vs. keeps working impaired.
# (79 "fallen off the bus" fails a GPU through its vanished series; a GPU that still reports
# after an old XID 79 was reset and works, so the code alone does not fail it.)
FAILED_XIDS = frozenset({64, 95})
DEGRADED_XIDS = frozenset({48, 63, 74, 92, 94})
XID_MEANING = {
    48: "double-bit ECC error", 63: "row remapping pending (ECC)", 64: "row remapping failure",
    74: "NVLink error", 79: "GPU has fallen off the bus", 92: "high single-bit ECC rate",
    94: "contained ECC error", 95: "uncontained ECC error", 13: "graphics engine exception",
    31: "GPU memory page fault", 43: "GPU stopped processing", 119: "GSP RPC timeout",
}

STATE_OK = "ok"
STATE_DEGRADED = "degraded"
STATE_FAILED = "failed"
STATES = (STATE_OK, STATE_DEGRADED, STATE_FAILED)


@dataclass(frozen=True)
class GpuEvent:
    """Something that happened to a GPU, for logs, RCA evidence and dashboards."""

    timestamp: float
    key: str
    """The GPU series key (UUID, or UUID/GPU-instance for MIG)."""
    kind: str
    """``lost`` | ``recovered`` | ``xid`` | ``throttle_start`` | ``throttle_end`` | ``counter_reset``."""
    attributes: dict = field(default_factory=dict)


class GpuTracker:
    """Per-GPU state across polls. Not thread-safe: one poller feeds it."""

    def __init__(self, *, max_gpus: int = 64) -> None:
        if max_gpus < 1:
            raise ValueError(f"max_gpus must be >= 1, got {max_gpus}")
        self.max_gpus = max_gpus
        self.latest: dict[str, GpuSample] = {}
        """Current sample of every present GPU."""
        self.lost: dict[str, GpuSample] = {}
        """Last sample of every GPU that vanished (until it comes back)."""
        self._raw_prev: dict[tuple[str, int], float] = {}
        self._offset: dict[tuple[str, int], float] = {}
        self._xid_last: dict[str, int] = {}
        self.xid_counts: Counter[tuple[str, int]] = Counter()
        self.lost_counts: Counter[str] = Counter()
        self.throttle: dict[str, frozenset[str]] = {}
        self._dbe_seen: dict[str, float] = {}
        self.overflow = 0

    # ------------------------------------------------------------------ update
    def update(self, samples: list[GpuSample], ok: bool = True, now: float | None = None) -> list[GpuEvent]:
        """Fold one poll in; return the events it revealed. Never raises for odd data."""
        events: list[GpuEvent] = []
        ts = now if now is not None else max((s.timestamp for s in samples), default=None) or time.time()
        seen: set[str] = set()
        for s in samples:
            key = s.key
            if key not in self.latest and key not in self.lost and len(self.latest) + len(self.lost) >= self.max_gpus:
                self.overflow += 1
                report_dropped("gpu.tracker", "max_gpus", 1)
                continue
            seen.add(key)
            if key in self.lost:
                self.lost.pop(key)
                events.append(GpuEvent(s.timestamp, key, "recovered", {}))
                _logger.warning("GPU %s (%s) is reporting again", key, s.model or "?")
            prev = self.latest.get(key)
            self.latest[key] = s
            self._counters(key, s, events)
            self._xid(key, s, events)
            self._throttle(key, s, prev, events)
        if ok:
            for key in [k for k in self.latest if k not in seen]:
                last = self.latest.pop(key)
                self.lost[key] = last
                self.lost_counts[key] += 1
                self.throttle.pop(key, None)
                events.append(GpuEvent(ts, key, "lost", {"model": last.model, "host": last.host}))
                _logger.warning(
                    "GPU %s (%s, index %s on %s) disappeared: its series vanished while the source answered "
                    "(XID 79 'fallen off the bus', a driver reset, or the GPU was removed)",
                    key, last.model or "?", last.index, last.host or "?",
                )
        return events

    def _counters(self, key: str, s: GpuSample, events: list[GpuEvent]) -> None:
        for fid in COUNTER_FIELDS.intersection(s.fields):
            value = s.fields[fid]
            k = (key, fid)
            prev = self._raw_prev.get(k)
            if prev is not None and value < prev:
                self._offset[k] = self._offset.get(k, 0.0) + prev
                events.append(GpuEvent(s.timestamp, key, "counter_reset", {"field": fid}))
            self._raw_prev[k] = value

    def _xid(self, key: str, s: GpuSample, events: list[GpuEvent]) -> None:
        raw = s.fields.get(F.XID)
        if raw is None:
            return
        code = int(raw)
        last = self._xid_last.get(key, 0)
        self._xid_last[key] = code
        if code and code != last:
            self.xid_counts[(key, code)] += 1
            meaning = XID_MEANING.get(code, "see NVIDIA's XID catalogue")
            events.append(GpuEvent(s.timestamp, key, "xid", {"xid": code, "meaning": meaning}))
            _logger.warning("GPU %s (%s) reported XID %d: %s", key, s.model or "?", code, meaning)

    def _throttle(self, key: str, s: GpuSample, prev: GpuSample | None, events: list[GpuEvent]) -> None:
        mask = s.fields.get(F.CLOCKS_EVENT_REASONS)
        if mask is not None:
            active = frozenset(throttle_reasons(int(mask)))
        elif prev is not None:
            active = frozenset(
                reason for fid, reason in VIOLATION_REASONS.items()
                if fid in s.fields and fid in prev.fields and s.fields[fid] > prev.fields[fid]
            )
        else:
            return
        before = self.throttle.get(key, frozenset())
        harmful = active - {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}
        was = before - {"gpu_idle", "applications_clocks_setting", "display_clock_setting"}
        if harmful and not was:
            events.append(GpuEvent(s.timestamp, key, "throttle_start", {"reasons": sorted(harmful)}))
        elif was and not harmful:
            events.append(GpuEvent(s.timestamp, key, "throttle_end", {"reasons": sorted(was)}))
        self.throttle[key] = active

    # ------------------------------------------------------------------- reads
    def counter(self, key: str, fid: int) -> float | None:
        """The monotonic total of counter field ``fid`` (resets folded in), None when never seen."""
        raw = self._raw_prev.get((key, fid))
        if raw is None:
            return None
        return raw + self._offset.get((key, fid), 0.0)

    def xid_total(self, key: str) -> int:
        return sum(n for (k, _), n in self.xid_counts.items() if k == key)

    def last_xid(self, key: str) -> int | None:
        return self._xid_last.get(key) or None

    def state(self, key: str) -> str:
        """``hw.state`` of a GPU: failed (lost, fatal XID, row-remap failure), degraded, or ok."""
        if key in self.lost:
            return STATE_FAILED
        s = self.latest.get(key)
        if s is None:
            return STATE_OK
        xid = self._xid_last.get(key, 0)
        if xid in FAILED_XIDS or s.fields.get(F.ROW_REMAP_FAILED, 0) >= 1:
            return STATE_FAILED
        if xid in DEGRADED_XIDS or s.fields.get(F.ROW_REMAP_PENDING, 0) >= 1:
            return STATE_DEGRADED
        dbe = s.fields.get(F.ECC_DBE_VOL)
        if dbe is not None:
            first = self._dbe_seen.setdefault(key, dbe)
            if dbe > first:
                return STATE_DEGRADED
        return STATE_OK
