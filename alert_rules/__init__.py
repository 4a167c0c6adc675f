"""Prometheus alerting and recording rules (``otel_llm.alert_rules``); rendered YAML ships beside this file."""
