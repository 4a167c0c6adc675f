"""Environment variables otel-llm reads, declared once.

Precedence everywhere: explicit argument > environment variable > ``_DEFAULT_*``
constant. Bad values are rejected at start-up with a ``ValueError`` that names
the variable (see :mod:`otel_llm._env`). Standard ``OTEL_*`` variables keep the
meaning the OpenTelemetry specification gives them.
"""

from __future__ import annotations

from typing import Final

# --- standard OpenTelemetry variables we honour ---------------------------
OTEL_SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
OTEL_RESOURCE_ATTRIBUTES: Final = "OTEL_RESOURCE_ATTRIBUTES"
OTEL_TRACES_EXPORTER: Final = "OTEL_TRACES_EXPORTER"
OTEL_METRICS_EXPORTER: Final = "OTEL_METRICS_EXPORTER"
OTEL_EXPORTER_OTLP_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTEL_EXPORTER_OTLP_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
OTEL_METRIC_EXPORT_INTERVAL: Final = "OTEL_METRIC_EXPORT_INTERVAL"
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: Final = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# --- otel-llm's own --------------------------------------------------------
OTEL_LLM_PROMETHEUS_PORT: Final = "OTEL_LLM_PROMETHEUS_PORT"
"""Port of the Prometheus endpoint when OTEL_METRICS_EXPORTER includes ``prometheus`` (default 9464)."""
OTEL_LLM_PROMETHEUS_HOST: Final = "OTEL_LLM_PROMETHEUS_HOST"
"""Bind address of that endpoint (default 127.0.0.1)."""
OTEL_LLM_STALL_THRESHOLD_MS: Final = "OTEL_LLM_STALL_THRESHOLD_MS"
"""Inter-token gap above which a gap counts as a stall (default 250 ms)."""
OTEL_LLM_CONTENT_MAX_LENGTH: Final = "OTEL_LLM_CONTENT_MAX_LENGTH"
"""Characters kept of captured prompt/completion content (default 4096)."""
OTEL_LLM_GPU_UUIDS: Final = "OTEL_LLM_GPU_UUIDS"
"""Comma-separated GPU UUIDs to stamp on spans, overriding discovery."""
OTEL_LLM_GPU_SOURCE: Final = "OTEL_LLM_GPU_SOURCE"
"""GPU collector source: auto | dcgm | dcgm-exporter | nvml | sim | none (default auto)."""
OTEL_LLM_DCGM_EXPORTER_URL: Final = "OTEL_LLM_DCGM_EXPORTER_URL"
"""dcgm-exporter metrics URL (default http://localhost:9400/metrics when that source is chosen)."""
OTEL_LLM_DCGM_HOSTENGINE: Final = "OTEL_LLM_DCGM_HOSTENGINE"
"""nv-hostengine address host:port, or ``embedded`` (default localhost:5555)."""
DCGM_BINDINGS_PATH: Final = "DCGM_BINDINGS_PATH"
"""Folder holding DCGM's Python bindings (pydcgm, dcgm_fields)."""
OTEL_LLM_GPU_POLL_INTERVAL: Final = "OTEL_LLM_GPU_POLL_INTERVAL"
"""GPU poll interval in seconds (default 5)."""
OTEL_LLM_VLLM_METRICS_URL: Final = "OTEL_LLM_VLLM_METRICS_URL"
"""vLLM /metrics URL scraped by the vLLM metrics bridge (default http://localhost:8000/metrics)."""
OTEL_LLM_VLLM_SCRAPE_INTERVAL: Final = "OTEL_LLM_VLLM_SCRAPE_INTERVAL"
"""Seconds between two scrapes of the vLLM /metrics endpoint (default 10)."""
OTEL_LLM_SERVER_MAX_QUEUE: Final = "OTEL_LLM_SERVER_MAX_QUEUE"
"""Reference server: requests allowed to wait for the generation worker before 429 (default 64)."""

# --- exporters (Alertmanager, Grafana) --------------------------------------
OTEL_LLM_ALERTMANAGER_URLS: Final = "OTEL_LLM_ALERTMANAGER_URLS"
"""Comma-separated Alertmanager base URLs; every alert goes to each (HA pairs)."""
OTEL_LLM_ALERTMANAGER_QUEUE: Final = "OTEL_LLM_ALERTMANAGER_QUEUE"
"""SQLite outbox path (default $XDG_STATE_HOME/otel-llm/alertmanager-outbox.sqlite3; ``:memory:`` = not durable)."""
OTEL_LLM_ALERTMANAGER_BEARER_TOKEN: Final = "OTEL_LLM_ALERTMANAGER_BEARER_TOKEN"
OTEL_LLM_ALERTMANAGER_USERNAME: Final = "OTEL_LLM_ALERTMANAGER_USERNAME"
OTEL_LLM_ALERTMANAGER_PASSWORD: Final = "OTEL_LLM_ALERTMANAGER_PASSWORD"
OTEL_LLM_ALERTMANAGER_CA_FILE: Final = "OTEL_LLM_ALERTMANAGER_CA_FILE"
OTEL_LLM_ALERTMANAGER_CLIENT_CERT: Final = "OTEL_LLM_ALERTMANAGER_CLIENT_CERT"
OTEL_LLM_ALERTMANAGER_CLIENT_KEY: Final = "OTEL_LLM_ALERTMANAGER_CLIENT_KEY"
OTEL_LLM_ALERTMANAGER_INSECURE: Final = "OTEL_LLM_ALERTMANAGER_INSECURE"
"""Skip TLS verification (tests only; default false)."""
OTEL_LLM_ALERTMANAGER_RESEND_INTERVAL: Final = "OTEL_LLM_ALERTMANAGER_RESEND_INTERVAL"
"""Seconds between re-sends of firing alerts (default 60; keep below Alertmanager's resolve_timeout)."""
OTEL_LLM_TRACE_URL_TEMPLATE: Final = "OTEL_LLM_TRACE_URL_TEMPLATE"
"""URL with ``{trace_id}`` for trace links in alerts (e.g. a Grafana Explore/Tempo link)."""
OTEL_LLM_RUNBOOK_BASE_URL: Final = "OTEL_LLM_RUNBOOK_BASE_URL"
"""Base of runbook links; ``#<alertname>`` is appended."""
GRAFANA_URL: Final = "GRAFANA_URL"
"""Grafana base URL for ``otel-llm dashboards push`` and the annotation exporter."""
GRAFANA_TOKEN: Final = "GRAFANA_TOKEN"
"""Grafana service-account token (Bearer). Alternatively GRAFANA_USERNAME/GRAFANA_PASSWORD (basic auth)."""
GRAFANA_USERNAME: Final = "GRAFANA_USERNAME"
GRAFANA_PASSWORD: Final = "GRAFANA_PASSWORD"
OTEL_LLM_INSTRUMENTATIONS: Final = "OTEL_LLM_INSTRUMENTATIONS"
"""Instrumentors ``configure()`` turns on: ``all`` (default), ``none``, or a comma list (transformers,torch,...)."""
OTEL_LLM_TORCH_MODULES: Final = "OTEL_LLM_TORCH_MODULES"
"""Comma list of ``nn.Module`` class names (or dotted paths) whose forward() gets a span (default: none)."""
