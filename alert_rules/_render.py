"""Render otel-llm's Prometheus recording and alerting rules from a :class:`RulesConfig`.

Metric names come from :mod:`otel_llm.exporters._promnames` only. GPU rules
read our OTel GPU series *or* raw dcgm-exporter series (whichever a site
scrapes), normalised to one ``gpu`` label holding the GPU UUID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from otel_llm.exporters._promnames import DCGM, L, M, gpu_series, gpu_temperature, new_or_increased

from ._config import BURN_WINDOWS, RulesConfig

RULES_FILE = "otel-llm.rules.yml"
_BY_MODEL = f"sum by ({L.MODEL})"


def _le(value: float) -> str:
    # The OTel Prometheus exporter prints bucket bounds with Python's float repr ("0.5", "1.0").
    return repr(float(value))


def _g(x: float) -> str:
    return f"{x:.6g}"


class _Group:
    def __init__(self, name: str, cfg: RulesConfig, interval: str | None = None) -> None:
        self.name, self.cfg, self.interval = name, cfg, interval
        self.rules: list[dict[str, Any]] = []

    def record(self, record: str, expr: str) -> None:
        self.rules.append({"record": record, "expr": expr})

    def alert(self, name: str, expr: str, *, for_: str, severity: str, summary: str, description: str,
              labels: dict[str, str] | None = None) -> None:
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        duration = self.cfg.for_override if self.cfg.for_override is not None else for_
        if duration not in ("0s", "0m"):
            rule["for"] = duration
        rule["labels"] = {"severity": severity, "source": "otel-llm", **(labels or {}), **self.cfg.extra_labels}
        rule["annotations"] = {
            "summary": summary,
            "description": description,
            "runbook_url": f"{self.cfg.runbook_base}#{name.lower()}",
        }
        self.rules.append(rule)

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.interval:
            out["interval"] = self.interval
        out["rules"] = self.rules
        return out


def _windows() -> list[str]:
    seen: list[str] = []
    for long_w, short_w, _, _ in BURN_WINDOWS:
        for w in (short_w, long_w):
            if w not in seen:
                seen.append(w)
    return seen


def _recording(cfg: RulesConfig) -> list[_Group]:
    serving = _Group("otel-llm.serving.recording", cfg)
    serving.record("otel_llm:requests:rate5m", f"{_BY_MODEL} (rate({M.REQUEST_DURATION.count}[5m]))")
    serving.record(
        "otel_llm:request_errors:ratio_rate5m",
        f'({_BY_MODEL} (rate({M.REQUEST_DURATION.count}{{{L.ERROR_TYPE}!=""}}[5m])) '
        f"or 0 * {_BY_MODEL} (rate({M.REQUEST_DURATION.count}[5m])))"
        f" / {_BY_MODEL} (rate({M.REQUEST_DURATION.count}[5m]))",
    )
    for metric, short in ((M.TTFT, "ttft"), (M.TPOT, "tpot"), (M.REQUEST_DURATION, "request_duration")):
        for q in (0.5, 0.95, 0.99):
            serving.record(
                f"otel_llm:{short}_seconds:p{int(q * 100)}_5m",
                f"histogram_quantile({q}, sum by ({L.MODEL}, le) (rate({metric.bucket}[5m])))",
            )
    serving.record(
        "otel_llm:output_tokens:rate5m",
        f'{_BY_MODEL} (rate({M.TOKEN_USAGE.sum}{{{L.TOKEN_TYPE}="output"}}[5m]))',
    )

    slo = _Group("otel-llm.slo.recording", cfg)
    for w in _windows():
        for name, metric, target in (("ttft", M.TTFT, cfg.ttft.target_s), ("tpot", M.TPOT, cfg.tpot.target_s)):
            slo.record(
                f"otel_llm:{name}_slo_bad:ratio_rate{w}",
                f'1 - ({_BY_MODEL} (rate({metric.bucket}{{le="{_le(target)}"}}[{w}]))'
                f" / {_BY_MODEL} (rate({metric.count}[{w}])))",
            )
        slo.record(
            f"otel_llm:error_slo_bad:ratio_rate{w}",
            f'({_BY_MODEL} (rate({M.REQUEST_DURATION.count}{{{L.ERROR_TYPE}!=""}}[{w}])) '
            f"or 0 * {_BY_MODEL} (rate({M.REQUEST_DURATION.count}[{w}])))"
            f" / {_BY_MODEL} (rate({M.REQUEST_DURATION.count}[{w}]))",
        )

    gpu = _Group("otel-llm.gpu.recording", cfg)
    gpu.record("otel_llm_gpu:temperature:celsius", gpu_series(gpu_temperature(), DCGM.GPU_TEMP))
    gpu.record("otel_llm_gpu:power:watts", gpu_series(M.POWER.name, DCGM.POWER))
    gpu.record("otel_llm_gpu:utilization:ratio", gpu_series(M.GPU_UTIL.name, DCGM.GPU_UTIL, scale=0.01))
    return [serving, slo, gpu]


def _slo_alerts(cfg: RulesConfig) -> _Group:
    group = _Group("otel-llm.slo.alerts", cfg)
    specs = (
        ("LLMTTFTBudgetBurn", "ttft", cfg.ttft.budget,
         f"time to first token above {cfg.ttft.target_s:g}s for more than {cfg.ttft.budget:.2%} of requests"),
        ("LLMTPOTBudgetBurn", "tpot", cfg.tpot.budget,
         f"time per output token above {cfg.tpot.target_s:g}s for more than {cfg.tpot.budget:.2%} of requests"),
        ("LLMErrorBudgetBurn", "error", cfg.error_rate, f"more than {cfg.error_rate:.2%} of requests failing"),
    )
    for alert, sli, budget, objective_text in specs:
        for severity in ("critical", "warning"):
            clauses = []
            for long_w, short_w, factor, sev in BURN_WINDOWS:
                if sev != severity:
                    continue
                threshold = _g(factor * budget)
                clauses.append(
                    f"(otel_llm:{sli}_slo_bad:ratio_rate{long_w} > {threshold}"
                    f" and otel_llm:{sli}_slo_bad:ratio_rate{short_w} > {threshold})"
                )
            group.alert(
                alert, "\n or ".join(clauses), for_="2m" if severity == "critical" else "15m", severity=severity,
                labels={"slo": sli},
                summary=f"{{{{ $labels.{L.MODEL} }}}}: {sli} SLO error budget burning too fast",
                description=(f"SLO: no {objective_text}. The budget is being spent at "
                             f"{'14.4x/6x' if severity == 'critical' else '3x/1x'} the sustainable rate "
                             "(multi-window, multi-burn-rate)."),
            )
    return group


def _serving_alerts(cfg: RulesConfig) -> _Group:
    group = _Group("otel-llm.serving.alerts", cfg)
    group.alert(
        "LLMKVCacheSaturated", f"max without (otel_scope_name, otel_scope_version, otel_scope_schema_url) "
        f"({M.KV_CACHE}) > {_g(cfg.kv_cache_saturation)}", for_="5m", severity="warning",
        summary="KV cache above {{ $value | humanizePercentage }} on {{ $labels.instance }}",
        description="The KV cache is nearly full: new requests queue or running ones are preempted.",
    )
    group.alert(
        "LLMQueueGrowing",
        f"sum by (job, instance) ({M.WAITING}) > {_g(cfg.queue_waiting_max)}"
        f" and sum by (job, instance) (deriv({M.WAITING}[5m])) > 0",
        for_="5m", severity="warning",
        summary="{{ $value }} requests waiting on {{ $labels.instance }} and the queue keeps growing",
        description="Arrivals exceed serving capacity; time to first token will follow the queue up.",
    )
    return group


def _gpu_alerts(cfg: RulesConfig) -> _Group:
    group = _Group("otel-llm.gpu.alerts", cfg)
    xid = gpu_series(new_or_increased(M.XID_EVENTS.name, "5m"), f"((changes({DCGM.XID}[5m]) > 0 and {DCGM.XID} > 0) or ({DCGM.XID} > 0 unless {DCGM.XID} offset 5m))")
    group.alert("GPUXidError", f"({xid}) > 0", for_="0s", severity="critical",
                summary="XID error on GPU {{ $labels.gpu }}",
                description="The NVIDIA driver reported an XID event (79: fell off the bus, 48/63/64/94/95: "
                            "memory errors, 74: NVLink). Drain the GPU and check `dmesg`.")
    ecc = gpu_series(new_or_increased(f'{M.HW_ERRORS}{{{L.ERROR_TYPE}=~".*(uncorrect|dbe).*"}}', "10m"),
                     f"increase({DCGM.ECC_DBE}[10m])")
    group.alert("GPUEccUncorrectable", f"({ecc}) > 0", for_="0s", severity="critical",
                summary="Uncorrectable ECC errors on GPU {{ $labels.gpu }}",
                description="Double-bit/uncorrectable ECC errors corrupt results; drain and reset the GPU.")
    remap = gpu_series(new_or_increased(f'{M.ROW_REMAP}{{{L.ROW_REMAP_TYPE}="uncorrectable"}}', "10m"),
                       f"((increase({DCGM.UNCORRECTABLE_REMAPPED}[10m]) > 0) or ({DCGM.ROW_REMAP_FAILURE} > 0))")
    group.alert("GPURowRemap", f"({remap}) > 0", for_="0s", severity="critical",
                summary="Memory row remapped after an uncorrectable error on GPU {{ $labels.gpu }}",
                description="A row was remapped because of an uncorrectable memory error (or remapping failed): "
                            "the GPU needs a reset; repeated events or a failure mean RMA.")
    for kind, dcgm in (("thermal", DCGM.THERMAL_VIOLATION), ("power", DCGM.POWER_VIOLATION)):
        expr = gpu_series(f'{M.THROTTLE}{{{L.THROTTLE_REASON}=~".*{kind}.*"}}',
                          f"(rate({dcgm}[1m]) > bool 0)")
        group.alert(f"GPU{kind.capitalize()}Throttling", f"({expr}) > 0", for_="2m", severity="warning",
                    summary=f"GPU {{{{ $labels.gpu }}}} is {kind}-throttling",
                    description=f"Clocks are reduced for {kind} reasons; decode speed (TPOT) drops with them.")
    group.alert("GPUTemperatureHigh", f"otel_llm_gpu:temperature:celsius > {_g(cfg.gpu_temperature_max_c)}",
                for_="5m", severity="warning",
                summary="GPU {{ $labels.gpu }} at {{ $value }} °C",
                description="Sustained high temperature precedes thermal throttling.")
    vanished = gpu_series(f"max_over_time({M.GPU_UTIL}[15m]) unless {M.GPU_UTIL}",
                          f"max_over_time({DCGM.GPU_UTIL}[15m]) unless {DCGM.GPU_UTIL}")
    group.alert("GPUSeriesAbsent", vanished, for_="1m", severity="critical",
                summary="GPU {{ $labels.gpu }} stopped reporting",
                description="A GPU that reported in the last 15 minutes has no series now: it fell off the bus "
                            "(XID 79), its exporter died, or the node is gone.")
    return group


def _anomaly_alerts(cfg: RulesConfig) -> _Group:
    group = _Group("otel-llm.anomaly.alerts", cfg)
    threshold_detections = f'{M.DETECTIONS}{{{L.DETECTOR}="threshold"}}'
    group.alert(
        "LLMAnomalyScoreHigh",
        f"max without (otel_scope_name, otel_scope_version, otel_scope_schema_url) ({M.ANOMALY_SCORE})"
        f" > {_g(cfg.anomaly_score_min)}",
        for_="2m", severity="warning",
        summary="Anomaly score {{ $value | printf \"%.2f\" }} for {{ $labels." + L.SERIES + " }}",
        description="otel-llm's detectors score this series as abnormal against its learned behaviour.",
    )
    group.alert(
        "LLMLearnedBandBreach",
        f"sum by ({L.METRIC}) ({new_or_increased(threshold_detections, '5m')})",
        for_="0s", severity="warning",
        summary="{{ $labels." + L.METRIC + " }} left its learned band",
        description="The dynamic-threshold detector saw the series leave its forecast band persistently.",
    )
    return group


def render_rules(cfg: RulesConfig | None = None) -> dict[str, Any]:
    """The rule file as a dict (``{"groups": [...]}``)."""
    cfg = (cfg or RulesConfig()).validate()
    groups = [*_recording(cfg), _slo_alerts(cfg), _serving_alerts(cfg), _gpu_alerts(cfg), _anomaly_alerts(cfg)]
    return {"groups": [g.render() for g in groups]}


def render_yaml(cfg: RulesConfig | None = None) -> str:
    header = ("# Generated by `otel-llm rules write` from otel_llm.alert_rules; do not edit by hand.\n"
              "# Checked with `promtool check rules`; unit tests in alert_rules/tests/.\n")
    return header + yaml.safe_dump(render_rules(cfg), sort_keys=False, width=1000, allow_unicode=True)


def write_rules(directory: str | Path, cfg: RulesConfig | None = None) -> Path:
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    out = path / RULES_FILE
    out.write_text(render_yaml(cfg))
    return out


def expressions(rules: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(rule name, PromQL) for every rule: what the backends test executes."""
    rules = rules or render_rules()
    return [(r.get("alert") or r["record"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
