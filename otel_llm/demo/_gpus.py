"""The demo's GPUs: the collectors' simulator, its OTel metrics, its state tracker.

:class:`DemoGpus` is the one object the demo's LLM server, fault controller and
pipeline share. It wraps :class:`otel_llm.collectors.SimulatedGpus` (N H100s
whose utilisation follows the requests they serve) and
:class:`otel_llm.collectors.GpuMetrics` (``hw.*`` / ``otel_llm.gpu.*`` metrics,
the :class:`GpuTracker` that turns vanished series into ``lost`` events, XID
changes into ``xid`` events and throttle reasons into ``throttle_*`` events).

Demo fault kinds map onto simulator faults: ``gpu_throttle`` -> ``thermal``
(the cooling fails: temperature climbs past slowdown, the SM clock drops, decode
slows by max/current clock), ``gpu_xid`` -> ``xid<code>`` (79: the GPU falls off
the bus, its series vanish and requests must go elsewhere).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from otel_llm.collectors._model import GpuSample
from otel_llm.demo._faults import KIND_GPU_THROTTLE, KIND_GPU_XID, Fault

# DCGM field ids used by the demo's views (numeric ids are stable across DCGM renames).
F_SM_CLOCK = 100
F_THROTTLE_REASONS = 112
F_GPU_TEMP = 150
F_POWER = 155
F_GPU_UTIL = 203
F_XID = 230
PREROLL_S = 180.0


class DemoGpus:
    """Shared GPU state for one demo run (thread-safe)."""

    def __init__(self, n: int = 2, *, seed: int = 0, model: str = "H100", meter_provider: Any = None,
                 baseline_util: float = 0.35) -> None:
        from otel_llm.collectors import GpuStateStore, SimulatedGpus
        from otel_llm.collectors._metrics import GpuMetrics

        if n < 1:
            raise ValueError("the demo needs at least one GPU")
        self._lock = threading.Lock()
        # Pre-roll: the simulator is born PREROLL_S in the past, so its first read integrates that much
        # physics at the baseline load and the GPUs start warm (a server that has been up a while),
        # instead of heating up from idle during the demo's warm-up.
        self._skew = -PREROLL_S
        self._sim_t0 = time.time() + self._skew
        self.sim = SimulatedGpus(count=n, model=model, seed=seed, host="demo-node-0", clock=self._clock)
        self._skew = 0.0
        for i in range(n):  # a serving GPU keeps a resident baseline (weights, KV cache, batching)
            self.sim.set_load(i, baseline_util)
        self.store = GpuStateStore()
        self._events: list[Any] = []
        self.metrics = GpuMetrics(self.sim, meter_provider=meter_provider, interval_s=1.0, store=self.store,
                                  listeners=[self._on_poll])
        self.uuids: list[str] = list(self.sim.uuids)
        self._index = {u: i for i, u in enumerate(self.uuids)}
        self.component = f"otel_llm.collectors.SimulatedGpus ({n} x {self.sim.spec.name}) + GpuMetrics/GpuTracker"

    def _clock(self) -> float:
        return time.time() + self._skew

    def schedule(self, faults: Sequence[Fault], t0_wall: float) -> None:
        """Hand the GPU faults to the simulator, timed from ``t0_wall`` (the demo's start)."""
        from otel_llm.collectors import Fault as SimFault

        offset = t0_wall - self._sim_t0
        out = []
        for f in faults:
            if f.kind == KIND_GPU_THROTTLE:
                kind = "thermal"
            elif f.kind == KIND_GPU_XID:
                kind = f"xid{int(f.params.get('xid', 79))}"
            else:
                continue
            out.append(SimFault(kind=kind, gpu=int(f.params["gpu"]), start_s=max(0.0, offset + f.start),
                                duration_s=f.duration))
        self.sim.faults = out

    def index(self, uuid: str) -> int:
        return self._index[uuid]

    def slowdown_factor(self, uuid: str) -> float:
        f = self.sim.slowdown_factor(self._index[uuid])
        return f if math.isfinite(f) else 1.0

    def is_lost(self, uuid: str) -> bool:
        return self.sim.is_lost(self._index[uuid])

    def add_busy(self, uuid: str, seconds: float) -> None:
        """The server reports GPU-busy time; the simulator's utilisation follows it."""
        self.sim.observe_request(self._index[uuid], seconds)

    def _on_poll(self, samples: list[GpuSample], events: list[Any]) -> None:
        self._events.extend(events)

    def poll(self) -> tuple[list[GpuSample], list[Any]]:
        """One poll: samples of the GPUs still present, and the events it revealed."""
        with self._lock:
            samples = self.metrics.poll()
            events, self._events = self._events, []
        return samples, events

    def close(self) -> None:
        self.sim.close()
