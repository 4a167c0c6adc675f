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

__all__ = ["Detection", "DetectionSink", "ExportResult", "Incident", "RootCauseCandidate", "Severity"]
