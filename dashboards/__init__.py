"""Grafana dashboards as code (``otel_llm.dashboards``).

Built with grafana-foundation-sdk (Grafana 10.1 schema); the generated JSON
ships beside this file and a test fails when it drifts from the code. Write
them with ``otel-llm dashboards write DIR`` (plus a provisioning YAML) or push
them with ``otel-llm dashboards push --grafana-url URL``.
"""

from __future__ import annotations

from ._dashboards import DASHBOARDS, GRAFANA_VERSION
from ._io import (
    PACKAGE_DIR,
    PROVISIONING_FILE,
    build,
    build_all,
    committed,
    expand_variables,
    promql_queries,
    provisioning_yaml,
    render,
    write,
)

__all__ = [
    "DASHBOARDS",
    "GRAFANA_VERSION",
    "PACKAGE_DIR",
    "PROVISIONING_FILE",
    "build",
    "build_all",
    "committed",
    "expand_variables",
    "promql_queries",
    "provisioning_yaml",
    "render",
    "write",
]
