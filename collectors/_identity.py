"""Which GPU UUIDs this process uses: the key that joins request spans to GPU samples.

:func:`discover` is called once per process by :mod:`otel_llm._gpu` (which
instrumentors use to stamp ``otel_llm.gpu.uuids`` on request spans). Order:

1. ``torch`` already imported with CUDA initialised -> the UUID of its current
   device (the one-worker-per-GPU pattern of vLLM/TGI workers);
2. ``CUDA_VISIBLE_DEVICES`` -> each entry: an index (resolved through NVML),
   a ``GPU-...`` UUID, or a ``MIG-...`` UUID (kept as written);
3. no ``CUDA_VISIBLE_DEVICES`` -> every GPU NVML sees.

Returns ``[]`` when there is no GPU, no NVML library or no driver. Never raises.
torch is never imported here (it is heavy); it is used only if the host did.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

_logger = logging.getLogger("otel_llm.collectors")


def _as_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _load_nvml(nvml):
    if nvml is not None:
        return nvml
    import pynvml  # nvidia-ml-py

    return pynvml


def _visible_entries(env: Mapping[str, str]) -> list[str] | None:
    raw = env.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    out = []
    for e in entries:
        if e.startswith("-") or e.lower() == "nodevfiles":
            break  # CUDA stops at the first invalid entry
        out.append(e)
    return out


def discover(env: Mapping[str, str] | None = None, nvml=None, torch_module=None) -> list[str]:
    """UUIDs of the GPU(s) this process uses; ``[]`` when none can be known. Never raises."""
    env = os.environ if env is None else env
    try:
        entries = _visible_entries(env)
        if entries == []:
            return []  # CUDA_VISIBLE_DEVICES="" or "-1": no GPU for this process
        torch = torch_module if torch_module is not None else sys.modules.get("torch")
        current = _torch_current_device(torch)
        if entries is not None and all(not e.isdigit() for e in entries):
            chosen = entries if current is None else entries[current: current + 1]
            return [e for e in chosen if e]
        nv = _load_nvml(nvml)
        nv.nvmlInit()
        try:
            if entries is None:
                indices: list[int | str] = list(range(nv.nvmlDeviceGetCount()))
            else:
                indices = [int(e) if e.isdigit() else e for e in entries]
            if current is not None:
                indices = indices[current: current + 1]
            uuids = []
            for idx in indices:
                if isinstance(idx, str):
                    uuids.append(idx)
                    continue
                handle = nv.nvmlDeviceGetHandleByIndex(idx)
                uuids.append(_as_str(nv.nvmlDeviceGetUUID(handle)))
            return uuids
        finally:
            try:
                nv.nvmlShutdown()
            except Exception:
                pass
    except Exception as exc:  # no NVML, no driver, no GPU: nothing to stamp
        _logger.debug("GPU identity discovery found nothing (%s: %s)", type(exc).__name__, exc)
        return []


def _torch_current_device(torch) -> int | None:
    if torch is None:
        return None
    try:
        cuda = torch.cuda
        if cuda.is_available() and cuda.is_initialized():
            return int(cuda.current_device())
    except Exception:
        return None
    return None
