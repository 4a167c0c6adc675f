"""GPU telemetry sources behind one interface (``otel_llm.collectors``).

* Sources (all :class:`Collector`): :class:`DcgmCollector` (DCGM bindings),
  :class:`DcgmExporterCollector` (scrape dcgm-exporter), :class:`NvmlCollector`
  (nvidia-ml-py), :class:`SimulatedGpus` (faithful simulator with faults);
  :func:`create_collector` picks one (``auto`` by default).
* :class:`GpuMetrics` turns samples into OTel metrics (``hw.*`` and
  ``otel_llm.gpu.*``); :class:`GpuTracker` holds the semantics (lost GPUs,
  XID changes, monotonic counters, health); :class:`GpuStateStore` answers
  "state of GPU U at time t" for processors.
* :func:`parse_exposition` parses dcgm-exporter text; :func:`field_id` maps
  any field name spelling to its numeric DCGM id.

Importing this package is light: no NVML, DCGM, httpx or torch import happens
until a source that needs one is built.
"""

from otel_llm.collectors._auto import SOURCES, NullCollector, create_collector
from otel_llm.collectors._convert import base_attributes, gauge_points, primary_values, sample_points
from otel_llm.collectors._fields import F, field_id, field_name, throttle_reasons
from otel_llm.collectors._model import Collector, GpuSample
from otel_llm.collectors._state import GpuEvent, GpuTracker
from otel_llm.collectors._store import GpuStateStore


def __getattr__(name: str):
    # Heavier pieces load on first use (keeps `import otel_llm.collectors` cheap).
    lazy = {
        "DcgmExporterCollector": "otel_llm.collectors._exporter",
        "DcgmCollector": "otel_llm.collectors._dcgm",
        "NvmlCollector": "otel_llm.collectors._nvml",
        "SimulatedGpus": "otel_llm.collectors._sim",
        "Fault": "otel_llm.collectors._sim",
        "TelemetryDropout": "otel_llm.collectors._sim",
        "GpuMetrics": "otel_llm.collectors._metrics",
        "start_gpu_metrics": "otel_llm.collectors._metrics",
        "ExpositionServer": "otel_llm.collectors._http",
        "parse_exposition": "otel_llm.collectors._exposition",
        "ParseStats": "otel_llm.collectors._exposition",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'otel_llm.collectors' has no attribute {name!r}")


__all__ = [
    "SOURCES",
    "Collector",
    "DcgmCollector",
    "DcgmExporterCollector",
    "ExpositionServer",
    "F",
    "Fault",
    "GpuEvent",
    "GpuMetrics",
    "GpuSample",
    "GpuStateStore",
    "GpuTracker",
    "NullCollector",
    "NvmlCollector",
    "ParseStats",
    "SimulatedGpus",
    "TelemetryDropout",
    "base_attributes",
    "create_collector",
    "field_id",
    "field_name",
    "gauge_points",
    "parse_exposition",
    "primary_values",
    "sample_points",
    "start_gpu_metrics",
    "throttle_reasons",
]
