"""Detections and incidents as OpenTelemetry signals (OTLP out).

:class:`DetectionMetricsExporter` is a :class:`DetectionSink` that turns what
the processors found into OTel data through the providers the application
configured (so it leaves by the configured OTLP exporter, next to the
server's own telemetry):

* metrics (scope ``otel_llm.exporters.otlp``) -- ``otel_llm.detections``
  (counter; ``otel_llm.detector``, ``otel_llm.severity``, ``otel_llm.metric``),
  ``otel_llm.anomaly.score`` (gauge per detector/metric/series),
  ``otel_llm.threshold.upper`` / ``.lower`` (gauge, the band crossed, with
  ``otel_llm.level``), ``otel_llm.incidents.open`` (up-down counter);
* logs -- one log record per incident state change (opened, updated with a new
  ranking or severity, resolved): body = summary, attributes = incident id, severity, root
  causes, trace ids; the record carries the first example trace id, so a
  backend can jump from the log to the trace.

Each detection is counted once (keyed by fingerprint and start), under the
severity it opened with, however often the same incident is re-exported; an
incident that escalates to critical moves in ``otel_llm.incidents.open`` from
the warning series to the critical one. Series attributes are bounded
(``max_series``); beyond it points are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from otel_llm.processors._model import Detection, ExportResult, Incident, Severity

from otel_llm import semconv as sc

_logger = logging.getLogger("otel_llm.exporters.otlp")
_COMPONENT = "exporters.otlp"
_SCOPE = "otel_llm.exporters.otlp"


def _severity_number(sev: Severity):
    from opentelemetry._logs import SeverityNumber

    return {Severity.INFO: SeverityNumber.INFO, Severity.WARNING: SeverityNumber.WARN,
            Severity.CRITICAL: SeverityNumber.ERROR}[sev]


class DetectionMetricsExporter:
    """Detections -> OTel metrics; incidents -> OTel log records. Never raises; never blocks on I/O
    (the SDK's readers and batch processors do the exporting)."""

    def __init__(self, meter_provider: Any = None, logger_provider: Any = None, *, max_series: int = 2000,
                 max_remembered: int = 100_000) -> None:
        from opentelemetry import metrics
        from opentelemetry._logs import get_logger_provider

        if max_series < 1:
            raise ValueError("max_series must be positive")
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, schema_url=sc.SCHEMA_URL)
        self._logger_otel = (logger_provider or get_logger_provider()).get_logger(_SCOPE, schema_url=sc.SCHEMA_URL)
        self._detections = meter.create_counter(sc.OTEL_LLM_DETECTIONS, unit="{detection}",
                                                description="Detections by detector, severity and metric")
        self._score = meter.create_gauge(sc.OTEL_LLM_ANOMALY_SCORE, unit="1",
                                         description="Latest detection score per series, in [0, 1]")
        self._upper = meter.create_gauge(sc.OTEL_LLM_THRESHOLD_UPPER,
                                         description="Upper edge of the band a detection crossed (series' unit)")
        self._lower = meter.create_gauge(sc.OTEL_LLM_THRESHOLD_LOWER,
                                         description="Lower edge of the band a detection crossed (series' unit)")
        self._open = meter.create_up_down_counter(sc.OTEL_LLM_INCIDENTS_OPEN, unit="{incident}",
                                                  description="Incidents currently open")
        self.max_series = max_series
        self.max_remembered = max_remembered
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, float], None] = {}
        self._series: set[tuple[str, str, str]] = set()
        self._open_ids: dict[str, Severity] = {}  # open incident -> the severity it is counted under
        self._logged: dict[str, tuple[bool, Severity, tuple[str, ...]]] = {}
        self._shutdown = False

    def export(self, incidents: Sequence[Incident]) -> ExportResult:
        if self._shutdown:
            return ExportResult.FAILURE
        try:
            with self._lock:
                for incident in incidents:
                    for detection in incident.detections:
                        self._record_detection(detection)
                    self._record_incident(incident)
            return ExportResult.SUCCESS
        except Exception as exc:  # boundary
            from otel_llm._selftelemetry import report_error

            report_error(_COMPONENT, exc, logger=_logger)
            return ExportResult.FAILURE

    def export_detections(self, detections: Sequence[Detection]) -> ExportResult:
        """Detections not (yet) grouped into an incident."""
        try:
            with self._lock:
                for detection in detections:
                    self._record_detection(detection)
            return ExportResult.SUCCESS
        except Exception as exc:
            from otel_llm._selftelemetry import report_error

            report_error(_COMPONENT, exc, logger=_logger)
            return ExportResult.FAILURE

    # ------------------------------------------------------------------ metrics
    def _record_detection(self, d: Detection) -> None:
        metric = d.metric or d.series.split("{", 1)[0]
        key = (d.fingerprint, d.start)
        if key not in self._seen:
            self._seen[key] = None
            if len(self._seen) > self.max_remembered:
                self._seen.pop(next(iter(self._seen)))
            self._detections.add(1, {sc.OTEL_LLM_DETECTOR: d.kind, sc.OTEL_LLM_SEVERITY: d.severity.value,
                                     sc.OTEL_LLM_METRIC: metric})
        series_key = (d.kind, metric, d.series)
        if series_key not in self._series:
            if len(self._series) >= self.max_series:
                from otel_llm._selftelemetry import report_dropped

                report_dropped(_COMPONENT, "series_limit")
                return
            self._series.add(series_key)
        attrs = {sc.OTEL_LLM_DETECTOR: d.kind, sc.OTEL_LLM_METRIC: metric, sc.OTEL_LLM_SERIES: d.series,
                 **{k: str(v) for k, v in d.attributes.items()}}
        self._score.set(max(0.0, min(1.0, float(d.score))), attrs)
        if d.band is not None:
            band_attrs = dict(attrs)
            if d.level is not None:
                band_attrs[sc.OTEL_LLM_LEVEL] = float(d.level)
            self._lower.set(float(d.band[0]), band_attrs)
            self._upper.set(float(d.band[1]), band_attrs)

    # --------------------------------------------------------------------- logs
    def _record_incident(self, incident: Incident) -> None:
        # Open incidents by their current severity: an incident that turns critical moves from the warning
        # series to the critical one, and leaves the series it is counted under when it resolves.
        counted = self._open_ids.get(incident.id)
        if incident.active and counted is not incident.severity:
            if counted is not None:
                self._open.add(-1, {sc.OTEL_LLM_SEVERITY: counted.value})
            self._open_ids[incident.id] = incident.severity
            self._open.add(1, {sc.OTEL_LLM_SEVERITY: incident.severity.value})
        elif not incident.active and counted is not None:
            del self._open_ids[incident.id]
            self._open.add(-1, {sc.OTEL_LLM_SEVERITY: counted.value})
        ranking = tuple(f"{c.kind}:{c.name}" for c in incident.candidates[:5])
        state = (incident.active, incident.severity, ranking)
        if self._logged.get(incident.id) == state:
            return  # nothing new to say
        previous = self._logged.get(incident.id)
        self._logged[incident.id] = state
        if len(self._logged) > self.max_remembered:
            self._logged.pop(next(iter(self._logged)))
        event = "resolved" if not incident.active else ("opened" if previous is None else "updated")
        self._emit(incident, event)

    def _emit(self, incident: Incident, event: str) -> None:
        from opentelemetry._logs import LogRecord

        trace_ids = [t for c in incident.candidates for t in c.trace_ids] + \
                    [t for d in incident.detections for t in d.trace_ids]
        attrs: dict[str, Any] = {
            "otel_llm.incident.id": incident.id,
            "otel_llm.incident.event": event,
            sc.OTEL_LLM_SEVERITY: incident.severity.value,
            "otel_llm.incident.detections": len(incident.detections),
        }
        if incident.candidates:
            attrs["otel_llm.incident.root_causes"] = [
                f"{c.kind} {c.name} ({c.score:.2f}): {c.reason}" for c in incident.candidates[:5]]
        if trace_ids:
            attrs["otel_llm.incident.trace_ids"] = list(dict.fromkeys(trace_ids))[:20]
        summary = incident.title or f"incident {incident.id}"
        record_kwargs: dict[str, Any] = {}
        if trace_ids:
            try:
                record_kwargs["trace_id"] = int(trace_ids[0], 16)
            except ValueError:
                pass
        ts = int((incident.end if incident.end is not None else incident.updated) * 1e9)
        self._logger_otel.emit(LogRecord(
            timestamp=ts, severity_number=_severity_number(incident.severity),
            severity_text=incident.severity.value.upper(), body=f"{summary} [{event}]", attributes=attrs,
            event_name="otel_llm.incident", **record_kwargs))

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return True  # the providers' readers/processors own delivery; flush them to push now

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        self._shutdown = True
