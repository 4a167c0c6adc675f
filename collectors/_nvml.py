"""The ``nvml`` source: nvidia-ml-py (``pynvml``), values converted to DCGM field ids and units.

Read per GPU: utilisation (203/204), encoder/decoder (206/207), memory
(250-252, MiB), power (mW -> W, 155), enforced power limit (164), energy
(mJ, 156), temperature (150), SM/memory clocks (100/101), clock-event
(throttle) reasons (112), volatile ECC totals (310/311), PCIe replays (202),
row remapping (393-396) and XIDs through an NVML event set (230: the last
XID code, as DCGM reports it). A query a GPU does not support is remembered
and not asked again; a GPU that stops answering (``GpuIsLost``) is left out of
the poll, so its series vanish and the tracker reports it lost.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import Counter

from otel_llm.collectors._fields import F
from otel_llm.collectors._model import GpuSample

from otel_llm import semconv as sc

_logger = logging.getLogger("otel_llm.collectors")
_MIB = 1024 * 1024


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlCollector:
    """NVML-backed :class:`Collector`. ``nvml`` is injectable (tests pass a fake module)."""

    name = "nvml"

    def __init__(self, nvml=None, *, host: str | None = None, xid_events: bool = True) -> None:
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as exc:
                raise ImportError(
                    "the nvml GPU source needs NVIDIA's NVML bindings: pip install nvidia-ml-py "
                    "(or 'otel-llm[gpu]')"
                ) from exc
        self._nv = nvml
        try:
            nvml.nvmlInit()
        except Exception as exc:
            raise RuntimeError(
                f"NVML could not start ({type(exc).__name__}: {exc}); is the NVIDIA driver installed "
                "and is a GPU visible to this process?"
            ) from exc
        self.host = host or socket.gethostname()
        self.scrape_errors: Counter[str] = Counter()
        self.last_collect_ok = True
        self._unsupported: set[tuple[int, str]] = set()
        self._last_xid: dict[str, int] = {}
        self._handles = []
        try:
            self.driver_version = _s(nvml.nvmlSystemGetDriverVersion())
        except Exception:
            self.driver_version = None
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            self._handles.append((i, h, _s(nvml.nvmlDeviceGetUUID(h)), _s(nvml.nvmlDeviceGetName(h))))
        self._events = None
        if xid_events:
            self._events = self._event_set()

    def _event_set(self):
        nv = self._nv
        try:
            es = nv.nvmlEventSetCreate()
        except Exception:
            return None
        mask = getattr(nv, "nvmlEventTypeXidCriticalError", 0x8)
        registered = 0
        for _, h, uuid, _ in self._handles:
            try:
                nv.nvmlDeviceRegisterEvents(h, mask, es)
                registered += 1
            except Exception as exc:  # not supported on this GPU (e.g. vGPU guests)
                _logger.debug("no XID events for %s: %s", uuid, exc)
        return es if registered else None

    def _read(self, index: int, what: str, fn, *args):
        """Call an NVML query; None (and remembered) when unsupported; re-raise 'GPU is lost'."""
        if fn is None or (index, what) in self._unsupported:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            name = type(exc).__name__
            if "GpuIsLost" in name:
                raise
            if "NotSupported" in name or "FunctionNotFound" in name or isinstance(exc, AttributeError):
                self._unsupported.add((index, what))
            return None

    def _drain_xids(self) -> None:
        if self._events is None:
            return
        nv = self._nv
        for _ in range(256):  # bounded: never spin on a storm
            try:
                data = nv.nvmlEventSetWait_v2(self._events, 0)
            except Exception:
                return  # Timeout: no more events
            try:
                uuid = _s(nv.nvmlDeviceGetUUID(data.device))
            except Exception:
                continue
            self._last_xid[uuid] = int(data.eventData)

    def collect(self) -> list[GpuSample]:
        now = time.time()
        out: list[GpuSample] = []
        try:
            self._drain_xids()
        except Exception as exc:
            self.scrape_errors[type(exc).__name__] += 1
        for index, h, uuid, model in self._handles:
            try:
                fields = self._fields(index, h)
            except Exception as exc:  # this GPU is gone (or the driver is): leave it out
                self.scrape_errors[type(exc).__name__] += 1
                continue
            if uuid in self._last_xid:
                fields[F.XID] = float(self._last_xid[uuid])
            labels = {sc.HW_DRIVER_VERSION: self.driver_version} if self.driver_version else {}
            out.append(GpuSample(uuid=uuid, timestamp=now, fields=fields, index=index, model=model,
                                 host=self.host, labels=labels))
        self.last_collect_ok = bool(out) or not self._handles
        return out

    def _fields(self, i: int, h) -> dict[int, float]:
        nv, r = self._nv, self._read
        f: dict[int, float] = {}
        util = r(i, "util", nv.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            f[F.GPU_UTIL], f[F.MEM_COPY_UTIL] = float(util.gpu), float(util.memory)
        enc = r(i, "enc", nv.nvmlDeviceGetEncoderUtilization, h)
        if enc is not None:
            f[F.ENC_UTIL] = float(enc[0])
        dec = r(i, "dec", nv.nvmlDeviceGetDecoderUtilization, h)
        if dec is not None:
            f[F.DEC_UTIL] = float(dec[0])
        mem = r(i, "mem", nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            f[F.FB_TOTAL], f[F.FB_USED], f[F.FB_FREE] = mem.total / _MIB, mem.used / _MIB, mem.free / _MIB
        power = r(i, "power", nv.nvmlDeviceGetPowerUsage, h)
        if power is not None:
            f[F.POWER_USAGE] = power / 1000.0
        limit = r(i, "limit", nv.nvmlDeviceGetEnforcedPowerLimit, h)
        if limit is not None:
            f[F.POWER_LIMIT_ENFORCED] = limit / 1000.0
        energy = r(i, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, h)
        if energy is not None:
            f[F.TOTAL_ENERGY] = float(energy)
        temp = r(i, "temp", nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        if temp is not None:
            f[F.GPU_TEMP] = float(temp)
        sm = r(i, "sm", nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_SM", 1))
        if sm is not None:
            f[F.SM_CLOCK] = float(sm)
        memclk = r(i, "memclk", nv.nvmlDeviceGetClockInfo, h, getattr(nv, "NVML_CLOCK_MEM", 2))
        if memclk is not None:
            f[F.MEM_CLOCK] = float(memclk)
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        if reasons_fn is not None:
            reasons = r(i, "reasons", reasons_fn, h)
            if reasons is not None:
                f[F.CLOCKS_EVENT_REASONS] = float(reasons)
        corrected = getattr(nv, "NVML_MEMORY_ERROR_TYPE_CORRECTED", 0)
        uncorrected = getattr(nv, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)
        volatile = getattr(nv, "NVML_VOLATILE_ECC", 0)
        sbe = r(i, "ecc_sbe", nv.nvmlDeviceGetTotalEccErrors, h, corrected, volatile)
        if sbe is not None:
            f[F.ECC_SBE_VOL] = float(sbe)
        dbe = r(i, "ecc_dbe", nv.nvmlDeviceGetTotalEccErrors, h, uncorrected, volatile)
        if dbe is not None:
            f[F.ECC_DBE_VOL] = float(dbe)
        replay = r(i, "replay", nv.nvmlDeviceGetPcieReplayCounter, h)
        if replay is not None:
            f[F.PCIE_REPLAY] = float(replay)
        rows = r(i, "rows", getattr(nv, "nvmlDeviceGetRemappedRows", None), h)
        if rows is not None:
            corr, unc, pending, failed = rows[:4]
            f[F.ROW_REMAP_CORRECTABLE], f[F.ROW_REMAP_UNCORRECTABLE] = float(corr), float(unc)
            f[F.ROW_REMAP_PENDING], f[F.ROW_REMAP_FAILED] = float(bool(pending)), float(bool(failed))
        return f

    def close(self) -> None:
        try:
            if self._events is not None:
                self._nv.nvmlEventSetFree(self._events)
            self._nv.nvmlShutdown()
        except Exception:
            pass
