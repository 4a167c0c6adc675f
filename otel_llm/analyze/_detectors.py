"""The threshold and PyOD detectors as consumers of the analyze pipeline.

Each consumer is ``callable(span) -> list[Detection]``: the span-derived
threshold feed (p95 TTFT / TPOT / duration and request counts per service and
model, learned bands) and the per-request PyOD outlier scorer with its
abnormal-rate detector. Both only look at LLM request spans. Missing optional
dependencies (statsforecast, PyOD) leave that detector out, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

_logger = logging.getLogger(__name__)


def default_consumers(*, thresholds: bool = True, anomaly: bool = True,
                      gpu_state: Any = None) -> tuple[list[Callable[..., Any]], list[Callable[..., Any]], list[Any]]:
    """``(span_consumers, metric_consumers, closeables)``; each closeable has ``shutdown()``.
    The threshold detector learns both span-derived series and the OTLP metrics it knows."""
    consumers: list[Callable[..., Any]] = []
    closeables: list[Any] = []
    thresholds_proc = None
    if thresholds:
        try:
            from otel_llm.processors._sdk import SpanSeriesFeed
            from otel_llm.processors._thresholds import ThresholdProcessor

            proc = ThresholdProcessor()
            consumers.append(SpanSeriesFeed(proc).add)
            closeables.append(proc)
            thresholds_proc = proc
        except ImportError as exc:
            _logger.warning("threshold detector unavailable (%s); install otel-llm[analyze]", exc)
    if anomaly:
        try:
            from otel_llm.processors._anomaly import RequestAnomalyProcessor

            at = getattr(gpu_state, "at", gpu_state)  # a GpuStateStore or a (uuid, t) -> sample function
            proc = RequestAnomalyProcessor(gpu_state=at) if at else RequestAnomalyProcessor()
            consumers.append(proc.observe)
            closeables.append(proc)
        except ImportError as exc:
            _logger.warning("PyOD request-anomaly detector unavailable (%s); install otel-llm[analyze]", exc)
    metric_consumers: list[Callable[..., Any]] = []
    if thresholds_proc is not None:
        from ._metrics import OtlpThresholdFeed

        metric_consumers.append(OtlpThresholdFeed(thresholds_proc))
    return consumers, metric_consumers, closeables


def default_span_consumers(**kwargs: Any) -> tuple[list[Callable[..., Any]], list[Any]]:
    """Span consumers only (see :func:`default_consumers`)."""
    spans, _, closeables = default_consumers(**kwargs)
    return spans, closeables


def start_gpu_polling(source: str, interval_s: float | None = None) -> tuple[Any, Any]:
    """Poll local GPUs (``otel_llm.collectors``: dcgm, dcgm-exporter, nvml, sim, auto) into a
    :class:`~otel_llm.collectors.GpuStateStore` for RCA and the PyOD features, and export them as
    OTel metrics through the global meter provider. Returns ``(store, poller)``; call
    ``poller.shutdown()`` at exit."""
    from otel_llm.collectors import GpuMetrics, GpuStateStore, create_collector

    store = GpuStateStore()
    poller = GpuMetrics(create_collector(source), interval_s=interval_s, store=store).start()
    return store, poller
