"""Prometheus rules: generated file in sync with the code, promtool-valid, unit-tested, names verified."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from otel_llm.alert_rules import (
    RULES_PATH,
    RulesConfig,
    RulesConfigError,
    expressions,
    parse_slo,
    render_rules,
    render_yaml,
    write_rules,
)
from otel_llm.exporters._promnames import M, band_selector, prometheus_name

from otel_llm import semconv as sc

ROOT = Path(__file__).resolve().parents[1]


def test_committed_rules_match_the_code():
    assert RULES_PATH.read_text() == render_yaml(), (
        "alert_rules/otel-llm.rules.yml drifted from the code; regenerate with `otel-llm rules write alert_rules`"
    )


def test_promtool_check_rules(require):
    promtool = require.binary("promtool")
    out = subprocess.run([promtool, "check", "rules", str(RULES_PATH)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests(require):
    promtool = require.binary("promtool")
    test_file = ROOT / "alert_rules" / "tests" / "otel-llm.rules.test.yml"
    out = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_custom_slo_renders_and_checks(tmp_path, require):
    promtool = require.binary("promtool")
    cfg = parse_slo(["ttft_p99=1s", "error_rate=0.5%", "tpot_p90=50ms"])
    assert cfg.ttft.objective == pytest.approx(0.99) and cfg.ttft.target_s == 1.0
    assert cfg.error_rate == pytest.approx(0.005)
    assert cfg.tpot.target_s == pytest.approx(0.05)
    path = write_rules(tmp_path, cfg)
    text = path.read_text()
    assert 'gen_ai_server_time_to_first_token_seconds_bucket{le="1.0"}' in text
    # critical burn threshold = 14.4 x (1 - 0.99)
    assert "otel_llm:ttft_slo_bad:ratio_rate1h > 0.144" in text
    assert subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, timeout=30).returncode == 0


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["ttft_p95=0.3s"], "not a histogram bucket boundary"),
        (["ttft_p95=fast"], "expected a duration"),
        (["error_rate=2"], "between 0 and 1"),
        (["error_rate=abc"], "expected a fraction"),
        (["latency=1s"], "unknown"),
        (["ttft_p95"], "expected key=value"),
        (["kv_cache=1.5"], "(0, 1]"),
    ],
)
def test_invalid_slo_parameters_are_rejected(items, message):
    with pytest.raises(RulesConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_slo(items)


def test_for_override_and_bad_duration():
    rules = render_rules(RulesConfig(for_override="0s"))
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all("for" not in r for r in alerts)
    with pytest.raises(RulesConfigError, match="Prometheus duration"):
        RulesConfig(for_override="soon").validate()


def test_every_alert_has_runbook_summary_severity():
    rules = yaml.safe_load(RULES_PATH.read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    for wanted in ("LLMTTFTBudgetBurn", "LLMErrorBudgetBurn", "GPUXidError", "GPUEccUncorrectable",
                   "GPURowRemap", "GPUThermalThrottling", "GPUPowerThrottling", "GPUSeriesAbsent",
                   "LLMKVCacheSaturated", "LLMQueueGrowing", "LLMAnomalyScoreHigh", "LLMLearnedBandBreach"):
        assert wanted in names
    for a in alerts:
        assert a["labels"]["severity"] in {"critical", "warning", "info"}
        assert a["annotations"]["runbook_url"].endswith("#" + a["alert"].lower())
        assert a["annotations"]["summary"]
    # every runbook anchor exists in the docs
    doc = (ROOT / "docs" / "exporters.md").read_text().lower()
    for name in names:
        assert f"### {name.lower()}" in doc, f"docs/exporters.md lacks a runbook section for {name}"
    assert len(expressions()) == sum(len(g["rules"]) for g in rules["groups"])


def test_names_match_what_the_otel_prometheus_exporter_renders():
    """Render real instruments through PrometheusMetricReader and parse the text with prometheus_client."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from otel_llm._views import default_views

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = MeterProvider(metric_readers=[reader], views=default_views())
    meter = provider.get_meter("names-test")
    attrs = {sc.GEN_AI_REQUEST_MODEL: "tiny", sc.HW_ID: "GPU-1"}
    catalog = [v for v in vars(M).values() if hasattr(v, "otel")]
    for pm in catalog:
        if pm.kind == "histogram":
            meter.create_histogram(pm.otel, unit=pm.unit).record(0.2, attrs)
        elif pm.kind == "counter":
            meter.create_counter(pm.otel, unit=pm.unit).add(1, attrs)
        elif pm.kind == "updowncounter":
            meter.create_up_down_counter(pm.otel, unit=pm.unit).add(1, attrs)
        else:
            meter.create_gauge(pm.otel, unit=pm.unit).set(0.5, attrs)
    # a band gauge exported with the unit of its series still matches band_selector()
    meter.create_gauge(sc.OTEL_LLM_THRESHOLD_UPPER, unit="s").set(1.0, attrs)
    text = generate_latest(registry).decode()
    provider.shutdown()
    samples = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    for pm in catalog:
        expected = pm.bucket if pm.kind == "histogram" else pm.name
        assert expected in samples, f"{pm.otel} ({pm.kind}, unit {pm.unit!r}) is not exported as {expected}"
    assert 'gen_ai_request_model="tiny"' in text and 'hw_id="GPU-1"' in text
    import re

    pattern = re.search(r'__name__=~"([^"]+)"', band_selector("upper")).group(1)
    assert any(re.fullmatch(pattern, s) for s in samples)
    assert prometheus_name("a.b", "ms", "counter") == "a_b_milliseconds_total"


def test_unit_table_agrees_with_the_exporter():
    from opentelemetry.exporter.prometheus import _mapping
    from otel_llm.exporters import _promnames

    for unit, suffix in _promnames._UNIT_SUFFIX.items():
        assert _mapping.map_unit(unit) == suffix, unit


def test_cli_rules_write(tmp_path, require):
    from typer.testing import CliRunner

    from otel_llm.cli._app import build_app

    require.binary("promtool")
    app = build_app()
    ok = CliRunner().invoke(app, ["rules", "write", str(tmp_path), "--slo", "ttft_p99=1s", "--slo", "error_rate=2%",
                                  "--label", "team=llm", "--for", "0s"])
    assert ok.exit_code == 0, ok.output
    assert "SUCCESS" in ok.output  # promtool check rules ran on the result
    rules = yaml.safe_load((tmp_path / "otel-llm.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert all(a["labels"]["team"] == "llm" and "for" not in a for a in alerts)
    bad = CliRunner().invoke(app, ["rules", "write", str(tmp_path / "x"), "--slo", "ttft_p95=0.3s"])
    assert bad.exit_code == 2 and "not a histogram bucket boundary" in bad.output
    assert not (tmp_path / "x" / "otel-llm.rules.yml").exists()
