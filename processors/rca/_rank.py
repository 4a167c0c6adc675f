"""Rank root-cause candidates for a window of traces against the baselines.

Per component (a span operation, an LLM stage, a downstream) and per service:

* **excess** -- seconds of self time above normal, summed over the window's
  occurrences that deviate significantly (value above median + ``k`` x scale),
  weighted by whether the span was on its trace's critical path. Normalised
  stages compare seconds per token, then convert back to seconds;
* **robust z** -- the abnormal occurrences' median self time against the
  baseline (median, 1.4826 x MAD);
* **error lift** -- errors originating here beyond the baseline error rate;
* **coverage** -- Ochiai similarity between "this service misbehaves in the
  trace" and "the trace is abnormal" over abnormal vs normal traces.

They fuse into one score per service, weighted by whether the window is
abnormal in latency, errors or both. GPUs with anomalies in the window become
candidates of their own, scored by the share of the excess found in traces
that ran on them; a *lost* GPU (XID 79, series vanished) scores on its own
evidence: the loss and the requests that failed on it. Scoring is pure: nothing here changes the baselines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import median

from otel_llm.processors._model import RootCauseCandidate

from ._baseline import BaselineStore
from ._trace import DOWNSTREAM, EGRESS, NETWORK, STAGE, Component, TraceSummary

DEFAULT_K = 3.0
_OFF_PATH_WEIGHT = 0.3
_NEW_COMPONENT_WEIGHT = 0.5
_MAX_EXAMPLES = 3
_TRACE_EXCESS_SHARE = 0.1
_EGRESS_MIN_SHARE = 0.15
# Fusion weights: excess/error share, coverage (Ochiai), robust z (saturating at ~_Z_SCALE).
_W_SHARE, _W_OCHIAI, _W_Z, _Z_SCALE = 0.6, 0.2, 0.2, 5.0
# A lost GPU's score: the loss itself, plus the share of its requests that failed.
_LOST_BASE, _LOST_FAILED = 0.5, 0.4


@dataclass(frozen=True, slots=True)
class GpuAnomaly:
    """A GPU anomaly in the analysed window (from a GPU Detection or GPU samples)."""

    uuid: str
    start: float
    end: float | None
    reason: str
    """E.g. ``thermal throttling``, ``XID 79``, ``GPU lost``, ``memory ECC errors``."""
    score: float = 1.0


@dataclass(slots=True)
class _Acc:
    excess: float = 0.0
    occurrences: int = 0
    deviating: int = 0
    errors: int = 0
    expected_errors: float = 0.0
    abnormal_values: list[float] = field(default_factory=list)
    deviating_values: list[float] = field(default_factory=list)
    scale_sum: float = 0.0
    examples: dict[str, float] = field(default_factory=dict)
    new: bool = False
    callers: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _ServiceAcc:
    excess: float = 0.0
    error_lift: float = 0.0
    ef: int = 0
    ep: int = 0
    components: list[Component] = field(default_factory=list)


def _remap(component: Component, baselines: BaselineStore) -> Component:
    if component[0] == DOWNSTREAM:
        callee = baselines.callee((component[1], component[2]))
        if callee is not None:
            return callee
    return component


def _trace_deviations(
    trace: TraceSummary, baselines: BaselineStore, k: float
) -> list[tuple[Component, float, bool, float]]:
    """(component, excess seconds, unexpected error origin, value) per contribution."""
    out = []
    for c in trace.contributions:
        comp = _remap(c.component, baselines)
        st = baselines.component(comp)
        if st is None:
            excess = c.value * c.scale * _NEW_COMPONENT_WEIGHT
            unexpected = c.error_origin
        else:
            excess = (c.value - st.upper(k)) * c.scale if c.value > st.upper(k) else 0.0
            unexpected = c.error_origin and st.error_rate < 0.5
        if not c.on_critical_path:
            excess *= _OFF_PATH_WEIGHT
        out.append((comp, excess, unexpected, c.value))
    return out


def _egress_senders(window: Sequence[TraceSummary], all_devs) -> set[str]:
    """Services whose *outgoing* calls wait abnormally: delay on a service's egress shows as
    waits both on calls *to* it and on calls *from* it. When a service has abnormal waits on
    both sides, or towards several callees that see such waits from nobody else, the waits of
    its outgoing calls are its own, not its callees'."""
    ingress: dict[str, float] = {}
    egress: dict[str, dict[str, float]] = {}
    sources: dict[str, dict[str, float]] = {}
    total = 0.0
    for trace, devs in zip(window, all_devs, strict=True):
        for (comp, excess, _, _), c in zip(devs, trace.contributions, strict=True):
            if comp[0] != NETWORK or excess <= 0 or not c.via or c.via[0] == comp[1]:
                continue
            caller, callee = c.via[0], comp[1]
            total += excess
            ingress[callee] = ingress.get(callee, 0.0) + excess
            egress.setdefault(caller, {})[callee] = egress.get(caller, {}).get(callee, 0.0) + excess
            sources.setdefault(callee, {})[caller] = sources.get(callee, {}).get(caller, 0.0) + excess
    out = set()
    for svc, targets in egress.items():
        out_excess = sum(targets.values())
        if out_excess < _EGRESS_MIN_SHARE * total:
            continue
        both_sides = ingress.get(svc, 0.0) >= _EGRESS_MIN_SHARE * total
        # Egress delay slows every callee alike: several callees with comparable waits,
        # each seeing them from this caller only.
        strong = [t for t, v in targets.items() if v >= 0.25 * max(targets.values())]
        fan_out = len(strong) >= 2 and all(
            sources[t].get(svc, 0.0) >= 0.8 * sum(sources[t].values()) for t in strong)
        if both_sides or fan_out:
            out.add(svc)
    return out


