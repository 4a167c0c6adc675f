"""Process GPU memory from ``torch.cuda`` as observable instruments.

The source is injectable (``CudaMemorySource``) so the metric wiring is
tested without a GPU; the default reads ``torch.cuda``. Nothing is registered
when CUDA is unavailable, and nothing is observed before the process has
initialised CUDA itself (observing would create a CUDA context on the
exporter thread and take GPU memory the application never asked for).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_error


class CudaMemorySource(Protocol):
    def available(self) -> bool: ...
    def initialized(self) -> bool: ...
    def devices(self) -> list[tuple[int, str | None]]:
        """``(index, uuid or None)`` per visible device."""
        ...
    def stats(self, index: int) -> dict[str, int]:
        """Keys: allocated, reserved, peak, ooms (bytes / count)."""
        ...


class TorchCudaSource:
    def __init__(self) -> None:
        import torch

        self._cuda = torch.cuda
        self._devices: list[tuple[int, str | None]] | None = None

    def available(self) -> bool:
        return bool(self._cuda.is_available())

    def initialized(self) -> bool:
        return bool(self._cuda.is_initialized())

    def devices(self) -> list[tuple[int, str | None]]:
        if self._devices is None:
            found = []
            for i in range(self._cuda.device_count()):
                uuid = getattr(self._cuda.get_device_properties(i), "uuid", None)
                uuid = str(uuid) if uuid is not None else None
                if uuid and not uuid.startswith(("GPU-", "MIG-")):
                    uuid = f"GPU-{uuid}"
                found.append((i, uuid))
            self._devices = found
        return self._devices

    def stats(self, index: int) -> dict[str, int]:
        s = self._cuda.memory_stats(index)
        return {
            "allocated": int(s.get("allocated_bytes.all.current", 0)),
            "reserved": int(s.get("reserved_bytes.all.current", 0)),
            "peak": int(s.get("allocated_bytes.all.peak", 0)),
            "ooms": int(s.get("num_ooms", 0)),
        }


def register_memory_metrics(meter: Meter, source: CudaMemorySource) -> bool:
    """Create the four instruments when ``source`` has CUDA; returns whether it did."""
    if not source.available():
        return False

    def observe(key: str):
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            try:
                if not source.initialized():
                    return []
                out = []
                for index, uuid in source.devices():
                    attrs: dict[str, Any] = {sc.OTEL_LLM_GPU_INDEX: index}
                    if uuid:
                        attrs[sc.HW_ID] = uuid
                    out.append(Observation(source.stats(index)[key], attrs))
                return out
            except Exception as exc:  # a failing probe must not fail the collection
                report_error("torch.memory", exc)
                return []

        return callback

    meter.create_observable_up_down_counter(
        sc.OTEL_LLM_TORCH_MEMORY_ALLOCATED, [observe("allocated")], unit="By",
        description="GPU memory held by tensors of this process (torch caching allocator).",
    )
    meter.create_observable_up_down_counter(
        sc.OTEL_LLM_TORCH_MEMORY_RESERVED, [observe("reserved")], unit="By",
        description="GPU memory reserved by this process's torch caching allocator.",
    )
    meter.create_observable_gauge(
        sc.OTEL_LLM_TORCH_MEMORY_PEAK, [observe("peak")], unit="By",
        description="Peak GPU memory held by tensors since start or the last reset_peak_memory_stats().",
    )
    meter.create_observable_counter(
        sc.OTEL_LLM_TORCH_OOM, [observe("ooms")], unit="{error}",
        description="CUDA out-of-memory errors raised by the torch allocator in this process.",
    )
    return True
