"""The ``dcgm`` source: NVIDIA DCGM's Python bindings (``pydcgm``, ``dcgm_structs``).

The bindings ship with DCGM, not on PyPI; they are found through
``DCGM_BINDINGS_PATH`` or the standard folders (DCGM 4:
``/usr/share/datacenter-gpu-manager-4/bindings/python3``; DCGM 2/3:
``/usr/local/dcgm/bindings/python3``). The collector connects to
``nv-hostengine`` at host:port (default ``localhost:5555``) or starts an
embedded host engine (address ``embedded``), creates a group of all GPUs and a
field group of the chosen ids, watches it at the poll interval, and reads the
latest values each poll. Profiling (DCP) fields are included when the GPU
supports them; if watching them fails (unsupported GPU, profiling busy) the
collector watches the rest and says so once.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import time
from collections import Counter
from types import SimpleNamespace

from otel_llm.collectors._fields import F
from otel_llm.collectors._model import GpuSample

from otel_llm import environment_variables as ev
from otel_llm import semconv as sc
from otel_llm._env import env_str

_logger = logging.getLogger("otel_llm.collectors")

STANDARD_BINDINGS_PATHS = (
    "/usr/share/datacenter-gpu-manager-4/bindings/python3",
    "/usr/local/dcgm/bindings/python3",
    "/usr/local/dcgm/bindings",
)
DEFAULT_HOSTENGINE = "localhost:5555"

DEVICE_FIELDS: tuple[int, ...] = (
    F.SM_CLOCK, F.MEM_CLOCK, F.CLOCKS_EVENT_REASONS, F.MEMORY_TEMP, F.GPU_TEMP, F.POWER_USAGE,
    F.TOTAL_ENERGY, F.POWER_LIMIT_ENFORCED, F.PCIE_REPLAY, F.GPU_UTIL, F.MEM_COPY_UTIL, F.ENC_UTIL,
    F.DEC_UTIL, F.XID, F.POWER_VIOLATION, F.THERMAL_VIOLATION, F.FB_TOTAL, F.FB_FREE, F.FB_USED,
    F.FB_RESERVED, F.ECC_SBE_VOL, F.ECC_DBE_VOL, F.ROW_REMAP_UNCORRECTABLE, F.ROW_REMAP_CORRECTABLE,
    F.ROW_REMAP_FAILED, F.ROW_REMAP_PENDING, F.NVLINK_CRC_FLIT_ERRORS, F.NVLINK_CRC_DATA_ERRORS,
    F.NVLINK_REPLAY_ERRORS, F.NVLINK_RECOVERY_ERRORS,
)
PROFILING_FIELDS: tuple[int, ...] = (
    F.GR_ENGINE_ACTIVE, F.SM_ACTIVE, F.SM_OCCUPANCY, F.TENSOR_ACTIVE, F.DRAM_ACTIVE,
    F.PCIE_TX_BYTES, F.PCIE_RX_BYTES, F.NVLINK_TX_BYTES, F.NVLINK_RX_BYTES,
)


def load_bindings(path: str | None = None) -> SimpleNamespace:
    """Import ``pydcgm`` and ``dcgm_structs`` from ``path`` / ``DCGM_BINDINGS_PATH`` / the standard folders."""
    configured = env_str(ev.DCGM_BINDINGS_PATH, path)
    candidates = [configured] if configured else [p for p in STANDARD_BINDINGS_PATHS if os.path.isdir(p)]
    for folder in candidates:
        if folder and folder not in sys.path:
            sys.path.append(folder)
    try:
        return SimpleNamespace(pydcgm=importlib.import_module("pydcgm"),
                               dcgm_structs=importlib.import_module("dcgm_structs"),
                               dcgm_fields=importlib.import_module("dcgm_fields"))
    except ImportError as exc:
        where = configured or ", ".join(STANDARD_BINDINGS_PATHS)
        raise ImportError(
            f"DCGM's Python bindings (pydcgm) were not found in {where}. Install DCGM "
            "(package datacenter-gpu-manager-4-core) or set DCGM_BINDINGS_PATH to its bindings/python3 folder"
        ) from exc


class DcgmCollector:
    """DCGM-backed :class:`Collector`. ``bindings`` is injectable (an object with ``pydcgm`` and
    ``dcgm_structs``); tests pass a fake field-value source."""

    name = "dcgm"

    def __init__(
        self,
        address: str | None = None,
        *,
        fields: tuple[int, ...] | None = None,
        profiling: bool = True,
        interval_s: float = 5.0,
        bindings=None,
        host: str | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._b = bindings if bindings is not None else load_bindings()
        address = env_str(ev.OTEL_LLM_DCGM_HOSTENGINE, address, DEFAULT_HOSTENGINE)
        self.address = address
        self.host = host or socket.gethostname()
        self.scrape_errors: Counter[str] = Counter()
        self.last_collect_ok = True
        pydcgm, structs = self._b.pydcgm, self._b.dcgm_structs
        mode = getattr(structs, "DCGM_OPERATION_MODE_AUTO", 1)
        try:
            if address == "embedded":
                self._handle = pydcgm.DcgmHandle(ipAddress=None, opMode=mode)
            else:
                self._handle = pydcgm.DcgmHandle(ipAddress=address, opMode=mode)
        except Exception as exc:
            raise RuntimeError(
                f"cannot reach DCGM host engine at {address} ({type(exc).__name__}: {exc}); start nv-hostengine "
                f"or set OTEL_LLM_DCGM_HOSTENGINE (host:port, or 'embedded')"
            ) from exc
        self._group = pydcgm.DcgmGroup(self._handle, groupName=f"otel-llm-{os.getpid()}",
                                       groupType=getattr(structs, "DCGM_GROUP_DEFAULT", 0))
        self._gpus: dict[int, tuple[str, str, str | None]] = {}
        discovery = self._handle.GetSystem().discovery
        for gid in self._group.GetGpuIds():
            ident = discovery.GetGpuAttributes(gid).identifiers
            self._gpus[gid] = (_s(ident.uuid), _s(ident.deviceName), _s(getattr(ident, "driverVersion", "")) or None)
        base = tuple(fields) if fields is not None else DEVICE_FIELDS
        wanted = base + (PROFILING_FIELDS if profiling and fields is None else ())
        usec = int(interval_s * 1e6)
        try:
            self._fg = self._watch(wanted, usec)
        except Exception as exc:
            if len(wanted) == len(base):
                raise
            _logger.info("DCGM profiling fields are not available here (%s); collecting device fields only", exc)
            self._fg = self._watch(base, usec)
        self.fields = wanted

    def _watch(self, fields: tuple[int, ...], usec: int):
        fg = self._b.pydcgm.DcgmFieldGroup(self._handle, name=f"otel-llm-fields-{os.getpid()}-{len(fields)}",
                                           fieldIds=list(fields))
        self._group.samples.WatchFields(fg, usec, 0.0, 2)
        return fg

    def collect(self) -> list[GpuSample]:
        try:
            samples = self._group.samples
            if hasattr(samples, "GetLatest_v2"):
                fe_gpu = getattr(getattr(self._b, "dcgm_fields", None), "DCGM_FE_GPU", 1)
                by_gpu = samples.GetLatest_v2(self._fg).values.get(fe_gpu, {})
            else:
                by_gpu = samples.GetLatest(self._fg).values
        except Exception as exc:  # host engine gone, connection dropped
            self.scrape_errors[type(exc).__name__] += 1
            self.last_collect_ok = False
            return []
        now = time.time()
        out: list[GpuSample] = []
        for gid, (uuid, model, driver) in self._gpus.items():
            per_field = by_gpu.get(gid)
            if not per_field:
                continue
            fields: dict[int, float] = {}
            for fid, vals in per_field.items():
                if not vals:
                    continue
                v = vals[-1]
                if getattr(v, "isBlank", False):
                    continue
                try:
                    fields[int(fid)] = float(v.value)
                except (TypeError, ValueError):
                    continue
            if not fields:
                continue  # every value blank: DCGM lost this GPU
            labels = {sc.HW_DRIVER_VERSION: driver} if driver else {}
            out.append(GpuSample(uuid=uuid, timestamp=now, fields=fields, index=gid, model=model, host=self.host,
                                 labels=labels))
        self.last_collect_ok = True
        return out

    def close(self) -> None:
        for obj in (getattr(self, "_fg", None), getattr(self, "_group", None)):
            try:
                if obj is not None:
                    obj.Delete()
            except Exception:
                pass
        try:
            self._handle.Shutdown()
        except Exception:
            pass


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
