"""Prometheus alerting and recording rules (``otel_llm.alert_rules``).

The rendered default (``otel-llm.rules.yml``) ships beside this file and is
regenerated with ``otel-llm rules write DIR [--slo ttft_p95=0.5s ...]``; a test
fails when the committed file drifts from the code.
"""

from __future__ import annotations

from pathlib import Path

from ._config import BURN_WINDOWS, LatencySLO, RulesConfig, RulesConfigError, parse_slo
from ._render import RULES_FILE, expressions, render_rules, render_yaml, write_rules

RULES_PATH = Path(__file__).with_name(RULES_FILE)
"""The committed, default rendering."""

__all__ = [
    "BURN_WINDOWS",
    "RULES_FILE",
    "RULES_PATH",
    "LatencySLO",
    "RulesConfig",
    "RulesConfigError",
    "expressions",
    "parse_slo",
    "render_rules",
    "render_yaml",
    "write_rules",
]
