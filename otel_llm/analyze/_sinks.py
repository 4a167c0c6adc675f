"""Default incident sinks: the terminal and a JSON-lines file.

Both implement :class:`~otel_llm.processors.DetectionSink` (``export`` /
``shutdown`` / ``force_flush``); they never raise (a write failure is
counted and the incident is reported as not exported).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from typing import IO

from otel_llm._selftelemetry import report_error
from otel_llm.processors._model import ExportResult, Incident


def format_incident(incident: Incident, top: int = 5) -> str:
    state = "RESOLVED" if incident.end is not None else "OPEN"
    lines = [f"[{state}] incident {incident.id}: {incident.title or 'abnormal traffic'}"]
    for d in incident.detections[:3]:
        lines.append(f"  detection {d.kind} {d.series}: {d.explanation}".rstrip(": "))
    for i, c in enumerate(incident.candidates[:top], 1):
        lines.append(f"  {i}. [{c.kind}] {c.name} (score {c.score:.2f}) -- {c.reason}")
        if c.trace_ids:
            lines.append(f"     traces: {', '.join(c.trace_ids)}")
    return "\n".join(lines)


class ConsoleSink:
    """Prints each new or changed incident (rich when on a terminal)."""

    def __init__(self, stream: IO[str] | None = None, top: int = 5) -> None:
        self._stream = stream
        self.top = top
        self._lock = threading.Lock()

    def export(self, incidents: Sequence[Incident]) -> ExportResult:
        try:
            stream = self._stream or sys.stderr
            with self._lock:
                for inc in incidents:
                    stream.write(format_incident(inc, self.top) + "\n")
                stream.flush()
            return ExportResult.SUCCESS
        except Exception as exc:
            report_error("analyze.console_sink", exc)
            return ExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        pass

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        return True


class JsonlSink:
    """Appends ``Incident.to_dict()`` as one JSON line per export."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in shutdown

    def export(self, incidents: Sequence[Incident]) -> ExportResult:
        try:
            with self._lock:
                for inc in incidents:
                    self._file.write(json.dumps(inc.to_dict(), default=str) + "\n")
                self._file.flush()
            return ExportResult.SUCCESS
        except Exception as exc:
            report_error("analyze.jsonl_sink", exc)
            return ExportResult.FAILURE

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        with self._lock:
            if not self._file.closed:
                self._file.flush()
        return True
