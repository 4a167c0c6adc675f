"""One assembled trace reduced to what RCA needs: per-component self time.

:func:`summarize` walks a trace's spans once and attributes every second of
the trace to exactly one *component*:

* ``(service, span name)`` for the time a span spends in itself (its duration
  minus the union of its children's intervals);
* the **callee** for the time a CLIENT span waits that its SERVER child does
  not cover (network, the callee's queues, an uninstrumented downstream);
* a virtual LLM **stage** (``queue`` / ``prefill`` / ``decode`` / ...) for spans
  that carry ``otel_llm.stage`` or are named after a stage, and for stage
  durations recorded as attributes on a server span. Prefill is normalised per
  input token and decode per output token, so a long prompt is not a fault.

It also marks which components lie on the trace's critical path and where
errors *originate* (an error span none of whose children failed).

Bad shapes never raise: duplicate span ids, missing parents, negative
durations and children outside their parent (clock skew) are repaired and
counted in :class:`TraceSummary` ``issues``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_llm.processors._spans import KIND_CLIENT, KIND_INTERNAL, KIND_PRODUCER, KIND_SERVER, SpanRecord

from otel_llm import semconv

# Component kinds. NETWORK is the wait of a CLIENT span its SERVER child does not
# cover (kept apart from the callee's own self time: different distributions);
# EGRESS is such a wait re-attributed to the caller (see _rank). Both are
# reported as RootCauseCandidate kind "operation".
OPERATION, STAGE, DOWNSTREAM, NETWORK, EGRESS = "operation", "stage", "downstream", "network", "egress"

_STAGE_NAMES = {
    semconv.STAGE_QUEUE, semconv.STAGE_PREFILL, semconv.STAGE_DECODE, semconv.STAGE_TOKENIZE,
    "detokenize", "preemption", "scheduler", "schedule",
}
_STAGE_ATTRS = (
    (semconv.OTEL_LLM_QUEUE_TIME, semconv.STAGE_QUEUE),
    (semconv.OTEL_LLM_PREFILL_TIME, semconv.STAGE_PREFILL),
    (semconv.OTEL_LLM_DECODE_TIME, semconv.STAGE_DECODE),
)
# Attributes naming an uninstrumented callee of a CLIENT span, best first.
_PEER_ATTRS = (
    semconv.PEER_SERVICE, semconv.DB_SYSTEM_NAME, semconv.DB_SYSTEM,
    semconv.SERVER_ADDRESS, semconv.NET_PEER_NAME,
)
_SKEW_TOLERANCE_S = 0.001

Component = tuple[str, str, str]
"""(kind, service, operation)."""


@dataclass(slots=True)
class Contribution:
    """One span's (or one virtual stage's) share of a trace."""

    component: Component
    value: float
    """Self time in seconds, or seconds per token for token-normalised stages."""
    scale: float
    """Seconds = value * scale (the token count; 1 when not normalised)."""
    on_critical_path: bool
    error_origin: bool
    span_id: str
    via: tuple[str, str] | None = None
    """For time blamed on a callee or a downstream: the calling (service, span name)."""


@dataclass(slots=True)
class TraceSummary:
    trace_id: str
    start: float
    end: float
    root_service: str
    root_operation: str
    error: bool
    contributions: list[Contribution]
    gpu_uuids: dict[str, str] = field(default_factory=dict)
    """GPU UUID -> the service whose spans carry it."""
    span_count: int = 0
    partial: bool = False
    issues: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def root_key(self) -> tuple[str, str]:
        return (self.root_service, self.root_operation)


_ID_SEGMENT = re.compile(
    r"^(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}|[A-Za-z0-9_-]{20,})$")
_names: dict[str, str] = {}


def operation_name(name: str) -> str:
    """The span name with ids taken out (``GET /orders/12345?x=1`` -> ``GET /orders/{id}``),
    so that operations named after their arguments still share one baseline. Returns the
    same object when nothing changes."""
    got = _names.get(name)
    if got is not None:
        return got
    base = name.split("?", 1)[0]
    if "/" in base:
        parts = base.split("/")
        base = "/".join("{id}" if _ID_SEGMENT.match(p) else p for p in parts)
    out = name if base == name else base
    if len(_names) < 100_000:
        _names[name] = out
    return out


def stage_of(span: SpanRecord) -> str | None:
    stage = span.attributes.get(semconv.OTEL_LLM_STAGE)
    if isinstance(stage, str) and stage:
        return stage
    name = span.name.lower()
    if name in _STAGE_NAMES:
        return name
    # "llm.decode", "gen_ai.prefill", "vllm prefill" ...
    for sep in (".", " ", "/", ":"):
        if sep in name:
            tail = name.rsplit(sep, 1)[1]
            if tail in _STAGE_NAMES:
                return tail
    return None


def _peer_of(span: SpanRecord) -> str | None:
    for key in _PEER_ATTRS:
        value = span.attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _tokens(span: SpanRecord, key: str, by_id: Mapping[str, SpanRecord]) -> float:
    cur: SpanRecord | None = span
    for _ in range(8):
        if cur is None:
            break
        value = cur.attributes.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        cur = by_id.get(cur.parent_id) if cur.parent_id else None
    return 0.0


def _failed_by_attributes(attrs: Mapping[str, Any]) -> bool:
    """Errors recorded the older ways: an ``error`` tag (Jaeger/OpenTracing) or a 5xx status."""
    if not attrs:
        return False
    if attrs.get("error") is True or attrs.get("error") == "true":
        return True
    for key in (semconv.HTTP_RESPONSE_STATUS_CODE, semconv.HTTP_STATUS_CODE):
        code = attrs.get(key)
        if code is not None:
            try:
                return int(code) >= 500
            except (TypeError, ValueError):
                return False
    return False


def _union_length(intervals: list[tuple[float, float]]) -> float:
    if not intervals:
        return 0.0
    intervals.sort()
    total, cur_s, cur_e = 0.0, intervals[0][0], intervals[0][1]
    for s, e in intervals[1:]:
        if s > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    return total + (cur_e - cur_s)


def _critical_children(start: float, end: float, children: Sequence[tuple[float, float, int]]) -> set[int]:
    """Indices of children on the critical path of a span: walk back from its end,
    taking the child that finished last before the cursor, then jumping to its start."""
    on: set[int] = set()
    cursor = end
    for c_start, c_end, idx in sorted(children, key=lambda c: c[1], reverse=True):
        if c_end <= cursor + _SKEW_TOLERANCE_S and c_end > start:
            on.add(idx)
            cursor = min(cursor, c_start)
            if cursor <= start:
                break
    return on


def summarize(spans: Sequence[SpanRecord], *, partial: bool = False) -> TraceSummary | None:
    """Reduce one trace's spans to a :class:`TraceSummary` (None for an empty trace)."""
    issues: dict[str, int] = {}

    def count(what: str, n: int = 1) -> None:
        issues[what] = issues.get(what, 0) + n

    by_id: dict[str, SpanRecord] = {}
    ordered: list[SpanRecord] = []
    for s in spans:
        if s.span_id in by_id:
            count("duplicate_span_id")
            continue
        name = operation_name(s.name)
        if s.end < s.start or name is not s.name:
            if s.end < s.start:
                count("negative_duration")
            s = SpanRecord(s.trace_id, s.span_id, s.parent_id, name, s.service, s.start, max(s.start, s.end),
                           s.kind, s.error, s.attributes, s.resource)
        by_id[s.span_id] = s
        ordered.append(s)
    if not ordered:
        return None

    children: dict[str, list[SpanRecord]] = {}
    roots: list[SpanRecord] = []
    for s in ordered:
        if s.parent_id and s.parent_id in by_id and s.parent_id != s.span_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            if s.parent_id:
                count("missing_parent")
            roots.append(s)
    # The trace's root: a span without parent, else the longest orphan.
    if not roots:  # every span has a parent inside the trace: a cycle; start from the earliest
        roots = [min(ordered, key=lambda r: r.start)]
        count("cycle")
    true_roots = [r for r in roots if not r.parent_id]
    root = min(true_roots, key=lambda r: r.start) if true_roots else max(roots, key=lambda r: r.duration)

    contributions: list[Contribution] = []
    gpus: dict[str, str] = {}
    failed: set[str] = {s.span_id for s in ordered if s.error or _failed_by_attributes(s.attributes)}
    errored_child: set[str] = {s.parent_id for s in ordered if s.span_id in failed and s.parent_id}
    on_path: dict[str, bool] = {r.span_id: r is root for r in roots}

    # Visit parents before children (iterative DFS from every root: cycles cannot loop).
    stack = list(reversed(roots))
    visited: set[str] = set()
    while stack:
        s = stack.pop()
        if s.span_id in visited:
            continue
        visited.add(s.span_id)
        uuids = s.attributes.get(semconv.OTEL_LLM_GPU_UUIDS)
        if uuids:
            for u in (uuids,) if isinstance(uuids, str) else uuids:
                gpus.setdefault(str(u), s.service)
        kids = children.get(s.span_id, ())
        mine = on_path.get(s.span_id, False)
        p_start, p_end = s.start, s.end
        self_time = p_end - p_start
        if kids:
            clipped: list[tuple[float, float, int]] = []
            for i, c in enumerate(kids):
                cs, ce = c.start, c.end
                if cs < p_start - _SKEW_TOLERANCE_S or ce > p_end + _SKEW_TOLERANCE_S:
                    count("clock_skew")
                if cs < p_start:
                    cs = p_start
                if ce > p_end:
                    ce = p_end
                if ce > cs:
                    clipped.append((cs, ce, i))
            critical = _critical_children(p_start, p_end, clipped) if clipped else set()
            for i, c in enumerate(kids):
                on_path[c.span_id] = mine and (i in critical or not clipped)
                stack.append(c)
            if clipped:
                self_time -= _union_length([(a, b) for a, b, _ in clipped])
                if self_time < 0.0:
                    self_time = 0.0
        origin = s.span_id in failed and s.span_id not in errored_child
        _attribute(s, kids, self_time, mine, origin, by_id, contributions)

    for s in ordered:  # spans only reachable through a cycle
        if s.span_id not in visited:
            count("cycle")
    return TraceSummary(
        trace_id=root.trace_id,
        start=min([s.start for s in ordered]),
        end=max([s.end for s in ordered]),
        root_service=root.service,
        root_operation=root.name,
        error=root.error,
        contributions=contributions,
        gpu_uuids=gpus,
        span_count=len(ordered),
        partial=partial or root is not None and bool(root.parent_id),
        issues=issues,
    )


