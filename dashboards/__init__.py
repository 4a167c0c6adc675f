"""Grafana dashboards as code (``otel_llm.dashboards``); generated JSON ships beside this file."""
