"""Orchestrates one demo run: services up, workload replayed, faults injected, pipeline ticked.

Everything runs in this process on loopback: the LLM server, the retrieval
service and the gateway each on their own uvicorn thread and tracer provider;
the load generator on the main asyncio loop; the analysis pipeline on a worker
thread once per tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_llm.demo._faults import KIND_BURST, KIND_SLOW_DEPENDENCY, Fault
from otel_llm.demo._gpus import DemoGpus
from otel_llm.demo._series import Point, SeriesAggregator, gpu_points
from otel_llm.demo._telemetry import (
    SERVICE_GATEWAY,
    SERVICE_LLM,
    SERVICE_RETRIEVAL,
    ServiceTelemetry,
    SpanSink,
)
from otel_llm.demo._workload import (
    ReplayStats,
    RequestResult,
    WorkloadRequest,
    WorkloadSpec,
    openai_sender,
    plan_workload,
    read_trace,
    replay,
)

_logger = logging.getLogger("otel_llm.demo")

GPU_DECODE_S_PER_TOKEN = 0.004
"""Simulated accelerator time per decode step on a healthy GPU (times the GPU's slowdown factor)."""
GPU_PREFILL_S = 0.008
"""Simulated prefill time on a healthy GPU."""


class _OnGpu:
    """ASGI wrapper: requests served by this replica are stamped with its GPU (``otel_llm.gpu.uuids``)."""

    def __init__(self, app: Any, uuid: str) -> None:
        self.app = app
        self.uuid = uuid
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from otel_llm._gpu import use_gpus

        with use_gpus([self.uuid]):
            await self.app(scope, receive, send)


@dataclass
class DemoConfig:
    duration_s: float = 180.0
    workload: Path | None = None
    speedup: float = 4.0
    max_rate: float | None = 3.0
    faults: list[Fault] = field(default_factory=list)
    n_gpus: int = 2
    gpu: str = "sim"
    alertmanager_url: str | None = None
    grafana_url: str | None = None
    otlp_endpoint: str | None = None
    report_dir: Path = Path("report")
    with_backends: bool = False
    seed: int = 0
    concurrency: int = 64
    """Client-side cap on requests in flight (users are many: keep it above what the server can take)."""
    tick_s: float = 1.0
    window_s: float = 2.0
    server_workers: int = 2
    """Generation threads per replica (concurrent sequences a GPU serves)."""
    server_max_queue: int = 64
    """Waiting requests per replica before it answers 429 (the burst fault fills it)."""
    min_history: int = 20
    """Points of a series before its band is fitted (the detectors' warm-up)."""

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"--duration must be > 0 seconds, got {self.duration_s}")
        if self.gpu not in ("sim", "auto"):
            raise ValueError(f"--gpu must be 'sim' or 'auto', got {self.gpu!r}")


@dataclass
class TickState:
    """What the live view shows after each tick."""

    t: float
    points: list[Point]
    gpu_state: dict[str, dict[str, Any]]
    active_faults: list[Fault]
    replay: ReplayStats


def apply_bursts(plan: list[WorkloadRequest], faults: list[Fault], seed: int) -> list[WorkloadRequest]:
    """Add ``multiplier - 1`` extra arrivals per planned arrival inside each burst window."""
    import random

    rng = random.Random(seed + 17)
    extra: list[WorkloadRequest] = []
    for f in faults:
        if f.kind != KIND_BURST:
            continue
        mult = float(f.params.get("multiplier", 5.0))
        inside = [r for r in plan if f.start <= r.at < f.end]
        for r in inside:
            copies = int(mult - 1) + (1 if rng.random() < (mult - 1) % 1 else 0)
            for _ in range(copies):
                at = min(f.end - 1e-3, r.at + rng.uniform(0, 0.5))
                extra.append(WorkloadRequest(at, r.prompt_tokens, r.max_tokens, r.retrieval,
                                             r.source_context_tokens, r.source_generated_tokens, 0))
    merged = sorted([*plan, *extra], key=lambda r: r.at)
    return [WorkloadRequest(r.at, r.prompt_tokens, r.max_tokens, r.retrieval, r.source_context_tokens,
                            r.source_generated_tokens, i) for i, r in enumerate(merged)]


