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
