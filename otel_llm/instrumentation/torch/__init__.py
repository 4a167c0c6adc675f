"""OpenTelemetry instrumentation for PyTorch: opt-in module spans and process GPU memory.

``TorchInstrumentor().instrument(modules=[...])`` puts an INTERNAL span
``forward {Class}`` (attribute ``otel_llm.torch.module``; ``error.type`` on
failure) around the forward of each chosen ``nn.Module`` class or instance,
or dotted class path / imported class name (also from
``OTEL_LLM_TORCH_MODULES``). Nothing is wrapped unless asked for: a decode
step calls hundreds of module forwards.

When CUDA is available it registers observable instruments for this
process's allocator: ``otel_llm.torch.cuda.memory.allocated`` /
``.reserved`` (By), ``.peak`` (By) and ``otel_llm.torch.cuda.oom`` (count),
per device (``otel_llm.gpu.index``, ``hw.id`` = GPU UUID). On a CPU-only
host it registers nothing and logs nothing.

Options: ``tracer_provider``, ``meter_provider``, ``modules`` (list),
``memory_metrics`` (bool, default True), ``cuda_source`` (tests).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from otel_llm import __version__, semconv
from otel_llm import environment_variables as ev
from otel_llm._env import env_list
from otel_llm.instrumentation.torch.package import _instruments

__all__ = ["TorchInstrumentor"]


class TorchInstrumentor(BaseInstrumentor):
    """Opt-in ``nn.Module`` forward spans and torch.cuda memory metrics."""

    # BaseInstrumentor is a singleton whose __init__ runs on every TorchInstrumentor() call:
    # state lives in class defaults and is only ever set in _instrument/_uninstrument.
    _patcher: Any = None
    memory_metrics_registered = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from otel_llm.instrumentation.torch._memory import TorchCudaSource, register_memory_metrics
        from otel_llm.instrumentation.torch._modules import ModulePatcher

        tracer = trace.get_tracer(
            __name__, __version__, tracer_provider=kwargs.get("tracer_provider"), schema_url=semconv.SCHEMA_URL
        )
        modules = kwargs.get("modules")
        if modules is None:
            modules = env_list(ev.OTEL_LLM_TORCH_MODULES)
        patcher = ModulePatcher(tracer)
        try:
            for target in modules:
                patcher.add(target)
        except Exception:
            patcher.restore()
            raise
        self._patcher = patcher
        self.memory_metrics_registered = False
        if kwargs.get("memory_metrics", True):
            meter = metrics.get_meter(
                __name__, __version__, meter_provider=kwargs.get("meter_provider"), schema_url=semconv.SCHEMA_URL
            )
            source = kwargs.get("cuda_source") or TorchCudaSource()
            self.memory_metrics_registered = register_memory_metrics(meter, source)

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._patcher is not None:
            self._patcher.restore()
            self._patcher = None
        # Observable instruments cannot be removed from a MeterProvider; their callbacks
        # keep reporting process memory, which stays true after uninstrument.