class DemoRun:
    """One run. ``run()`` blocks for about ``duration_s`` and returns the collected material."""

    def __init__(self, cfg: DemoConfig, *, pipeline: Any = None,
                 on_tick: Callable[[TickState], None] | None = None) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.on_tick = on_tick
        self.sink = SpanSink()
        self.telemetry = {
            name: ServiceTelemetry(name, self.sink, otlp_endpoint=cfg.otlp_endpoint)
            for name in (SERVICE_GATEWAY, SERVICE_RETRIEVAL, SERVICE_LLM)
        }
        self.gpus = DemoGpus(cfg.n_gpus, seed=cfg.seed,
                             meter_provider=self.telemetry[SERVICE_LLM].meter_provider)
        self.aggregator = SeriesAggregator(window_s=cfg.window_s, replicas=self.gpus.uuids)
        self.points: list[Point] = []
        self.gpu_timeline: list[tuple[float, dict[str, dict[str, Any]]]] = []
        self.stats = ReplayStats()
        self.t0_wall = 0.0
        self.server_kind = ""
        self._handles: list[Any] = []
        self._closers: list[Callable[[], Any]] = []
        self.on_services: Callable[[], Any] | None = None
        """Called once the services are up (the demo starts Prometheus against them here)."""

    # ------------------------------------------------------------------ services
    def _start_services(self) -> None:
        """One reference-server replica per simulated GPU, the retrieval service, the gateway in front."""
        from otel_llm.demo._services import Gateway, RetrievalService
        from otel_llm.models import TINY_MODEL_NAME, build_tiny_model
        from otel_llm.server import SlowdownController, create_app, run_in_thread

        llm_tel = self.telemetry[SERVICE_LLM]
        model, tokenizer = build_tiny_model(seed=self.cfg.seed)
        self.model_name = TINY_MODEL_NAME
        backends: list[tuple[str, str]] = []
        self.controllers: dict[str, Any] = {}
        for i, uuid in enumerate(self.gpus.uuids):
            ctl = SlowdownController(seed=self.cfg.seed + i)
            app = create_app(model, tokenizer, model_name=TINY_MODEL_NAME, faults=ctl, seed=self.cfg.seed + i,
                             tracer_provider=llm_tel.tracer_provider, meter_provider=llm_tel.meter_provider,
                             torch_threads=1, max_queue=self.cfg.server_max_queue,
                             workers=self.cfg.server_workers)
            handle = run_in_thread(_OnGpu(app, uuid))
            self._handles.append(handle)
            self.controllers[uuid] = ctl
            backends.append((handle.url, uuid))
        self._apply_gpu_physics()
        self.server_kind = (f"otel_llm.server reference server x{len(backends)} (one replica per simulated GPU, "
                            "OpenAI-server middleware instrumented)")
        self.retrieval = RetrievalService(self.telemetry[SERVICE_RETRIEVAL].tracer_provider, seed=self.cfg.seed)
        ret = run_in_thread(self.retrieval.app())
        self._handles.append(ret)
        self.gateway = Gateway(self.telemetry[SERVICE_GATEWAY].tracer_provider, llm_backends=backends,
                               retrieval_url=ret.url, healthy=lambda uuid: not self.gpus.is_lost(uuid))
        gw = run_in_thread(self.gateway.app())
        self._handles.append(gw)
        self.gateway_url = gw.url

    def _apply_gpu_physics(self) -> None:
        """Each replica's decode/prefill cost follows its simulated GPU (slowdown factor); a lost GPU fails."""
        for uuid, ctl in self.controllers.items():
            lost = self.gpus.is_lost(uuid)
            factor = self.gpus.slowdown_factor(uuid)
            ctl.set(decode_delay_per_token_s=GPU_DECODE_S_PER_TOKEN * factor,
                    prefill_delay_s=GPU_PREFILL_S * factor, fail_rate=1.0 if lost else 0.0)

    def _stop_services(self) -> None:
        for h in reversed(self._handles):
            try:
                h.stop()
            except Exception:  # pragma: no cover - best effort at shutdown
                _logger.debug("stopping a demo service failed", exc_info=True)
        for c in self._closers:
            try:
                c()
            except Exception:  # pragma: no cover
                _logger.debug("closing failed", exc_info=True)

    # ------------------------------------------------------------------ faults
    def _apply_faults(self, t: float) -> list[Fault]:
        """Faults active at ``t``. GPU faults run inside the simulator, the dependency's slowdown inside the
        retrieval service, bursts in the replay plan: all scheduled at the start, exactly timed."""
        return [f for f in self.cfg.faults if f.active(t)]

    # ------------------------------------------------------------------ main loop
    def build_plan(self) -> list[WorkloadRequest]:
        from otel_llm.workloads import default_workload_path

        rows = read_trace(self.cfg.workload or default_workload_path())
        spec = WorkloadSpec(speedup=self.cfg.speedup, max_rate=self.cfg.max_rate, seed=self.cfg.seed)
        return apply_bursts(plan_workload(rows, spec, self.cfg.duration_s), self.cfg.faults, self.cfg.seed)

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.cfg.tick_s)
            except asyncio.TimeoutError:
                pass
            await asyncio.to_thread(self._tick, final=stop.is_set())

    def _tick(self, final: bool = False) -> None:
        now = time.time()
        t = now - self.t0_wall
        active = self._apply_faults(t) if not final else []
        if not final:
            self._apply_gpu_physics()
        spans = self.sink.drain()
        for sp in spans:  # the simulator's utilisation follows the work each GPU did
            if sp.service == SERVICE_LLM and sp.kind == "server":
                gpus = sp.attributes.get("otel_llm.gpu.uuids") or ()
                queue = sp.attributes.get("otel_llm.queue.duration") or 0.0
                for g in gpus:
                    if g in self.controllers:
                        self.gpus.add_busy(g, max(0.0, sp.duration - float(queue)))
        self.aggregator.add_spans(spans)
        samples, events = self.gpus.poll()
        points = self.aggregator.flush(now, final=final) + gpu_points(samples)
        self.points.extend(points)
        gpu_state = {}
        seen = {s.uuid: s for s in samples}
        for i, u in enumerate(self.gpus.uuids):
            s = seen.get(u)
            gpu_state[u] = {"index": i, "lost": s is None, "fields": dict(s.fields) if s else {},
                            "slowdown": self.gpus.slowdown_factor(u)}
        self.gpu_timeline.append((now, gpu_state))
        if self.pipeline is not None:
            try:
                self.pipeline.tick(now, spans=spans, points=points, samples=samples, gpu_events=events)
            except Exception as exc:
                from otel_llm._selftelemetry import report_error

                report_error("demo.pipeline", exc)
        if self.on_tick is not None:
            self.on_tick(TickState(t, points, gpu_state, active, self.stats))

    async def _main(self) -> None:
        import httpx

        plan = self.build_plan()
        self.plan = plan
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=self.cfg.concurrency * 2,
                              max_keepalive_connections=self.cfg.concurrency)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            send = openai_sender(client, self.gateway_url, self.model_name, seed=self.cfg.seed)
            self.t0_wall = time.time()
            self.gpus.schedule(self.cfg.faults, self.t0_wall)
            slow = [f for f in self.cfg.faults if f.kind == KIND_SLOW_DEPENDENCY]
            t0 = self.t0_wall
            self.retrieval.slowdown_at = lambda now: max(
                [float(f.params["factor"]) for f in slow if f.active(now - t0)], default=1.0)
            ticker = asyncio.create_task(self._ticker(stop))

            async def stop_at_deadline() -> None:
                await asyncio.sleep(self.cfg.duration_s)
                stop.set()

            deadline = asyncio.create_task(stop_at_deadline())
            await replay(plan, send, concurrency=self.cfg.concurrency, stop=stop, stats=self.stats,
                         on_result=self._on_result)
            stop.set()
            deadline.cancel()
            await ticker
        await self.gateway.aclose()

    def _on_result(self, result: RequestResult) -> None:
        return None

    def run(self) -> DemoRun:
        self._start_services()
        if self.on_services is not None:
            self.on_services()
        try:
            asyncio.run(self._main())
        finally:
            self._stop_services()
            time.sleep(0.05)
            self._tick(final=True)
        return self
