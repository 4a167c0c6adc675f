"""Running the detectors inside a server process (OpenTelemetry SDK plug-ins).

Typical wiring::

    from otel_llm.processors import DetectionStream
    from otel_llm.processors.sdk import build_in_process

    stream = DetectionStream()
    span_processor, metric_exporter, thresholds, anomaly = build_in_process(stream=stream)
    tracer_provider.add_span_processor(span_processor)
    # optional metrics path: PeriodicExportingMetricReader(metric_exporter)
"""

from __future__ import annotations

from typing import Any

from otel_llm.processors._metrics_feed import ThresholdMetricExporter
from otel_llm.processors._sdk import SPAN_SERIES, DetectorSpanProcessor, SpanSeriesFeed


def build_in_process(
    *,
    stream: Any = None,
    meter_provider: Any = None,
    gpu_state: Any = None,
    interval_s: float = 10.0,
    downstream_metric_exporter: Any = None,
    threshold_config: Any = None,
) -> tuple[DetectorSpanProcessor, ThresholdMetricExporter, Any, Any]:
    """One stream, one ThresholdProcessor, one RequestAnomalyProcessor, their SDK plug-ins (env-configured)."""
    from otel_llm.processors._anomaly import RequestAnomalyProcessor
    from otel_llm.processors._stream import DetectionStream
    from otel_llm.processors._thresholds import ThresholdConfig, ThresholdProcessor

    stream = stream if stream is not None else DetectionStream()
    thresholds = ThresholdProcessor(threshold_config or ThresholdConfig.from_env(), stream=stream,
                                    meter_provider=meter_provider)
    anomaly = RequestAnomalyProcessor(gpu_state=gpu_state, stream=stream, meter_provider=meter_provider)
    span_processor = DetectorSpanProcessor(anomaly, SpanSeriesFeed(thresholds, interval_s))
    exporter = ThresholdMetricExporter(thresholds, downstream_metric_exporter)
    return span_processor, exporter, thresholds, anomaly


__all__ = ["SPAN_SERIES", "DetectorSpanProcessor", "SpanSeriesFeed", "ThresholdMetricExporter", "build_in_process"]