def _abnormal(trace: TraceSummary, devs, baselines: BaselineStore, k: float) -> tuple[bool, bool]:
    """(latency-abnormal, error-abnormal) for one trace."""
    root = baselines.root(trace.root_key)
    # Slow end to end, or a large part of it spent in significant deviations
    # (a slow dependency can hide inside the variance of a long request).
    slow = sum(d[1] for d in devs) > _TRACE_EXCESS_SHARE * max(trace.duration, 1e-9)
    if root is not None:
        slow = slow or trace.duration > root.upper(k)
        err = trace.error and root.error_rate < 0.5
    else:
        err = trace.error
    err = err or any(d[2] for d in devs)
    return slow, err


def rank(
    window: Sequence[TraceSummary],
    baselines: BaselineStore,
    *,
    reference: Iterable[TraceSummary] = (),
    gpu_events: Iterable[GpuAnomaly] = (),
    k: float = DEFAULT_K,
    max_candidates: int = 10,
    per_service: int = 3,
) -> list[RootCauseCandidate]:
    """Rank the likely causes of what is abnormal in ``window``.

    ``reference`` are normal traces from before the window (for coverage);
    ``gpu_events`` are GPU anomalies overlapping the window.
    """
    comps: dict[Component, _Acc] = {}
    services: dict[str, _ServiceAcc] = {}
    n_slow = n_err = n_abn = 0
    trace_excess: dict[str, float] = {}
    gpu_excess: dict[str, float] = {}
    gpu_comp_raw: dict[tuple[str, Component], float] = {}
    gpu_traces: dict[str, int] = {}
    gpu_service: dict[str, dict[str, float]] = {}
    gpu_failed: dict[str, int] = {}

    all_devs = [_trace_deviations(trace, baselines, k) for trace in window]
    senders = _egress_senders(window, all_devs)
    for trace, devs in zip(window, all_devs, strict=True):
        if senders:
            devs = [((EGRESS, c.via[0], c.via[1]), *d[1:]) if d[0][0] == NETWORK and c.via and c.via[0] in senders
                    else d for d, c in zip(devs, trace.contributions, strict=True)]
        slow, err = _abnormal(trace, devs, baselines, k)
        abnormal = slow or err
        n_slow += slow
        n_err += err
        n_abn += abnormal
        involved: set[str] = set()
        total = 0.0
        for (comp, excess, unexpected, value), c in zip(devs, trace.contributions, strict=True):
            acc = comps.get(comp)
            if acc is None:
                acc = comps[comp] = _Acc(new=baselines.component(comp) is None and comp[0] != EGRESS)
            if comp[0] == DOWNSTREAM and c.via is not None:
                acc.callers[c.via[0]] = acc.callers.get(c.via[0], 0) + 1
            acc.occurrences += 1
            acc.scale_sum += c.scale
            st = baselines.component(comp)
            if st is not None and c.error_origin is not None:
                acc.expected_errors += st.error_rate
            if unexpected:
                acc.errors += 1
            if excess > 0:
                acc.excess += excess
                acc.deviating += 1
                acc.deviating_values.append(value)
                total += excess
            if abnormal:
                acc.abnormal_values.append(value)
            if excess > 0 or unexpected:
                acc.examples[trace.trace_id] = acc.examples.get(trace.trace_id, 0.0) + excess + unexpected
            if excess > 0 or unexpected:
                involved.add(comp[1])
        trace_excess[trace.trace_id] = total
        for uuid, svc in trace.gpu_uuids.items():
            # Only the excess of the service that runs on this GPU can be the GPU's doing.
            for (comp, excess, _, _) in devs:
                if excess > 0 and comp[1] == svc:
                    gpu_comp_raw[(uuid, comp)] = gpu_comp_raw.get((uuid, comp), 0.0) + excess
            gpu_traces[uuid] = gpu_traces.get(uuid, 0) + 1
            if trace.error or any(d[2] and d[0][1] == svc for d in devs):
                gpu_failed[uuid] = gpu_failed.get(uuid, 0) + 1
            gpu_service.setdefault(uuid, {})
            gpu_service[uuid][svc] = gpu_service[uuid].get(svc, 0.0) + 1.0
        for svc in involved:
            sa = services.setdefault(svc, _ServiceAcc())
            if abnormal:
                sa.ef += 1
            else:
                sa.ep += 1

    # Normal traffic has hiccups too: a component called often collects excess
    # by chance. Subtract the excess per call it shows in the reference traffic.
    ref_excess: dict[Component, float] = {}
    ref_calls: dict[Component, int] = {}
    for trace in reference:
        devs = _trace_deviations(trace, baselines, k)
        for comp, excess, _, _ in devs:
            ref_calls[comp] = ref_calls.get(comp, 0) + 1
            if excess > 0:
                ref_excess[comp] = ref_excess.get(comp, 0.0) + excess
        for svc in {d[0][1] for d in devs if d[1] > 0 or d[2]}:
            services.setdefault(svc, _ServiceAcc()).ep += 1
    raw_excess = {comp: acc.excess for comp, acc in comps.items()}
    for comp, acc in comps.items():
        if comp in ref_excess:
            acc.excess = max(0.0, acc.excess - acc.occurrences * ref_excess[comp] / ref_calls[comp])
    for (uuid, comp), raw in gpu_comp_raw.items():
        if raw_excess.get(comp):
            gpu_excess[uuid] = gpu_excess.get(uuid, 0.0) + comps[comp].excess * raw / raw_excess[comp]

    total_excess = sum(a.excess for a in comps.values())
    lifts = {comp: max(0.0, a.errors - a.expected_errors) for comp, a in comps.items()}
    total_lift = sum(lifts.values())
    for comp, acc in comps.items():
        sa = services.setdefault(comp[1], _ServiceAcc())
        sa.excess += acc.excess
        sa.error_lift += lifts[comp]
        sa.components.append(comp)

    # How much of the window's abnormality is latency vs errors.
    w_lat = (n_slow + 1e-9) / (n_slow + n_err + 2e-9)
    w_err = 1.0 - w_lat
    if total_lift == 0:
        w_lat, w_err = 1.0, 0.0
    elif total_excess == 0:
        w_lat, w_err = 0.0, 1.0

    def comp_score(comp: Component) -> tuple[float, float]:
        acc = comps[comp]
        share = acc.excess / total_excess if total_excess else 0.0
        lift = lifts[comp] / total_lift if total_lift else 0.0
        z = 0.0
        st = baselines.component(comp)
        if st is not None and acc.abnormal_values:
            z = st.z(median(acc.abnormal_values))
        return w_lat * share + w_err * lift, z

    scored: list[tuple[float, str]] = []
    service_detail: dict[str, tuple[float, float, float, float]] = {}
    for svc, sa in services.items():
        share = sa.excess / total_excess if total_excess else 0.0
        lift = sa.error_lift / total_lift if total_lift else 0.0
        nf = n_abn - sa.ef
        ochiai = sa.ef / math.sqrt((sa.ef + nf) * (sa.ef + sa.ep)) if sa.ef else 0.0
        zmax = max((comp_score(c)[1] for c in sa.components), default=0.0)
        zterm = 1.0 - math.exp(-max(zmax, 0.0) / _Z_SCALE)
        score = _W_SHARE * (w_lat * share + w_err * lift) + _W_OCHIAI * ochiai + _W_Z * zterm
        scored.append((score, svc))
        service_detail[svc] = (share, lift, ochiai, zmax)
    scored.sort(key=lambda x: (-x[0], x[1]))

    candidates: list[RootCauseCandidate] = []
    for score, svc in scored:
        sa = services[svc]
        if not sa.components:
            continue
        ranked = sorted(sa.components, key=lambda c: -comp_score(c)[0])
        best = comp_score(ranked[0])[0]
        for i, comp in enumerate(ranked[:per_service]):
            cs = comp_score(comp)[0]
            if i and (cs <= 0 or cs < 0.3 * best):
                break
            candidates.append(_candidate(comp, comps[comp], baselines, score if i == 0 else score * cs / (best or 1),
                                         cs, comp_score(comp)[1], lifts[comp], service_detail[svc],
                                         n_abn, len(window)))

    gpu_events = list(gpu_events)
    lost = {ev.uuid for ev in gpu_events if _is_lost(ev.reason)}
    for ev in _merge_gpu_events(gpu_events):
        share = gpu_excess.get(ev.uuid, 0.0) / total_excess if total_excess else 0.0
        svc_weights = gpu_service.get(ev.uuid, {})
        svc = max(svc_weights, key=svc_weights.get) if svc_weights else None
        best_on_gpu = max((c.score for c in candidates if svc and c.service == svc), default=0.0)
        top_score = max((c.score for c in candidates), default=0.0)
        # Traffic share of this GPU among the traces of its service that carry a GPU.
        peers = [t for t in window if svc and any(s == svc for s in t.gpu_uuids.values())]
        traffic = gpu_traces.get(ev.uuid, 0) / len(peers) if peers else 0.0
        lift = share / traffic if traffic else 0.0
        score = 0.3 * ev.score + 0.7 * share
        if share >= 0.3 or (share >= 0.1 and lift >= 0.8 and best_on_gpu >= 0.5 * top_score):
            # The slowdown sits in the service running on this GPU, in its traces at
            # least as much as elsewhere, and the GPU itself reports trouble: the GPU
            # explains its service's slow stage, so it ranks just above it.
            score = max(score, best_on_gpu * 1.05 + 1e-6)
        failed = gpu_failed.get(ev.uuid, 0)
        if ev.uuid in lost:
            # A lost GPU (XID 79, series vanished) is its own evidence: traffic moves away
            # from it, so its share of the excess is near zero. The loss itself and the
            # requests that failed on it before rerouting rank it.
            fail_share = failed / gpu_traces[ev.uuid] if gpu_traces.get(ev.uuid) else 0.0
            score = max(score, _LOST_BASE * ev.score + _LOST_FAILED * fail_share)
            if failed:  # its service's errors are the GPU's doing: rank just above them
                score = max(score, best_on_gpu * 1.05 + 1e-6)
        reason = f"GPU {ev.uuid}: {ev.reason} during the window"
        if gpu_traces.get(ev.uuid):
            reason += f"; {gpu_traces[ev.uuid]} traces ran on it, carrying {share:.0%} of the excess latency"
            if failed:
                reason += f"; {failed} of them failed"
        examples = sorted((t for t in window if ev.uuid in t.gpu_uuids), key=lambda t: -trace_excess[t.trace_id])
        candidates.append(RootCauseCandidate(
            kind="gpu", name=ev.uuid, score=round(score, 4), reason=reason, service=svc, operation=None,
            evidence={"gpu_reason": ev.reason, "gpu_event_start": ev.start, "gpu_event_end": ev.end,
                      "excess_share": round(share, 4), "traffic_share": round(traffic, 4),
                      "excess_lift": round(lift, 2), "traces_on_gpu": gpu_traces.get(ev.uuid, 0),
                      "failed_traces_on_gpu": failed, "gpu_lost": ev.uuid in lost},
            trace_ids=tuple(t.trace_id for t in examples[:_MAX_EXAMPLES]),
        ))
    candidates.sort(key=lambda c: -c.score)
    return candidates[:max_candidates]