def _attribute(
    s: SpanRecord,
    kids: Sequence[SpanRecord],
    self_time: float,
    on_cp: bool,
    origin: bool,
    by_id: Mapping[str, SpanRecord],
    out: list[Contribution],
) -> None:
    attrs: Mapping[str, Any] = s.attributes
    # A span of unknown kind whose only child runs in another service is a call
    # (traces converted from older formats often carry no span kinds).
    is_client = s.kind in (KIND_CLIENT, KIND_PRODUCER) or (
        s.kind == KIND_INTERNAL and len(kids) == 1 and kids[0].service != s.service)
    if is_client:
        server_kids = [k for k in kids if k.kind == KIND_SERVER or k.service != s.service]
        if server_kids:
            callee = server_kids[0]
            # The wait not covered by the callee's own span belongs to the callee
            # (its network, its accept queue); a failed call whose callee span did
            # not fail failed in between, on the callee's side too.
            cause_err = origin and not any(k.error for k in server_kids)
            out.append(Contribution((NETWORK, callee.service, callee.name), self_time, 1.0, on_cp,
                                    cause_err, s.span_id, (s.service, s.name)))
            return
        if not kids:
            peer = _peer_of(s)
            component = (DOWNSTREAM, peer, s.name) if peer else (DOWNSTREAM, s.service, s.name)
            out.append(Contribution(component, self_time, 1.0, on_cp, origin, s.span_id, (s.service, s.name)))
            return
    elif not kids and s.kind == KIND_INTERNAL:
        peer = _peer_of(s)  # a leaf naming a database / peer service is a call, whatever its kind
        if peer:
            out.append(Contribution((DOWNSTREAM, peer, s.name), self_time, 1.0, on_cp, origin, s.span_id,
                                    (s.service, s.name)))
            return
    stage = stage_of(s)
    if stage is not None:
        scale = 1.0
        if stage == semconv.STAGE_PREFILL:
            scale = _tokens(s, semconv.GEN_AI_USAGE_INPUT_TOKENS, by_id) or 1.0
        elif stage == semconv.STAGE_DECODE:
            scale = _tokens(s, semconv.GEN_AI_USAGE_OUTPUT_TOKENS, by_id) or 1.0
        out.append(Contribution((STAGE, s.service, stage), self_time / scale, scale, on_cp, origin, s.span_id))
        return
    if not kids:
        # Stage durations recorded as attributes on a server span: virtual components.
        for key, stage_name in _STAGE_ATTRS:
            value = attrs.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                value = min(float(value), self_time)
                self_time -= value
                scale = 1.0
                if stage_name == semconv.STAGE_PREFILL:
                    scale = _tokens(s, semconv.GEN_AI_USAGE_INPUT_TOKENS, by_id) or 1.0
                elif stage_name == semconv.STAGE_DECODE:
                    scale = _tokens(s, semconv.GEN_AI_USAGE_OUTPUT_TOKENS, by_id) or 1.0
                out.append(Contribution((STAGE, s.service, stage_name), value / scale, scale, on_cp,
                                        False, s.span_id))
    out.append(Contribution((OPERATION, s.service, s.name), self_time, 1.0, on_cp, origin, s.span_id))
