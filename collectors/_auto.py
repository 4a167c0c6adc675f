"""Pick a GPU source: ``auto`` | ``dcgm`` | ``dcgm-exporter`` | ``nvml`` | ``sim`` | ``none``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from otel_llm.collectors._model import Collector, GpuSample

from otel_llm import environment_variables as ev
from otel_llm._env import env_choice, env_str

_logger = logging.getLogger("otel_llm.collectors")
SOURCES = ("auto", "dcgm", "dcgm-exporter", "nvml", "sim", "none")


class NullCollector:
    """No GPU source: ``collect()`` is always empty."""

    name = "none"
    last_collect_ok = True

    def collect(self) -> list[GpuSample]:
        return []

    def close(self) -> None:
        pass


def create_collector(
    source: str | None = None,
    *,
    url: str | None = None,
    hostengine: str | None = None,
    interval_s: float = 5.0,
    sim_gpus: int = 1,
    sim_model: str = "H100",
    sim_faults: Iterable[str] = (),
    seed: int = 0,
    clock: Callable[[], float] | None = None,
) -> Collector:
    """Build the collector for ``source`` (argument > ``OTEL_LLM_GPU_SOURCE`` > ``auto``).

    An explicitly chosen source that cannot work raises ``ImportError`` /
    ``RuntimeError`` saying what to install or start. ``auto`` tries DCGM, then
    dcgm-exporter if a URL is configured, then NVML, else returns a
    :class:`NullCollector` after one log line; it never picks the simulator.
    """
    source = env_choice(ev.OTEL_LLM_GPU_SOURCE, source, "auto", SOURCES)
    url = env_str(ev.OTEL_LLM_DCGM_EXPORTER_URL, url)
    if source == "sim":
        import time

        from otel_llm.collectors._sim import SimulatedGpus

        return SimulatedGpus(sim_gpus, sim_model, faults=sim_faults, seed=seed, clock=clock or time.time)
    if source == "none":
        return NullCollector()
    if source == "dcgm-exporter":
        from otel_llm.collectors._exporter import DcgmExporterCollector

        return DcgmExporterCollector(url)
    if source == "dcgm":
        from otel_llm.collectors._dcgm import DcgmCollector

        return DcgmCollector(hostengine, interval_s=interval_s)
    if source == "nvml":
        from otel_llm.collectors._nvml import NvmlCollector

        return NvmlCollector()
    # auto
    reasons = []
    try:
        from otel_llm.collectors._dcgm import DcgmCollector

        return DcgmCollector(hostengine, interval_s=interval_s)
    except Exception as exc:
        reasons.append(f"DCGM: {exc}")
    if url:
        from otel_llm.collectors._exporter import DcgmExporterCollector

        return DcgmExporterCollector(url)
    reasons.append(f"dcgm-exporter: no URL ({ev.OTEL_LLM_DCGM_EXPORTER_URL} / --url)")
    try:
        from otel_llm.collectors._nvml import NvmlCollector

        return NvmlCollector()
    except Exception as exc:
        reasons.append(f"NVML: {exc}")
    _logger.info("No GPU telemetry source found; GPU metrics are off. Tried %s. "
                 "Choose one with %s (dcgm, dcgm-exporter, nvml, sim).", "; ".join(reasons), ev.OTEL_LLM_GPU_SOURCE)
    return NullCollector()
