"""The threshold and PyOD detectors as span consumers of the analyze pipeline.

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


def default_span_consumers(*, thresholds: bool = True, anomaly: bool = True,
                           gpu_state: Any = None) -> tuple[list[Callable[..., Any]], list[Any]]:
    """``(consumers, closeables)``; each closeable has ``shutdown()``."""
    consumers: list[Callable[..., Any]] = []
    closeables: list[Any] = []
    if thresholds:
        try:
            from otel_llm.processors._sdk import SpanSeriesFeed
            from otel_llm.processors._thresholds import ThresholdProcessor

            proc = ThresholdProcessor()
            consumers.append(SpanSeriesFeed(proc).add)
            closeables.append(proc)
        except ImportError as exc:
            _logger.warning("threshold detector unavailable (%s); install otel-llm[analyze]", exc)
    if anomaly:
        try:
            from otel_llm.processors._anomaly import RequestAnomalyProcessor

            proc = RequestAnomalyProcessor(gpu_state=gpu_state) if gpu_state else RequestAnomalyProcessor()
            consumers.append(proc.observe)
            closeables.append(proc)
        except ImportError as exc:
            _logger.warning("PyOD request-anomaly detector unavailable (%s); install otel-llm[analyze]", exc)
    return consumers, closeables
