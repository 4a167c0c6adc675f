"""The detection model every processor emits and every exporter consumes.

* :class:`Detection` -- one detector's finding about one series or entity.
* :class:`RootCauseCandidate` -- one ranked explanation.
* :class:`Incident` -- detections grouped in time, with the RCA ranking.
* :class:`DetectionSink` -- what exporters implement (``export`` /
  ``shutdown`` / ``force_flush``; must not block the caller or raise).
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


CRITICAL_FACTOR = 2.0
"""A detection is ``critical`` once its deviation reaches this many times the rule's threshold (a z-score, a
rate of abnormal requests): at once when it opens that large, or later, when an open ``warning`` grows that
large (the same detection is published again with the new severity, so sinks re-route it)."""


class ExportResult(enum.Enum):
    SUCCESS = 0
    FAILURE = 1


@dataclass(frozen=True)
class Detection:
    kind: str
    """Detector family: ``threshold``, ``anomaly`` (PyOD), ``error_rate``, ``gpu``, ``predictive``."""
    series: str
    """Series or entity key, e.g. ``gen_ai.server.time_to_first_token{gen_ai.request.model="tiny"}`` or ``GPU-…``."""
    start: float
    """Unix seconds when the abnormal behaviour started."""
    end: float | None = None
    """Unix seconds when it recovered; None while still active."""
    score: float = 0.0
    """Higher is more abnormal; calibrated to [0, 1] where the detector can."""
    severity: Severity = Severity.WARNING
    metric: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    """The series' low-cardinality attributes (model, service, hw.id, ...)."""
    value: float | None = None
    band: tuple[float, float] | None = None
    """(lower, upper) of the band crossed, in the series' unit."""
    level: float | None = None
    """Confidence level of that band, e.g. 95."""
    explanation: str = ""
    contributions: Mapping[str, float] = field(default_factory=dict)
    """Per-feature attribution for PyOD detections (feature -> share of the score)."""
    trace_ids: Sequence[str] = field(default_factory=tuple)
    """Example trace ids (32 lowercase hex)."""

    @property
    def active(self) -> bool:
        return self.end is None

    @property
    def fingerprint(self) -> str:
        """Stable id of what is abnormal (not when): kind + series."""
        return hashlib.sha1(f"{self.kind}\x00{self.series}".encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.value
        d["trace_ids"] = list(self.trace_ids)
        d["band"] = list(self.band) if self.band else None
        d["attributes"] = dict(self.attributes)
        d["contributions"] = dict(self.contributions)
        return d


@dataclass(frozen=True)
class RootCauseCandidate:
    kind: str
    """``service`` | ``operation`` | ``stage`` | ``downstream`` | ``gpu``."""
    name: str
    """E.g. ``retrieval-svc``, ``llm-server:decode``, ``GPU-5f1b…``."""
    score: float
    reason: str
    """One human-readable sentence: why this candidate."""
    service: str | None = None
    operation: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    trace_ids: Sequence[str] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["trace_ids"] = list(self.trace_ids)
        d["evidence"] = dict(self.evidence)
        return d


@dataclass
class Incident:
    id: str
    start: float
    detections: list[Detection] = field(default_factory=list)
    candidates: list[RootCauseCandidate] = field(default_factory=list)
    end: float | None = None
    severity: Severity = Severity.WARNING
    title: str = ""
    updated: float = field(default_factory=time.time)

    @property
    def active(self) -> bool:
        return self.end is None

    @property
    def top(self) -> RootCauseCandidate | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "start": self.start,
            "end": self.end,
            "severity": self.severity.value,
            "title": self.title,
            "updated": self.updated,
            "detections": [d.to_dict() for d in self.detections],
            "candidates": [c.to_dict() for c in self.candidates],
        }


@runtime_checkable
class DetectionSink(Protocol):
    """Receives detections and incidents. Implementations must not block the
    caller for long and must never raise: failures are queued, retried,
    counted."""

    def export(self, incidents: Sequence[Incident]) -> ExportResult: ...

    def shutdown(self, timeout_millis: float = 30_000) -> None: ...

    def force_flush(self, timeout_millis: float = 30_000) -> bool: ...
