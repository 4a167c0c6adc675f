"""``otel-llm gpu``: --once --json against real scrapes served on loopback, the simulator, and a dead URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from otel_llm.collectors import ExpositionServer
from typer.testing import CliRunner

from otel_llm.cli import _gpu

SCRAPES = Path(__file__).parent / "fixtures" / "dcgm" / "scrapes"


@pytest.fixture
def app():
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """otel-llm (test frame)"""

    _gpu.register(app, typer.Typer())
    return app


def _json(app, *args):
    result = CliRunner().invoke(app, ["gpu", *args])
    return result, (json.loads(result.stdout) if result.stdout.strip().startswith("{") else None)


def test_once_json_from_dcgm_exporter(app):
    text = (SCRAPES / "h100x8-k8s-vllm-sampled.prom").read_text()
    with ExpositionServer(lambda: text) as server:
        result, doc = _json(app, "--source", "dcgm-exporter", "--url", server.url, "--once", "--json")
    assert result.exit_code == 0, result.output
    assert list(doc) == ["gpus"] and len(doc["gpus"]) == 8
    g0 = doc["gpus"][0]
    assert set(g0) == {"uuid", "index", "model", "host", "fields", "metrics"}
    assert (g0["uuid"], g0["index"], g0["model"], g0["host"]) == (
        "GPU-c4529c8d-69c4-b61d-e0bc-7b2460096005", 0, "NVIDIA H100 80GB HBM3", "gpu-node-1")
    assert g0["fields"] == {"150": 30, "155": 113.611, "203": 0, "204": 0}
    assert g0["metrics"]["hw.power"] == 113.611 and g0["metrics"]["hw.temperature"] == 30
    assert g0["metrics"]["hw.gpu.utilization"] == 0
    assert "204" not in doc["gpus"][7]["fields"]


def test_once_json_t4_metrics_in_otel_units(app):
    text = (SCRAPES / "t4-loaded-gpu-operator.prom").read_text()
    with ExpositionServer(lambda: text) as server:
        result, doc = _json(app, "--source", "dcgm-exporter", "--url", server.url, "--once", "--json")
    (g,) = doc["gpus"]
    assert g["fields"]["155"] == 68.244 and g["fields"]["100"] == 660
    m = g["metrics"]
    assert m["hw.gpu.utilization"] == pytest.approx(0.91) and m["hw.energy"] == pytest.approx(15152422.938)
    assert m["otel_llm.gpu.clock.sm"] == 660_000_000 and m["hw.gpu.memory.usage"] == 5120 * 2**20


def test_once_json_from_the_simulator_with_a_fault(app):
    result, doc = _json(app, "--source", "sim", "--sim-gpus", "2", "--sim-model", "T4", "--sim-load", "0.9",
                        "--sim-fault", "xid48:1@10", "--sim-elapsed", "120", "--once", "--json")
    assert result.exit_code == 0, result.output
    g0, g1 = doc["gpus"]
    assert g0["model"] == "Tesla T4" and g0["index"] == 0
    assert g1["fields"]["230"] == 48 and "230" not in g0["fields"]
    assert g1["fields"]["311"] == 1
    assert 60 < g0["metrics"]["hw.power"] < 70  # a loaded T4 sits at its 70 W cap


def test_unreachable_exporter_fails_clearly(app):
    result = CliRunner().invoke(app, ["gpu", "--source", "dcgm-exporter", "--url", "http://127.0.0.1:9/metrics",
                                      "--once", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"gpus": []}
    assert "did not answer" in result.stderr


def test_bad_source_and_live_table(app):
    result = CliRunner().invoke(app, ["gpu", "--source", "nope", "--once"])
    assert result.exit_code == 2 and "OTEL_LLM_GPU_SOURCE" in result.stderr
    result = CliRunner().invoke(app, ["gpu", "--source", "sim", "--sim-gpus", "2", "--count", "2", "--interval",
                                      "0.05", "--sim-fault", "thermal:1@0", "--sim-load", "0.8", "--sim-elapsed", "200"],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "GPUs via sim" in result.stdout and "thermal" in result.stdout and "degraded" not in result.stdout
