"""Labelled synthetic microservice traces with injected faults (a test double
shipped as product code: tests, ``benchmarks/analyze.py`` and dev RCA cases).

A seeded random call graph (a DAG of services and operations, sequential and
parallel calls, uninstrumented downstreams such as databases, an LLM server
with queue / prefill / decode stage spans carrying token counts and GPU UUIDs)
produces normal traffic; one fault is injected during ``[fault_start,
fault_end]``:

* ``latency`` -- one service's operation(s) get slower (self time x factor);
* ``error`` -- one service's operation fails often (errors propagate up);
* ``network`` -- calls *to* one service wait longer (client/server gap);
* ``downstream`` -- an uninstrumented dependency (DB, vector store) is slow;
* ``gpu`` -- the LLM server's GPU throttles: decode per token gets slower;
* ``egress`` -- packets *leaving* one service are delayed: its responses and its own
  outgoing calls wait longer (seen as waits on both sides of it).

Confounders are added on purpose: prompts in the window are longer (prefill
grows per token count, not per token) and random single-span hiccups occur
everywhere.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from otel_llm.processors._spans import KIND_CLIENT, KIND_INTERNAL, KIND_SERVER, SpanRecord

from otel_llm import semconv

FAULTS = ("latency", "error", "network", "downstream", "gpu", "egress")
LLM_SERVICE = "llm-server"


@dataclass
class _Op:
    service: str
    name: str
    self_ms: float
    calls: list[tuple[str, int]] = field(default_factory=list)  # (service, op index)
    downstream: list[tuple[str, str, float]] = field(default_factory=list)  # (peer, span name, ms)
    parallel: bool = False


@dataclass
class SyntheticCase:
    id: str
    spans: list[SpanRecord]
    fault_start: float
    fault_end: float
    root_cause: dict[str, str]
    fault: str


class _Topology:
    def __init__(self, rng: random.Random, n_services: int) -> None:
        self.rng = rng
        names = ["frontend", "gateway", "auth", "cart", "catalog", "search", "retrieval", "pricing",
                 "user", "orders", "payment", "shipping", "recommend", "inventory", "profile", "notify"]
        rng.shuffle(names)
        self.services = ["frontend"] + [f"{n}-svc" for n in names if n != "frontend"][: n_services - 1]
        self.ops: dict[str, list[_Op]] = {}
        self.gpu = "GPU-" + f"{rng.getrandbits(32):08x}" + "-0000-4000-8000-000000000000"
        for si, svc in enumerate(self.services):
            ops = []
            for oi in range(rng.randint(1, 3)):
                verb = rng.choice(["GET", "POST"])
                ops.append(_Op(svc, f"{verb} /{svc.split('-')[0]}/op{oi}", rng.uniform(1, 15)))
            self.ops[svc] = ops
            later = self.services[si + 1:]
            for op in ops:
                for callee in rng.sample(later, k=min(len(later), rng.randint(0, 3))):
                    op.calls.append((callee, rng.randrange(6)))
                op.parallel = rng.random() < 0.3
                if rng.random() < 0.3:
                    peer = rng.choice(["postgres", "redis", "vector-db", "mongodb"])
                    op.downstream.append((peer, f"{peer} query", rng.uniform(0.5, 8)))
        # Fix up call indexes now that every service has its ops.
        for ops in self.ops.values():
            for op in ops:
                op.calls = [(c, i % len(self.ops[c])) for c, i in op.calls]
        # The LLM server, called by a mid-graph service.
        self.ops[LLM_SERVICE] = [_Op(LLM_SERVICE, "chat tiny", 0.5)]
        caller = self.ops[rng.choice(self.services[: max(2, len(self.services) // 2)])][0]
        caller.calls.append((LLM_SERVICE, 0))
        self.all_services = self.services + [LLM_SERVICE]
        # Every operation reachable from the front end: an unreachable one gets a caller.
        for svc in self.all_services[1:]:
            for oi in range(len(self.ops[svc])):
                if (svc, oi) not in self._reachable():
                    earlier = [s for s in self.services[: max(1, self.services.index(svc) if svc in self.services
                                                              else len(self.services))]]
                    reach = sorted((s, i) for s, i in self._reachable() if s in earlier)
                    s_, i_ = rng.choice(reach)
                    self.ops[s_][i_].calls.append((svc, oi))

    def _reachable(self) -> set[tuple[str, int]]:
        seen: set[tuple[str, int]] = set()
        stack = [("frontend", i) for i in range(len(self.ops["frontend"]))]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(self.ops[node[0]][node[1]].calls)
        return seen


class _Gen:
    def __init__(self, topo: _Topology, rng: random.Random, fault: str | None, target: str | None,
                 target_op: str | None, factor: float, long_prompts: bool) -> None:
        self.t, self.rng, self.fault, self.target, self.target_op = topo, rng, fault, target, target_op
        self.factor, self.long_prompts = factor, long_prompts
        self.coverage = 1.0  # share of calls the fault hits
        self.load = 1.0  # every self time x load (busier window: a confounder)
        self.spans: list[SpanRecord] = []
        self.trace_id = ""
        self.n = 0

    def _sid(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def _add(self, *args, **kw) -> None:
        self.spans.append(SpanRecord(self.trace_id, *args, **kw))

    def _hit(self, svc: str, op: str) -> bool:
        return (self.fault is not None and svc == self.target and (self.target_op is None or op == self.target_op)
                and self.rng.random() < self.coverage)

    def trace(self, start: float) -> None:
        self.trace_id = f"{self.rng.getrandbits(128):032x}"
        root = self.t.ops["frontend"][self.rng.randrange(len(self.t.ops["frontend"]))]
        self._server(root, None, start)

    def _noise(self, ms: float) -> float:
        v = ms * self.rng.lognormvariate(0, 0.3) * self.load
        if self.rng.random() < 0.01:  # hiccups everywhere, not only at the fault
            v *= self.rng.uniform(3, 8)
        return v / 1000

    def _server(self, op: _Op, parent: str | None, start: float) -> tuple[float, bool]:
        sid = self._sid()
        if op.service == LLM_SERVICE:
            return self._llm(op, sid, parent, start)
        hit = self._hit(op.service, op.name)
        self_s = self._noise(op.self_ms)
        if hit and self.fault == "latency":
            self_s *= self.factor
        t = start + self_s / 2
        failed = hit and self.fault == "error"
        child_err = False
        ends = []
        for callee, idx in op.calls:
            end, err = self._client(op.service, callee, self.t.ops[callee][idx], sid, t)
            child_err |= err
            if op.parallel:
                ends.append(end)
            else:
                t = end
        for peer, name, ms in op.downstream:
            d = self._noise(ms)
            if self.fault == "downstream" and peer == self.target and self.rng.random() < self.coverage:
                d *= self.factor
            self._add(self._sid(), sid, name, op.service, t, t + d, kind=KIND_CLIENT,
                      attributes={semconv.DB_SYSTEM_NAME: peer, semconv.PEER_SERVICE: peer})
            if op.parallel:
                ends.append(t + d)
            else:
                t += d
        if ends:
            t = max([t, *ends])
        end = t + self_s / 2
        error = failed or (child_err and self.rng.random() < 0.9)
        self._add(sid, parent, op.name, op.service, start, end, kind=KIND_SERVER, error=error)
        return end, error

    def _client(self, svc: str, callee: str, op: _Op, parent: str, start: float) -> tuple[float, bool]:
        cid = self._sid()
        net = self._noise(0.8)
        if self.fault == "network" and callee == self.target and self.rng.random() < self.coverage:
            net += self.factor * 0.004 * self.rng.uniform(0.5, 1.5)
        if self.fault == "egress" and self.target in (svc, callee) and self.rng.random() < self.coverage:
            net += self.factor * 0.002 * self.rng.uniform(0.5, 1.5)
        end, err = self._server(op, cid, start + net / 2)
        end += net / 2
        self._add(cid, parent, f"{callee} {op.name}", svc, start, end, kind=KIND_CLIENT, error=err)
        return end, err

    def _llm(self, op: _Op, sid: str, parent: str | None, start: float) -> tuple[float, bool]:
        rng = self.rng
        n_in = int(rng.lognormvariate(5.0, 0.6)) + 1
        if self.long_prompts and rng.random() < 0.5:
            n_in *= 8
        n_out = rng.randint(16, 128)
        attrs = {semconv.GEN_AI_USAGE_INPUT_TOKENS: n_in, semconv.GEN_AI_USAGE_OUTPUT_TOKENS: n_out,
                 semconv.GEN_AI_REQUEST_MODEL: "tiny", semconv.GEN_AI_OPERATION_NAME: "chat",
                 semconv.OTEL_LLM_GPU_UUIDS: (self.t.gpu,)}
        t = start + self._noise(0.3)
        queue = self._noise(2.0)
        prefill = n_in * self._noise(0.02)
        decode = n_out * self._noise(0.5)
        if self.fault == "gpu" and self.rng.random() < self.coverage:
            decode *= self.factor
        for stage, d in (("queue", queue), ("prefill", prefill), ("decode", decode)):
            self._add(self._sid(), sid, f"llm.{stage}", LLM_SERVICE, t, t + d, kind=KIND_INTERNAL,
                      attributes={semconv.OTEL_LLM_STAGE: stage})
            t += d
        end = t + self._noise(0.2)
        self._add(sid, parent, op.name, LLM_SERVICE, start, end, kind=KIND_SERVER, attributes=attrs)
        return end, False


def generate_case(
    seed: int,
    fault: str | None = None,
    *,
    n_services: int = 8,
    traces: int = 600,
    rate_per_s: float = 10.0,
    fault_fraction: float = 0.3,
    factor: float | None = None,
    start: float = 1_700_000_000.0,
) -> SyntheticCase:
    """One labelled case: normal traffic, then ``fault`` for ``fault_fraction`` of
    the traffic (sometimes followed by recovered normal traffic)."""
    rng = random.Random(seed)
    topo = _Topology(rng, n_services)
    fault = fault or FAULTS[seed % len(FAULTS)]
    target_op = None
    if fault == "gpu":
        target, label = LLM_SERVICE, {"service": LLM_SERVICE}
    elif fault == "downstream":
        peers = sorted({p for ops in topo.ops.values() for o in ops for p, _, _ in o.downstream})
        if not peers:
            fault = "latency"
        else:
            target = rng.choice(peers)
            label = {"service": target}
    if fault in ("latency", "error", "network", "egress"):
        choices = topo.services[1:]
        if fault == "egress":  # a service that calls others, or the fault is just "network"
            choices = [s for s in choices if any(op.calls for op in topo.ops[s])] or choices
        target = rng.choice(choices)
        if fault in ("latency", "error") and rng.random() < 0.5:
            target_op = rng.choice(topo.ops[target]).name
        label = {"service": target}
        if target_op:
            label["operation"] = target_op
    factor = factor or {"latency": rng.uniform(2, 6), "error": 1.0, "network": rng.uniform(2, 8),
                        "downstream": rng.uniform(2, 6), "gpu": rng.uniform(1.6, 3),
                        "egress": rng.uniform(2, 8)}[fault]
    coverage = rng.uniform(0.4, 1.0)
    load = rng.uniform(1.0, 1.4)
    n_fault = int(traces * fault_fraction)
    n_before = traces - n_fault - (n_fault // 2 if rng.random() < 0.3 else 0)
    spans: list[SpanRecord] = []
    t = start
    fault_start = fault_end = 0.0
    for i in range(traces):
        in_fault = n_before <= i < n_before + n_fault
        if i == n_before:
            fault_start = t
        gen = _Gen(topo, rng, fault if in_fault else None, target, target_op, factor, long_prompts=in_fault)
        if in_fault:
            gen.coverage, gen.load = coverage, load
        gen.trace(t)
        spans.extend(gen.spans)
        t += rng.expovariate(rate_per_s)
        if i == n_before + n_fault - 1:
            fault_end = t
    return SyntheticCase(f"synthetic-{fault}-{seed}", spans, fault_start, fault_end, label, fault)