def _is_lost(reason: str) -> bool:
    r = reason.lower()
    return "lost" in r or "off the bus" in r or "xid 79" in r or "vanished" in r


def _merge_gpu_events(events: Iterable[GpuAnomaly]) -> list[GpuAnomaly]:
    by_uuid: dict[str, GpuAnomaly] = {}
    reasons: dict[str, list[str]] = {}
    for ev in events:
        cur = by_uuid.get(ev.uuid)
        reasons.setdefault(ev.uuid, [])
        if ev.reason not in reasons[ev.uuid]:
            reasons[ev.uuid].append(ev.reason)
        if cur is None or ev.score > cur.score:
            by_uuid[ev.uuid] = ev
    return [GpuAnomaly(u, e.start, e.end, ", ".join(reasons[u][:3]), min(1.0, e.score)) for u, e in by_uuid.items()]


def _fmt(seconds: float, per_token: bool) -> str:
    unit = "/token" if per_token else ""
    if seconds >= 1:
        return f"{seconds:.2f} s{unit}"
    return f"{seconds * 1000:.1f} ms{unit}"


def _candidate(comp, acc: _Acc, baselines: BaselineStore, score: float, comp_score: float, z: float,
               lift: float, detail, n_abn: int, n_window: int) -> RootCauseCandidate:
    kind, svc, op = comp
    st = baselines.component(comp)
    per_token = kind == STAGE and acc.occurrences and acc.scale_sum / acc.occurrences > 1.0
    share, svc_lift, ochiai, _ = detail
    parts: list[str] = []
    label = f"{svc} {op}" if kind != STAGE else f"{svc} stage {op}"
    callers = sorted(acc.callers, key=lambda x: -acc.callers[x])
    if kind == DOWNSTREAM:
        label = f"downstream {svc} ({op}" + (f", called by {', '.join(callers[:2])})" if callers else ")")
    elif kind == NETWORK:
        label = f"calls to {svc} {op} (wait not covered by its span: network / queueing)"
    elif kind == EGRESS:
        label = f"{svc}'s outgoing calls ({op}) (its egress: waits seen on both sides of {svc})"
    now = median(acc.abnormal_values) if acc.abnormal_values else None
    slow = median(acc.deviating_values) if acc.deviating_values else None
    if acc.new:
        parts.append(f"{label} appears only in the abnormal window ({acc.occurrences} calls)")
    elif st is not None and slow is not None and acc.excess > 0:
        norm = " per token" if per_token else ""
        parts.append(f"{label} self time{norm} {_fmt(slow, bool(per_token))} vs {_fmt(st.median, bool(per_token))} "
                     f"normally in {acc.deviating} of {acc.occurrences} calls (z={st.z(slow):.1f})")
    else:
        parts.append(f"{label}")
    if acc.excess > 0:
        parts.append(f"{share:.0%} of the window's excess latency ({acc.excess:.2f} s)")
    if lift > 0:
        base = f"{st.error_rate:.0%}" if st is not None else "none"
        parts.append(f"errors originate here in {acc.errors}/{acc.occurrences} calls (baseline {base})")
    if ochiai > 0:
        parts.append(f"misbehaves in abnormal traces (Ochiai {ochiai:.2f})")
    examples = sorted(acc.examples, key=lambda t: -acc.examples[t])[:_MAX_EXAMPLES]
    return RootCauseCandidate(
        kind="operation" if kind in (NETWORK, EGRESS) else kind,
        name=f"{svc}:{op}",
        score=round(score, 4),
        reason="; ".join(parts) + ".",
        service=svc,
        operation=op,
        evidence={
            "excess_s": round(acc.excess, 4),
            "excess_share": round(share, 4),
            "component_share": round(comp_score, 4),
            "robust_z": round(z, 2),
            "window_median": now,
            "slow_calls_median": slow,
            "baseline_median": st.median if st else None,
            "per_token": bool(per_token),
            "error_origins": acc.errors,
            "baseline_error_rate": st.error_rate if st else None,
            "error_lift": round(lift, 3),
            "ochiai": round(ochiai, 3),
            "calls": acc.occurrences,
            "callers": callers[:5],
            "abnormal_traces": n_abn,
            "window_traces": n_window,
        },
        trace_ids=tuple(examples),
    )


GpuEvent = GpuAnomaly
"""Alias kept for callers written against the first name of :class:`GpuAnomaly`."""
