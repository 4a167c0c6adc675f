"""The demo's GPUs: which exist, how fast each decodes now, which are lost, their samples.

:class:`DemoGpus` is the one object the demo's server, fault controller and
pipeline share. It drives the GPU simulator of ``otel_llm.collectors`` when that
is available; otherwise a small built-in stand-in (:class:`_MiniSim`, clearly a
fallback) produces DCGM-field samples with the same fault signatures
(throttling: SM clock down, temperature up, throttle reason set; XID 79: the
GPU's samples stop).
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from otel_llm.collectors._model import GpuSample

# DCGM field ids (numeric ids are stable across DCGM renames).
F_SM_CLOCK = 100
F_MEM_CLOCK = 101
F_THROTTLE_REASONS = 112
F_GPU_TEMP = 150
F_POWER = 155
F_GPU_UTIL = 203
F_FB_USED = 252
F_XID = 230
F_SM_ACTIVE = 1002
THROTTLE_HW_THERMAL = 0x40  # DCGM_CLOCKS_EVENT_REASON_HW_THERMAL_SLOWDOWN


class _MiniSim:
    """FALLBACK GPU simulator (only when otel_llm.collectors has none)."""

    name = "demo-mini-sim"

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.uuids = [f"GPU-{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-{rng.getrandbits(16):04x}-"
                      f"{rng.getrandbits(16):04x}-{rng.getrandbits(48):012x}" for _ in range(n)]
        self._rng = rng
        self.throttle = [1.0] * n
        self.lost = [False] * n
        self.xid = [0] * n
        self.busy = [0.0] * n
        self.temp = [45.0] * n

    def collect(self) -> list[GpuSample]:
        now = time.time()
        out = []
        for i, u in enumerate(self.uuids):
            if self.lost[i]:
                continue
            throttled = self.throttle[i] > 1.0
            util = min(1.0, self.busy[i])
            target = 88.0 if throttled else 42.0 + 25.0 * util
            self.temp[i] += (target - self.temp[i]) * 0.3
            fields = {
                F_GPU_UTIL: round(100 * util + self._rng.uniform(-2, 2), 1),
                F_SM_ACTIVE: max(0.0, min(1.0, 0.8 * util + self._rng.uniform(-0.02, 0.02))),
                F_GPU_TEMP: round(self.temp[i] + self._rng.uniform(-0.5, 0.5), 1),
                F_POWER: round(70 + 250 * util * (0.6 if throttled else 1.0) + self._rng.uniform(-3, 3), 1),
                F_SM_CLOCK: 1980.0 / self.throttle[i],
                F_MEM_CLOCK: 2619.0,
                F_THROTTLE_REASONS: float(THROTTLE_HW_THERMAL if throttled else 0),
                F_FB_USED: 20_000 + 30_000 * util,
                F_XID: float(self.xid[i]),
            }
            out.append(GpuSample(u, now, fields, index=i, model="NVIDIA H100 80GB HBM3 (simulated)",
                                 host="demo-host"))
        return out

    def close(self) -> None:
        return None


class DemoGpus:
    """Shared GPU state for one demo run (thread-safe)."""

    def __init__(self, n: int = 2, *, seed: int = 0, backend: Any = None) -> None:
        if n < 1:
            raise ValueError("the demo needs at least one GPU")
        self._lock = threading.Lock()
        self.backend = backend or _MiniSim(n, seed)
        self.fallback = backend is None
        self.uuids: list[str] = list(self.backend.uuids)
        self._busy_time = [0.0] * n
        self._last = time.monotonic()

    def index(self, uuid: str) -> int:
        return self.uuids.index(uuid)

    def slowdown_factor(self, uuid: str) -> float:
        return float(self.backend.throttle[self.index(uuid)])

    def is_lost(self, uuid: str) -> bool:
        return bool(self.backend.lost[self.index(uuid)])

    def set_throttle(self, index: int, factor: float) -> None:
        with self._lock:
            self.backend.throttle[index] = factor

    def set_lost(self, index: int, lost: bool, xid: int = 79) -> None:
        with self._lock:
            self.backend.lost[index] = lost
            if lost:
                self.backend.xid[index] = xid

    def add_busy(self, uuid: str, seconds: float) -> None:
        """The server reports GPU-busy time; utilisation follows the load."""
        with self._lock:
            self._busy_time[self.index(uuid)] += seconds

    def collect(self) -> list[GpuSample]:
        with self._lock:
            now = time.monotonic()
            dt = max(1e-3, now - self._last)
            self._last = now
            for i, b in enumerate(self._busy_time):
                self.backend.busy[i] = 0.5 * self.backend.busy[i] + 0.5 * min(1.0, b / dt)
                self._busy_time[i] = 0.0
            return self.backend.collect()

    def close(self) -> None:
        self.backend.close()
