"""Sinks for detections and incidents (``otel_llm.exporters``).

* :class:`AlertmanagerExporter` -- durable, retried alerts to Alertmanager (API v2), HA fan-out.
* :class:`GrafanaClient`, :class:`GrafanaAnnotationExporter` -- dashboards/folders via Grafana's HTTP
  API and incidents as Grafana annotations.
* :class:`DetectionMetricsExporter` -- detections, scores and bands as OTel metrics and incidents as
  OTel log records, through the configured (OTLP) providers.
* :mod:`otel_llm.exporters._promnames` -- the OTel -> Prometheus name mapping used by the
  dashboards and rules.
"""

from ._alertmanager import AlertmanagerExporter, DeliveryStats, default_queue_path
from ._alerts import grafana_trace_url_template, incident_to_alert
from ._grafana import GrafanaAnnotationExporter, GrafanaClient, GrafanaError, push_dashboards
from ._http import HttpOptions, redact_url
from ._otlp import DetectionMetricsExporter
from ._promnames import DCGM, L, M, PromMetric, band_selector, gpu_series, prometheus_name

__all__ = [
    "DCGM",
    "AlertmanagerExporter",
    "DeliveryStats",
    "DetectionMetricsExporter",
    "GrafanaAnnotationExporter",
    "GrafanaClient",
    "GrafanaError",
    "HttpOptions",
    "L",
    "M",
    "PromMetric",
    "band_selector",
    "default_queue_path",
    "gpu_series",
    "grafana_trace_url_template",
    "incident_to_alert",
    "prometheus_name",
    "push_dashboards",
    "redact_url",
]
