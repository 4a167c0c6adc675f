"""GPU telemetry sources behind one interface (``otel_llm.collectors``)."""

from otel_llm.collectors._model import Collector, GpuSample

__all__ = ["Collector", "GpuSample"]
