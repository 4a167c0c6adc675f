"""Score a run against its ground truth: detected or missed, delay, RCA rank, false alarms.

Rules (stated in the report too):

* a fault is **detected** by the first detection that opens in
  ``[start - 2 s, min(end + grace, next fault start))`` (``grace`` 15 s: queues
  drain after a fault ends), the 2 s lead (a request that started just before
  the fault and suffered it) never reaching back into the previous fault's
  interval: one detection counts for one fault; its **delay** is that detection's start minus the
  fault's start, in demo seconds; the target is delay <= 60 s;
* its **RCA** is the last ranking computed, while the fault was active (or up
  to ``grace`` after, before the next fault), for the incident that the fault's
  first detection opened or joined (any incident's, when that one has none): ``top`` is the
  candidate ranked first and ``rank`` the 1-based position of the true root
  cause (None when absent);
* a **false alarm** is a detection that opens in a clean interval: before the
  first fault, or more than ``settle`` (20 s) after the previous fault ended;
  the rate is expressed per hour of *replayed* traffic (clean wall time x speedup).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_llm import semconv
from otel_llm.demo._faults import KIND_BURST, Fault, RootCause, clean_intervals
from otel_llm.processors._model import Detection, RootCauseCandidate

GRACE_S = 15.0
SETTLE_S = 20.0
TARGET_DELAY_S = 60.0


def matches(c: RootCauseCandidate, truth: RootCause, fault_kind: str = "") -> bool:
    """Does candidate ``c`` name the true root cause?"""
    name = (c.name or "").lower()
    ev = {str(k): v for k, v in (c.evidence or {}).items()}
    if truth.kind == "gpu":
        uuid = (truth.gpu or "").lower()
        blob = " ".join([name, str(ev.get("uuid", "")), str(ev.get(semconv.HW_ID, "")), str(ev.get("gpu", ""))]).lower()
        return c.kind == "gpu" and bool(uuid) and uuid in blob
    if truth.kind == "downstream":
        return truth.service.lower() in name or (c.service or "").lower() == truth.service.lower()
    # burst / saturation: the queue stage of the LLM server (scheduler / KV cache)
    if fault_kind == KIND_BURST:
        op = (c.operation or "").lower()
        return (c.service in (None, truth.service) or truth.service in name) and (
            "queue" in name or "queue" in op or "kv" in name or "scheduler" in name)
    return truth.service in name


def score_run(*, faults: Sequence[Fault], detections: Sequence[Detection], rca: Sequence[Any],
              gpu_uuids: Sequence[str], t0: float, duration_s: float, speedup: float,
              incidents: Any = None) -> dict[str, Any]:
    faults = sorted(faults, key=lambda f: f.start)
    incident_of: dict[tuple, str] = {}
    for inc in (incidents or {}).values():
        for d in inc.detections:
            incident_of[(d.kind, d.series, d.start)] = inc.id
    per_fault: list[dict[str, Any]] = []
    prev_hi = -float("inf")
    for i, f in enumerate(faults):
        nxt = faults[i + 1].start if i + 1 < len(faults) else duration_s + GRACE_S
        lo, hi = max(f.start - 2.0, prev_hi), min(f.end + GRACE_S, nxt)
        prev_hi = hi
        hits = sorted((d for d in detections if lo <= d.start - t0 < hi), key=lambda d: d.start)
        truth = f.root_cause(gpu_uuids)
        first = hits[0] if hits else None
        delay = (first.start - t0 - f.start) if first else None
        in_window = [s for s in rca if f.start <= s.t - t0 <= min(f.end + GRACE_S, nxt)]
        first_inc = incident_of.get((first.kind, first.series, first.start)) if first else None
        snaps = [s for s in in_window if s.incident_id == first_inc] or in_window
        ranking = snaps[-1].candidates if snaps else []
        rank = next((j + 1 for j, c in enumerate(ranking) if matches(c, truth, f.kind)), None)
        per_fault.append({
            "fault": f.label(), "kind": f.kind, "start": f.start, "end": f.end, "params": dict(f.params),
            "true_root_cause": truth.to_dict(),
            "detected": first is not None and delay is not None and delay <= TARGET_DELAY_S,
            "delay_s": round(delay, 2) if delay is not None else None,
            "first_detection": ({"kind": first.kind, "series": first.series, "explanation": first.explanation}
                                if first else None),
            "detections": len(hits),
            "top_root_cause": ({"name": ranking[0].name, "kind": ranking[0].kind, "reason": ranking[0].reason}
                               if ranking else None),
            "true_rank": rank,
            "rca_top1": rank == 1,
        })
    clean = clean_intervals(faults, duration_s, settle_s=SETTLE_S)
    first_fault = faults[0].start if faults else duration_s
    false_alarms = [d for d in detections if any(a <= d.start - t0 < b for a, b in clean)]
    warmup_fa = [d for d in false_alarms if d.start - t0 < first_fault]
    clean_s = sum(b - a for a, b in clean)
    replayed_h = clean_s * speedup / 3600.0
    n = len(per_fault)
    return {
        "faults": per_fault,
        "summary": {
            "faults": n,
            "detected": sum(p["detected"] for p in per_fault),
            "rca_top1": sum(p["rca_top1"] for p in per_fault),
            "mean_delay_s": (round(sum(p["delay_s"] for p in per_fault if p["detected"]) /
                                   max(1, sum(p["detected"] for p in per_fault)), 2) if n else None),
            "false_alarms": len(false_alarms),
            "false_alarms_warmup": len(warmup_fa),
            "clean_seconds": round(clean_s, 1),
            "replayed_clean_hours": round(replayed_h, 4),
            "false_alarms_per_replayed_hour": round(len(false_alarms) / replayed_h, 2) if replayed_h > 0 else None,
        },
        "targets": {
            "all_detected_within_60s": all(p["detected"] for p in per_fault),
            "rca_top1_at_least_3_of_4": (sum(p["rca_top1"] for p in per_fault) >= min(3, n)) if n else None,
            "no_false_alarm_in_warmup": len(warmup_fa) == 0,
        },
        "false_alarm_list": [{"t": round(d.start - t0, 1), "kind": d.kind, "series": d.series,
                              "explanation": d.explanation} for d in false_alarms],
    }
