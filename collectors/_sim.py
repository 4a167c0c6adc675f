"""A faithful GPU simulator: N GPUs of one model, driven by LLM load, with scheduled faults.

It is a :class:`Collector` (``collect()`` gives :class:`GpuSample` s keyed by
numeric DCGM field id, emitting only fields the model supports) and it prints
dcgm-exporter text (:meth:`SimulatedGpus.to_exposition`, served over HTTP by
:meth:`SimulatedGpus.serve`) so the real ``dcgm-exporter`` source can scrape it.

Load: ``set_load(i, utilization, memory_used_bytes)`` or
``observe_request(i, duration_s)`` (busy time over a sliding window).
Time: an injectable ``clock`` (the demo runs compressed time); noise is seeded;
temperature follows power with a first-order lag (``thermal_time_constant_s``,
15 s by default: shorten it to make thermal faults bite sooner in a short demo).
Reads within one instant return the same values (like DCGM's latest value).

Faults (:class:`Fault`, times relative to the simulator's start), with the
signatures real GPUs show:

=================  ===========================================================
``thermal``        temperature climbs past slowdown, SM clock drops, reasons
                   sw/hw thermal slowdown (0x20/0x40), thermal violation grows
``power_cap``      power pinned at a lowered enforced limit, SM clock drops,
                   reason sw_power_cap (0x4) -- like the T4 scrape
``xid79``          the GPU falls off the bus: all its series vanish
``xid48``          double-bit ECC: ECC_DBE_VOL +1, XID 48
``xid63``/``xid64``  row remap pending (+1 uncorrectable remap) / remap failure
``xid94``/``xid95``  contained / uncontained ECC error: ECC_DBE_VOL +1
``xid74``          NVLink error: NVLink CRC/replay counters climb, NVLink
                   traffic drops (models with NVLink only)
``pcie_replay``    PCIe replay storm: replay counter climbs ~200/s, PCIe
                   throughput halves
``memory_leak``    FB_USED grows to the board's size (then ``is_out_of_memory``)
``dropout``        telemetry dropout: no data at all (HTTP 503), GPUs unharmed
=================  ===========================================================

For the rest of the system (the demo's reference server): ``slowdown_factor(i)``
is 1.0 on a healthy GPU and max_clock / current_clock (or a fault's penalty)
when it is slowed; ``is_lost(i)`` and ``is_out_of_memory(i)`` say when requests
on that GPU should fail.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from otel_llm.collectors._fields import (
    COUNTER_FIELDS,
    FLOAT_FIELDS,
    F,
    exporter_counters,
    field_name,
    supported_fields,
)
from otel_llm.collectors._model import GpuSample
from otel_llm.collectors._simspecs import GpuSpec, get_spec

from otel_llm import semconv as sc

FAULT_KINDS = ("thermal", "power_cap", "xid79", "xid48", "xid63", "xid64", "xid94", "xid95", "xid74",
               "pcie_replay", "memory_leak", "dropout")
_FAULT_ALIASES = {"ecc": "xid48", "ecc_dbe": "xid48", "row_remap": "xid63", "row_remap_failure": "xid64",
                  "nvlink": "xid74", "fall_off_bus": "xid79", "lost": "xid79", "oom": "memory_leak",
                  "throttle": "thermal", "power": "power_cap"}

# The simulator's field set: dcgm-exporter's default counters plus the
# throttle, ECC, profiling and NVLink fields the fault signatures need.
SIM_FIELDS: tuple[int, ...] = (
    F.SM_CLOCK, F.MEM_CLOCK, F.MEMORY_TEMP, F.GPU_TEMP, F.POWER_USAGE, F.TOTAL_ENERGY, F.PCIE_REPLAY,
    F.GPU_UTIL, F.MEM_COPY_UTIL, F.ENC_UTIL, F.DEC_UTIL, F.XID, F.POWER_VIOLATION, F.THERMAL_VIOLATION,
    F.FB_FREE, F.FB_USED, F.FB_RESERVED, F.ECC_SBE_VOL, F.ECC_DBE_VOL, F.ROW_REMAP_UNCORRECTABLE,
    F.ROW_REMAP_CORRECTABLE, F.ROW_REMAP_FAILED, F.ROW_REMAP_PENDING, F.NVLINK_CRC_FLIT_ERRORS,
    F.NVLINK_REPLAY_ERRORS, F.VGPU_LICENSE_STATUS, F.GR_ENGINE_ACTIVE, F.SM_ACTIVE, F.SM_OCCUPANCY,
    F.TENSOR_ACTIVE, F.DRAM_ACTIVE, F.PCIE_TX_BYTES, F.PCIE_RX_BYTES, F.NVLINK_TX_BYTES, F.NVLINK_RX_BYTES,
    F.CLOCKS_EVENT_REASONS,
)
_ROW_REMAP = {F.ROW_REMAP_UNCORRECTABLE, F.ROW_REMAP_CORRECTABLE, F.ROW_REMAP_FAILED, F.ROW_REMAP_PENDING}
_NVLINK = {F.NVLINK_CRC_FLIT_ERRORS, F.NVLINK_REPLAY_ERRORS, F.NVLINK_TX_BYTES, F.NVLINK_RX_BYTES}
_MIB = 1024 * 1024


class TelemetryDropout(RuntimeError):
    """Raised by :meth:`SimulatedGpus.to_exposition` while a ``dropout`` fault is active."""


@dataclass(frozen=True)
class Fault:
    kind: str
    gpu: int | None = 0
    """GPU index; None = every GPU (``dropout`` is always node-wide)."""
    start_s: float = 0.0
    """Seconds after the simulator started."""
    duration_s: float | None = None
    """None = until the end."""

    def __post_init__(self) -> None:
        kind = _FAULT_ALIASES.get(self.kind, self.kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; choose one of: {', '.join(FAULT_KINDS)}")
        object.__setattr__(self, "kind", kind)
        if self.start_s < 0 or (self.duration_s is not None and self.duration_s <= 0):
            raise ValueError("fault start_s must be >= 0 and duration_s > 0")

    def active(self, t: float, gpu: int) -> bool:
        if self.gpu is not None and self.gpu != gpu and self.kind != "dropout":
            return False
        return t >= self.start_s and (self.duration_s is None or t < self.start_s + self.duration_s)

    @classmethod
    def parse(cls, text: str) -> Fault:
        """``KIND[:GPU|all][@START[+DURATION]]``, e.g. ``thermal:1@30+120``, ``xid79:0@60``, ``dropout@10+5``."""
        body, _, when = text.strip().partition("@")
        kind, _, gpu = body.partition(":")
        start, _, duration = when.partition("+")
        try:
            return cls(kind=kind.strip(), gpu=None if gpu.strip() in ("all", "*") else int(gpu or 0),
                       start_s=float(start or 0), duration_s=float(duration) if duration else None)
        except ValueError as exc:
            raise ValueError(f"bad fault {text!r} ({exc}); expected KIND[:GPU][@START[+DURATION]]") from None


class _Gpu:
    __slots__ = ("index", "uuid", "util", "mem_used_mib", "temp", "mem_temp", "energy_mj", "counters", "xid",
                 "requests", "remap_pending", "remap_failed", "sm_clock", "power", "reasons", "oom", "slowdown")

    def __init__(self, index: int, uuid: str, spec: GpuSpec, rng: random.Random) -> None:
        self.index, self.uuid = index, uuid
        self.util = 0.0
        self.mem_used_mib = 0.0
        self.temp = spec.temp_idle_c
        self.mem_temp = spec.temp_idle_c + 2.0
        self.energy_mj = rng.uniform(4e6, 2e10)  # energy since boot: any boot time
        self.counters: dict[int, float] = {fid: 0.0 for fid in COUNTER_FIELDS}
        self.xid = 0
        self.requests: deque[tuple[float, float]] = deque()
        self.remap_pending = self.remap_failed = 0
        self.sm_clock = float(spec.sm_clock_idle_mhz)
        self.power = spec.idle_power_w
        self.reasons = 0x1
        self.oom = False
        self.slowdown = 1.0


class SimulatedGpus:
    """N simulated GPUs of one model. Thread-safe; every read advances the simulation to ``clock()``."""

    name = "sim"

    def __init__(
        self,
        count: int = 1,
        model: str = "H100",
        *,
        faults: Iterable[Fault | str] = (),
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        driver_version: str = "580.105.08",
        k8s: dict[int, tuple[str, str, str]] | None = None,
        fields: Iterable[int] | None = None,
        request_window_s: float = 10.0,
        thermal_time_constant_s: float = 15.0,
    ) -> None:
        if not 1 <= count <= 64:
            raise ValueError(f"count must be 1..64 GPUs, got {count}")
        if thermal_time_constant_s <= 0 or request_window_s <= 0:
            raise ValueError("thermal_time_constant_s and request_window_s must be > 0")
        self._tau = thermal_time_constant_s
        self.spec = get_spec(model)
        self.faults = [f if isinstance(f, Fault) else Fault.parse(f) for f in faults]
        self._rng = random.Random(seed)
        self._clock = clock
        self.host = host or socket.gethostname()
        self.driver_version = driver_version
        self.k8s = dict(k8s or {})
        self._window = request_window_s
        self._lock = threading.Lock()
        self._t0 = self._last = clock()
        sup, uns = supported_fields().get(self.spec.name, (frozenset(), frozenset()))
        wanted = tuple(fields) if fields is not None else SIM_FIELDS
        self.fields = tuple(fid for fid in wanted if self._supports(fid, sup, uns))
        self._gpus = [_Gpu(i, self._uuid(), self.spec, self._rng) for i in range(count)]
        self._fired: set[tuple[int, int]] = set()
        self._cache: tuple[float, list[GpuSample]] | None = None
        self.last_collect_ok = True

    def _supports(self, fid: int, sup: frozenset[int], uns: frozenset[int]) -> bool:
        if fid in uns:
            return False
        if fid in _ROW_REMAP:
            return self.spec.row_remap
        if fid in _NVLINK:
            return self.spec.nvlink or fid in sup
        return True

    def _uuid(self) -> str:
        h = f"{self._rng.getrandbits(128):032x}"
        return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # ------------------------------------------------------------------ load
    @property
    def uuids(self) -> list[str]:
        return [g.uuid for g in self._gpus]

    def set_load(self, index: int, utilization: float, memory_used_bytes: int | None = None) -> None:
        """Baseline load of GPU ``index``: utilisation 0..1 and (optionally) framebuffer bytes in use."""
        if not 0.0 <= utilization <= 1.0:
            raise ValueError(f"utilization must be within 0..1, got {utilization}")
        with self._lock:
            g = self._gpus[index]
            g.util = utilization
            if memory_used_bytes is not None:
                g.mem_used_mib = min(memory_used_bytes / _MIB, self.spec.memory_total_mib - self.spec.memory_reserved_mib)

    def observe_request(self, index: int, duration_s: float, *, end_time: float | None = None) -> None:
        """Count a request's busy time on GPU ``index``; utilisation follows busy time over the window."""
        with self._lock:
            self._gpus[index].requests.append((self._clock() if end_time is None else end_time, max(0.0, duration_s)))

    # ------------------------------------------------------------ simulation
    def _fault_active(self, kind: str, t: float, gpu: int) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and f.active(t, gpu):
                return f
        return None

    def _advance(self) -> float:
        now = self._clock()
        dt = max(0.0, now - self._last)
        self._last = now
        t = now - self._t0
        for g in self._gpus:
            self._step(g, t, now, dt)
        return t

    def _step(self, g: _Gpu, t: float, now: float, dt: float) -> None:
        s, rng = self.spec, self._rng
        while g.requests and g.requests[0][0] < now - self._window:
            g.requests.popleft()
        util = min(1.0, max(g.util, sum(d for _, d in g.requests) / self._window))
        if self._fault_active("xid79", t, g.index):
            self._fire(g, 79)
            return
        limit = s.power_limit_w * (0.6 if self._fault_active("power_cap", t, g.index) else 1.0)
        demand = s.idle_power_w + util * (s.full_load_power_w - s.idle_power_w)
        if self._fault_active("power_cap", t, g.index):
            demand = max(demand, limit * 1.4)  # the cap bites whatever the load
        busy = util > 0.02 or demand > s.idle_power_w * 1.5
        clock = float(s.sm_clock_max_mhz if busy else s.sm_clock_idle_mhz)
        reasons = 0 if busy else 0x1
        power = demand
        if demand > limit * 0.975:
            factor = max(0.35, (limit * 0.975 - s.idle_power_w) / (demand - s.idle_power_w))
            clock = max(float(s.sm_clock_idle_mhz), clock * factor)
            power = limit * rng.uniform(0.965, 0.985)
            reasons |= 0x4
            g.counters[F.POWER_VIOLATION] += dt * 1e9
        thermal = self._fault_active("thermal", t, g.index)
        target = s.temp_idle_c + (s.temp_full_load_c - s.temp_idle_c) * (power - s.idle_power_w) / (
            s.power_limit_w - s.idle_power_w)
        if thermal:
            target = s.slowdown_temp_c + 6.0  # cooling failure: heads past slowdown
        g.temp += (target - g.temp) * (1.0 - math.exp(-dt / self._tau))
        g.mem_temp = g.temp + 4.0
        if g.temp >= s.slowdown_temp_c:
            clock = max(float(s.sm_clock_idle_mhz), min(clock, s.sm_clock_max_mhz * 0.55))
            reasons |= 0x20 | (0x40 if g.temp >= s.slowdown_temp_c + 3 else 0)
            g.counters[F.THERMAL_VIOLATION] += dt * 1e9
        g.sm_clock = clock
        g.power = power * rng.uniform(0.99, 1.01) if not reasons & 0x4 else power
        g.reasons = reasons
        g.energy_mj += g.power * dt * 1000.0
        slow = (s.sm_clock_max_mhz / clock) if busy and reasons & 0x64 else 1.0
        if self._fault_active("pcie_replay", t, g.index):
            g.counters[F.PCIE_REPLAY] += dt * rng.uniform(150, 250)
            slow *= 1.25
        if self._fault_active("xid74", t, g.index) and s.nvlink:
            self._fire(g, 74)
            g.counters[F.NVLINK_CRC_FLIT_ERRORS] += dt * rng.uniform(20, 40)
            g.counters[F.NVLINK_REPLAY_ERRORS] += dt * rng.uniform(5, 10)
            slow *= 1.5
        for code in (48, 63, 64, 94, 95):
            if self._fault_active(f"xid{code}", t, g.index):
                self._fire(g, code)
        leak = self._fault_active("memory_leak", t, g.index)
        cap = s.memory_total_mib - s.memory_reserved_mib
        if leak:
            g.mem_used_mib = min(cap, g.mem_used_mib + dt * cap / 60.0)  # fills the board in ~a minute
        g.oom = g.mem_used_mib >= cap - 1
        g.slowdown = slow

    def _fire(self, g: _Gpu, code: int) -> None:
        """Apply a one-off XID's counter effects the first time it fires."""
        g.xid = code
        if (g.index, code) in self._fired:
            return
        self._fired.add((g.index, code))
        if code in (48, 94, 95):
            g.counters[F.ECC_DBE_VOL] += 1
        if code == 63:
            g.counters[F.ROW_REMAP_UNCORRECTABLE] += 1
            g.remap_pending = 1
        if code == 64:
            g.remap_failed = 1

    def _values(self, g: _Gpu, t: float) -> dict[int, float]:
        s, rng = self.spec, self._rng
        util = min(1.0, max(g.util, sum(d for _, d in g.requests) / self._window))
        nvlink_down = self._fault_active("xid74", t, g.index) is not None
        pcie_storm = self._fault_active("pcie_replay", t, g.index) is not None
        busy_clock = g.sm_clock > s.sm_clock_idle_mhz
        v = {
            F.SM_CLOCK: round(g.sm_clock),
            F.MEM_CLOCK: s.mem_clock_max_mhz if busy_clock else s.mem_clock_idle_mhz,
            F.MEMORY_TEMP: round(g.mem_temp) if s.hbm else 0,
            F.GPU_TEMP: round(g.temp),
            F.POWER_USAGE: round(g.power, 3),
            F.TOTAL_ENERGY: round(g.energy_mj),
            F.GPU_UTIL: round(min(100.0, util * 100.0 * rng.uniform(0.97, 1.03))),
            F.MEM_COPY_UTIL: round(util * 70.0),
            F.ENC_UTIL: 0,
            F.DEC_UTIL: 0,
            F.FB_USED: round(g.mem_used_mib),
            F.FB_RESERVED: s.memory_reserved_mib,
            F.FB_FREE: round(s.memory_total_mib - s.memory_reserved_mib - g.mem_used_mib),
            F.ROW_REMAP_FAILED: g.remap_failed,
            F.ROW_REMAP_PENDING: g.remap_pending,
            F.VGPU_LICENSE_STATUS: 0,
            F.GR_ENGINE_ACTIVE: round(util * 0.95 * rng.uniform(0.95, 1.0), 6),
            F.SM_ACTIVE: round(util * 0.88 * rng.uniform(0.95, 1.0), 6),
            F.SM_OCCUPANCY: round(util * 0.31 * rng.uniform(0.95, 1.0), 6),
            F.TENSOR_ACTIVE: round(util * 0.42 * rng.uniform(0.9, 1.0), 6),
            F.DRAM_ACTIVE: round(util * 0.63 * rng.uniform(0.95, 1.0), 6) if util else 0.000131,
            F.PCIE_TX_BYTES: round((112_000 + util * 6e6) * (0.5 if pcie_storm else 1.0) * rng.uniform(0.9, 1.1)),
            F.PCIE_RX_BYTES: round((17_500 + util * 8e6) * (0.5 if pcie_storm else 1.0) * rng.uniform(0.9, 1.1)),
            F.NVLINK_TX_BYTES: 0 if nvlink_down or not s.nvlink else round(util * 2.0e10 * rng.uniform(0.9, 1.1)),
            F.NVLINK_RX_BYTES: 0 if nvlink_down or not s.nvlink else round(util * 2.0e10 * rng.uniform(0.9, 1.1)),
            F.CLOCKS_EVENT_REASONS: g.reasons,
        }
        for fid, value in g.counters.items():
            if fid != F.TOTAL_ENERGY:
                v[fid] = round(value)
        if g.xid:
            v[F.XID] = g.xid
        return {fid: float(v[fid]) for fid in self.fields if fid in v}

    # --------------------------------------------------------------- reading
    def _present(self, t: float) -> list[_Gpu]:
        return [g for g in self._gpus if not self._fault_active("xid79", t, g.index)]

    def _dropout(self, t: float) -> bool:
        return any(f.kind == "dropout" and f.active(t, 0) for f in self.faults)

    def collect(self) -> list[GpuSample]:
        """Samples of every GPU still on the bus; ``[]`` with ``last_collect_ok=False`` during a dropout."""
        with self._lock:
            t = self._advance()
            if self._dropout(t):
                self.last_collect_ok = False
                return []
            self.last_collect_ok = True
            now = self._last
            if self._cache is not None and self._cache[0] == now:
                return list(self._cache[1])  # same instant, same reading (as DCGM's latest value)
            samples = [
                GpuSample(uuid=g.uuid, timestamp=now, fields=self._values(g, t), index=g.index, model=self.spec.name,
                          host=self.host, labels=self._labels(g))
                for g in self._present(t)
            ]
            self._cache = (now, samples)
            return list(samples)

    def _labels(self, g: _Gpu) -> dict[str, str]:
        labels = {sc.HW_DRIVER_VERSION: self.driver_version, "pci_bus_id": self._pci(g.index),
                  "device": f"nvidia{g.index}"}
        if g.index in self.k8s:
            pod, ns, container = self.k8s[g.index]
            labels.update({sc.K8S_POD_NAME: pod, sc.K8S_NAMESPACE_NAME: ns, sc.K8S_CONTAINER_NAME: container})
        return labels

    def _pci(self, index: int) -> str:
        return f"00000000:{(self.spec.pci_bus_base + 0x11 * index) % 256:02X}:00.0"

    def slowdown_factor(self, index: int) -> float:
        """How much slower GPU ``index`` runs now: 1.0 healthy, >1 throttled/impaired, inf when lost."""
        with self._lock:
            t = self._advance()
            if self._fault_active("xid79", t, index):
                return math.inf
            return self._gpus[index].slowdown

    def is_lost(self, index: int) -> bool:
        """True once GPU ``index`` has fallen off the bus (XID 79)."""
        with self._lock:
            t = self._advance()
            return self._fault_active("xid79", t, index) is not None

    def is_out_of_memory(self, index: int) -> bool:
        """True while GPU ``index``'s framebuffer is full (``memory_leak`` reached the board's size)."""
        with self._lock:
            self._advance()
            return self._gpus[index].oom

    def close(self) -> None:
        pass

    # ------------------------------------------------------------ exposition
    def to_exposition(self, *, names: str = "exporter", hostname_label: str = "Hostname",
                      help_lines: bool = True) -> str:
        """The GPUs as dcgm-exporter ``/metrics`` text (same label set, order and number formatting).

        ``names``: ``exporter`` (pre-4.6 names, what released exporters print),
        ``dcgm46`` (DCGM 4.6 names) or ``legacy`` (1.x lower-case names, label
        ``uuid``). Raises :class:`TelemetryDropout` during a dropout fault.
        """
        samples = self.collect()
        if not self.last_collect_ok:
            raise TelemetryDropout("simulated telemetry dropout")
        legacy = names == "legacy"
        meta = exporter_counters()
        prefixes = {}
        for s in samples:
            parts = [f'gpu="{s.index}"', f'{"uuid" if legacy else "UUID"}="{s.uuid}"']
            if not legacy:
                parts += [f'pci_bus_id="{s.labels["pci_bus_id"]}"', f'device="{s.labels["device"]}"',
                          f'modelName="{s.model}"', f'{hostname_label}="{s.host}"',
                          f'DCGM_FI_DRIVER_VERSION="{self.driver_version}"']
            if sc.K8S_POD_NAME in s.labels:
                parts += [f'container="{s.labels[sc.K8S_CONTAINER_NAME]}"',
                          f'namespace="{s.labels[sc.K8S_NAMESPACE_NAME]}"', f'pod="{s.labels[sc.K8S_POD_NAME]}"']
            prefixes[s.uuid] = "{" + ",".join(parts) + "} "
        lines: list[str] = []
        for fid in self.fields:
            name = field_name(fid, names)
            if name is None:
                continue
            rows = [(s, s.fields[fid]) for s in samples if fid in s.fields]
            if not rows:
                continue
            if help_lines:
                mtype, help_text = meta.get(fid, ("counter" if fid in COUNTER_FIELDS else "gauge", f"DCGM field {fid}."))
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {mtype}")
            is_float = fid in FLOAT_FIELDS
            for s, value in rows:
                text = f"{value:.6f}" if is_float else str(int(value))
                lines.append(f"{name}{prefixes[s.uuid]}{text}")
        return "\n".join(lines) + "\n"

    def serve(self, host: str = "127.0.0.1", port: int = 0, **exposition_kwargs):
        """Serve :meth:`to_exposition` at ``http://host:port/metrics`` (503 during a dropout).

        Returns a started :class:`~otel_llm.collectors.ExpositionServer`
        (``.url``, ``.close()``, usable as a context manager).
        """
        from otel_llm.collectors._http import ExpositionServer

        return ExpositionServer(lambda: self.to_exposition(**exposition_kwargs), host=host, port=port).start()
