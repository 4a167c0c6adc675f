"""Declarative configuration of the rendered rules: SLO targets and knobs.

Parse user input with :func:`parse_slo` (``ttft_p95=0.5s``, ``error_rate=0.01``)
into a :class:`RulesConfig`; :meth:`RulesConfig.validate` rejects what
Prometheus could not evaluate (a TTFT target that is not a histogram bucket
boundary, an objective outside (0, 1), a malformed duration) with a message
that says how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from otel_llm import semconv as sc

_DURATION = re.compile(r"^(\d+(?:ms|s|m|h|d|w|y))+$")
_LATENCY_SLO = re.compile(r"^(ttft|tpot)_p(\d{2}(?:\.\d+)?)$")
DEFAULT_RUNBOOK_BASE = "https://github.com/otel-llm/otel-llm/blob/main/docs/exporters.md"

# Multi-window, multi-burn-rate alerting (Google SRE workbook, ch. 5, table 5-8): for a 30-day
# budget, (long window, short window, burn-rate factor, severity).
BURN_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)


class RulesConfigError(ValueError):
    """Invalid rule configuration; the message names the parameter and the accepted form."""


@dataclass(frozen=True)
class LatencySLO:
    """``quantile`` of requests (0.95 for p95) have the latency at most ``target_s``."""

    target_s: float
    objective: float

    @property
    def budget(self) -> float:
        return 1.0 - self.objective


@dataclass(frozen=True)
class RulesConfig:
    ttft: LatencySLO = LatencySLO(target_s=0.5, objective=0.95)
    tpot: LatencySLO = LatencySLO(target_s=0.1, objective=0.95)
    error_rate: float = 0.01
    """Allowed fraction of failed requests (SLO objective = 1 - error_rate)."""
    kv_cache_saturation: float = 0.95
    queue_waiting_max: float = 16.0
    anomaly_score_min: float = 0.9
    gpu_temperature_max_c: float = 85.0
    runbook_base: str = DEFAULT_RUNBOOK_BASE
    for_override: str | None = None
    """Replace every ``for:`` duration (tests use ``0s`` to fire at once)."""
    extra_labels: dict[str, str] = field(default_factory=dict)

    def validate(self) -> RulesConfig:
        for name, slo, buckets in (("ttft", self.ttft, sc.BUCKETS_TTFT_S), ("tpot", self.tpot, sc.BUCKETS_TPOT_S)):
            if not 0.0 < slo.objective < 1.0:
                raise RulesConfigError(f"{name}: objective {slo.objective} must be between 0 and 1 (e.g. p95 -> 0.95)")
            if not any(math.isclose(slo.target_s, b) for b in buckets):
                raise RulesConfigError(
                    f"{name}: target {slo.target_s:g}s is not a histogram bucket boundary, so Prometheus cannot "
                    f"count requests under it; choose one of {', '.join(f'{b:g}s' for b in buckets)}"
                )
        if not 0.0 < self.error_rate < 1.0:
            raise RulesConfigError(f"error_rate: {self.error_rate} must be a fraction between 0 and 1, e.g. 0.01")
        if not 0.0 < self.kv_cache_saturation <= 1.0:
            raise RulesConfigError(f"kv_cache: {self.kv_cache_saturation} must be a fraction in (0, 1]")
        if not 0.0 < self.anomaly_score_min <= 1.0:
            raise RulesConfigError(f"anomaly_score: {self.anomaly_score_min} must be in (0, 1]")
        if self.queue_waiting_max <= 0:
            raise RulesConfigError("queue_waiting: must be a positive number of requests")
        if self.for_override is not None and not _DURATION.match(self.for_override):
            raise RulesConfigError(f"for: {self.for_override!r} is not a Prometheus duration such as 0s, 30s or 5m")
        return self


def _seconds(raw: str, key: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", raw)
    if not m:
        raise RulesConfigError(f"--slo {key}={raw!r}: expected a duration such as 0.5s or 500ms")
    value = float(m.group(1))
    return value / 1000.0 if m.group(2) == "ms" else value


def _fraction(raw: str, key: str) -> float:
    try:
        value = float(raw[:-1]) / 100.0 if raw.strip().endswith("%") else float(raw)
    except ValueError:
        raise RulesConfigError(f"--slo {key}={raw!r}: expected a fraction such as 0.01 or 1%") from None
    if not math.isfinite(value):
        raise RulesConfigError(f"--slo {key}={raw!r}: must be finite")
    return value


_SIMPLE = {
    "error_rate": "error_rate",
    "kv_cache": "kv_cache_saturation",
    "anomaly_score": "anomaly_score_min",
}


def parse_slo(items: Iterable[str], base: RulesConfig | None = None) -> RulesConfig:
    """Apply ``key=value`` items to ``base``.

    Keys: ``ttft_pNN=<seconds>`` / ``tpot_pNN=<seconds>`` (p95 -> 95 % of requests
    at most that latency), ``error_rate=<fraction|%>``, ``kv_cache=<fraction>``,
    ``anomaly_score=<0..1>``, ``queue_waiting=<requests>``, ``gpu_temp=<°C>``.
    """
    cfg = base or RulesConfig()
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not raw.strip():
            raise RulesConfigError(f"--slo {item!r}: expected key=value, e.g. ttft_p95=0.5s or error_rate=0.01")
        m = _LATENCY_SLO.match(key)
        if m:
            slo = LatencySLO(target_s=_seconds(raw, key), objective=float(m.group(2)) / 100.0)
            cfg = dataclasses.replace(cfg, **{m.group(1): slo})
        elif key in _SIMPLE:
            cfg = dataclasses.replace(cfg, **{_SIMPLE[key]: _fraction(raw, key)})
        elif key == "queue_waiting":
            cfg = dataclasses.replace(cfg, queue_waiting_max=_fraction(raw, key))
        elif key == "gpu_temp":
            cfg = dataclasses.replace(cfg, gpu_temperature_max_c=_fraction(raw.rstrip("C").rstrip("°"), key))
        else:
            raise RulesConfigError(
                f"--slo {key!r} is unknown; use ttft_pNN, tpot_pNN, error_rate, kv_cache, anomaly_score, "
                "queue_waiting or gpu_temp"
            )
    return cfg.validate()
