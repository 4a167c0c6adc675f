"""Incident -> Alertmanager API v2 alert (labels, annotations, links).

Labels identify an alert (Alertmanager deduplicates on them), so they are
low-cardinality and stable for the life of an incident: ``alertname``,
``severity``, ``source``, ``incident_id`` and, when the detections carry them,
``service``, ``model``, ``gpu``, ``metric``, ``detector``. Everything that
changes while an incident evolves (root-cause ranking, values, trace links)
goes into annotations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from otel_llm.processors._model import Detection, Incident

from otel_llm import semconv as sc

TRACE_ID_PLACEHOLDER = "{trace_id}"
_ALERTNAMES = {
    "threshold": "LLMLearnedBandBreach",
    "anomaly": "LLMAnomalousRequests",
    "error_rate": "LLMErrorRateJump",
    "gpu": "GPUFault",
    "predictive": "LLMSaturationPredicted",
}
_LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_trace_url_template(template: str | None) -> str | None:
    """A template must contain ``{trace_id}``; any other text (JSON braces included) is kept verbatim."""
    if template is None:
        return None
    if TRACE_ID_PLACEHOLDER not in template or not template.startswith(("http://", "https://", "/")):
        raise ValueError(
            f"trace URL template {template!r} must be an http(s) URL containing {TRACE_ID_PLACEHOLDER}, e.g. "
            "https://grafana.example/explore?left=...{trace_id}... or use grafana_trace_url_template()"
        )
    return template


def grafana_trace_url_template(grafana_url: str, tempo_datasource_uid: str, org_id: int = 1) -> str:
    """A Grafana Explore link that opens one trace in the given Tempo datasource."""
    left = json.dumps({"datasource": tempo_datasource_uid,
                       "queries": [{"refId": "A", "queryType": "traceql", "query": "__TRACE__"}],
                       "range": {"from": "now-24h", "to": "now"}}, separators=(",", ":"))
    return (f"{grafana_url.rstrip('/')}/explore?orgId={org_id}&left="
            + quote(left, safe="").replace("__TRACE__", TRACE_ID_PLACEHOLDER))


def _first_attr(detections: list[Detection], *keys: str) -> str | None:
    for d in detections:
        for key in keys:
            value = d.attributes.get(key)
            if value:
                return str(value)
    return None


def alert_labels(incident: Incident, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    ds = list(incident.detections)
    kinds = [d.kind for d in ds]
    first_kind = kinds[0] if kinds else "incident"
    labels = {
        "alertname": _ALERTNAMES.get(first_kind, "LLMIncident"),
        "severity": incident.severity.value,
        "source": "otel-llm",
        "incident_id": incident.id,
        "detector": first_kind,
    }
    found = {
        "service": _first_attr(ds, "service.name", "service"),
        "model": _first_attr(ds, sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL, "model"),
        "gpu": _first_attr(ds, sc.HW_ID, "gpu"),
        "metric": next((d.metric for d in ds if d.metric), None),
    }
    if found["gpu"] is None:
        gpu = next((c.name for c in incident.candidates if c.kind == "gpu"), None)
        found["gpu"] = gpu
    labels.update({k: v for k, v in found.items() if v})
    for k, v in (extra or {}).items():
        labels[k] = str(v)
    return labels


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def alert_annotations(incident: Incident, *, runbook_url: str | None, trace_url_template: str | None,
                      dashboard_url: str | None, max_traces: int = 5) -> dict[str, str]:
    ds = list(incident.detections)
    lines = []
    for d in ds[:10]:
        band = f" outside [{_fmt(d.band[0])}, {_fmt(d.band[1])}]" if d.band else ""
        level = f" ({d.level:g}% band)" if d.level and d.band else ""
        expl = f" - {d.explanation}" if d.explanation else ""
        lines.append(f"- {d.kind} {d.series}: value {_fmt(d.value)}{band}{level}, score {d.score:.2f}{expl}")
    if len(ds) > 10:
        lines.append(f"- ... and {len(ds) - 10} more detections")
    summary = incident.title or (
        f"{len(ds)} detection(s) ({', '.join(sorted({d.kind for d in ds}))})"
        + (f" on {ds[0].series}" if ds else "")
    )
    ann = {"summary": summary, "description": "\n".join(lines) or summary, "incident_id": incident.id}
    if incident.candidates:
        ann["root_causes"] = "\n".join(
            f"{i}. {c.kind} {c.name} (score {c.score:.2f}): {c.reason}"
            for i, c in enumerate(incident.candidates[:5], 1)
        )
        ann["root_cause"] = f"{incident.candidates[0].kind} {incident.candidates[0].name}"
    trace_ids: list[str] = []
    for source in [*(c.trace_ids for c in incident.candidates), *(d.trace_ids for d in ds)]:
        for t in source:
            if t not in trace_ids:
                trace_ids.append(t)
    if trace_ids:
        ann["trace_ids"] = ",".join(trace_ids[:20])
        if trace_url_template:
            ann["trace_urls"] = "\n".join(trace_url_template.replace(TRACE_ID_PLACEHOLDER, t)
                                          for t in trace_ids[:max_traces])
    if runbook_url:
        ann["runbook_url"] = runbook_url
    if dashboard_url:
        ann["dashboard_url"] = dashboard_url
    return ann


def incident_to_alert(incident: Incident, *, labels: Mapping[str, str], runbook_base: str | None,
                      trace_url_template: str | None, dashboard_url: str | None) -> dict[str, Any]:
    """The postable alert (``endsAt`` only when resolved; the sender adds it for firing alerts)."""
    runbook = f"{runbook_base}#{labels['alertname'].lower()}" if runbook_base else None
    ann = alert_annotations(incident, runbook_url=runbook, trace_url_template=trace_url_template,
                            dashboard_url=dashboard_url)
    alert: dict[str, Any] = {"labels": dict(labels), "annotations": ann, "startsAt": rfc3339(incident.start)}
    first_link = (ann.get("trace_urls") or "").split("\n", 1)[0] or dashboard_url
    if first_link:
        alert["generatorURL"] = first_link
    if incident.end is not None:
        alert["endsAt"] = rfc3339(max(incident.end, incident.start))
    return alert


def check_labels(labels: Mapping[str, str]) -> None:
    for key in labels:
        if not _LABEL_KEY.match(key):
            raise ValueError(f"label name {key!r} is not valid in Prometheus/Alertmanager ([a-zA-Z_][a-zA-Z0-9_]*)")
