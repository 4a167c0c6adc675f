"""GPU anomalies as RCA evidence: from GPU Detections and from raw GPU samples.

A GPU becomes a root-cause candidate when something abnormal happened to it in
the analysed window: a ``gpu`` Detection (from the GPU collectors' detectors),
or samples showing clock throttling for a thermal/power reason, an XID error,
uncorrectable ECC errors, or the GPU disappearing from the samples (lost).
The join with traces is the ``otel_llm.gpu.uuids`` span attribute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from otel_llm.processors._model import Detection

from otel_llm import semconv

from ._rank import GpuAnomaly

# DCGM field ids (stable numeric ids; names changed in DCGM 4.6).
FI_CLOCK_THROTTLE_REASONS = 112
FI_XID_ERRORS = 230
FI_POWER_VIOLATION = 240
FI_THERMAL_VIOLATION = 241
FI_ECC_DBE_VOL_TOTAL = 311
# Throttle-reason bits that slow a busy GPU (idle / app-clock / sync-boost /
# display bits are normal operation).
_THROTTLE_BITS = {
    0x4: "software power cap",
    0x8: "hardware slowdown",
    0x20: "software thermal slowdown",
    0x40: "hardware thermal slowdown",
    0x80: "hardware power brake",
}


_MAX_GPUS = 100_000  # bound on the per-GPU XID state


def _uuid_of(detection: Detection) -> str | None:
    attrs: Mapping[str, Any] = detection.attributes
    for key in (semconv.HW_ID, "gpu", "uuid", "UUID"):
        value = attrs.get(key)
        if isinstance(value, str) and value.startswith(("GPU-", "MIG-")):
            return value
    series = detection.series
    for token in series.replace('"', " ").replace("{", " ").replace("}", " ").replace(",", " ").split():
        token = token.split("=")[-1]
        if token.startswith(("GPU-", "MIG-")):
            return token
    return None


def events_from_detections(detections: Iterable[Detection]) -> list[GpuAnomaly]:
    """GPU events from Detections that name a GPU (any detector kind)."""
    out = []
    for d in detections:
        uuid = _uuid_of(d)
        if uuid is None:
            continue
        reason = d.explanation or (f"{d.metric} abnormal" if d.metric else f"{d.kind} detection")
        out.append(GpuAnomaly(uuid, d.start, d.end, reason[:160], max(0.1, min(1.0, d.score or 0.5))))
    return out


def events_from_samples(samples: Iterable[Any], last_xid: dict[str, int] | None = None) -> list[GpuAnomaly]:
    """GPU events from :class:`~otel_llm.collectors.GpuSample`-like objects
    (``uuid``, ``timestamp``, ``fields`` keyed by DCGM field id).

    DCGM's XID field holds the *last* XID code until the driver reloads, so an XID
    is an event only when the field's value changes (or first appears after 0 / no
    value). ``last_xid`` (uuid -> last value seen) carries that state across calls;
    it is updated in place. Without it, state starts empty for this call.
    """
    out = []
    last = {} if last_xid is None else last_xid
    for s in samples:
        fields: Mapping[int, float] = getattr(s, "fields", {}) or {}
        reasons = []
        bits = fields.get(FI_CLOCK_THROTTLE_REASONS)
        if bits:
            named = [name for bit, name in _THROTTLE_BITS.items() if int(bits) & bit]
            if named:
                reasons.append("clock throttling (" + ", ".join(named) + ")")
        xid = fields.get(FI_XID_ERRORS)
        if xid is not None:
            code = int(xid) if xid == xid else 0  # NaN: no value
            if code and last.get(s.uuid) != code:
                reasons.append(f"XID {code}")
            if code:
                if s.uuid in last or len(last) < _MAX_GPUS:
                    last[s.uuid] = code
            else:
                last.pop(s.uuid, None)
        if fields.get(FI_ECC_DBE_VOL_TOTAL):
            reasons.append("uncorrectable ECC errors")
        if getattr(s, "labels", {}).get("lost") in ("1", "true") or fields.get(-1):
            reasons.append("GPU lost")
        for reason in reasons:
            out.append(GpuAnomaly(s.uuid, s.timestamp, s.timestamp, reason, 1.0))
    return out


_STORE_KINDS = {"lost": "GPU lost (fell off the bus or was reset)", "xid": "XID {xid}: {meaning}",
                "throttle_start": "clock throttling ({reasons})"}


def events_from_store(store: Any, uuids: Iterable[str], start: float, end: float) -> list[GpuAnomaly]:
    """GPU anomalies from a :class:`~otel_llm.collectors.GpuStateStore` (its
    ``events(uuid, t0, t1)`` and ``window(uuid, t0, t1)``) for the GPUs the
    window's spans ran on."""
    out: list[GpuAnomaly] = []
    for uuid in uuids:
        # The XID value just before the window: a stale last-XID in it is not new.
        last_xid: dict[str, int] = {}
        if hasattr(store, "at"):
            before = store.at(uuid, math.nextafter(start, -math.inf))
            if before is not None:
                events_from_samples([before], last_xid)
        if hasattr(store, "events"):
            for e in store.events(uuid, start, end):
                template = _STORE_KINDS.get(getattr(e, "kind", ""))
                if template is None:
                    continue
                attrs = dict(getattr(e, "attributes", {}) or {})
                attrs.setdefault("xid", "?")
                attrs.setdefault("meaning", "")
                reasons = attrs.get("reasons") or ()
                attrs["reasons"] = ", ".join(reasons) if not isinstance(reasons, str) else reasons
                try:
                    reason = template.format(**attrs)
                except (KeyError, IndexError, ValueError):
                    reason = e.kind
                out.append(GpuAnomaly(uuid, e.timestamp, e.timestamp, reason.rstrip(": "), 1.0))
        if hasattr(store, "window"):
            out += events_from_samples(store.window(uuid, start, end), last_xid)
        elif hasattr(store, "at"):
            out += events_from_samples((s for s in (store.at(uuid, t) for t in (start, end)) if s is not None),
                                       last_xid)
    return out
