"""Streaming detectors and root-cause analysis (``otel_llm.processors``).

Heavy dependencies (statsforecast, PyOD, numpy) are imported by the modules
that need them, not here: ``import otel_llm.processors`` stays cheap.
"""

from otel_llm.processors._model import (
    Detection,
    DetectionSink,
    ExportResult,
    Incident,
    RootCauseCandidate,
    Severity,
)
from otel_llm.processors._spans import SpanRecord, from_readable_span
from otel_llm.processors._stream import DetectionStream, Subscription

__all__ = ["Detection", "DetectionSink", "DetectionStream", "Subscription", "ExportResult", "Incident", "RootCauseCandidate", "Severity", "SpanRecord", "from_readable_span"]
