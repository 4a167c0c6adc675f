"""``otel-llm eval generate``: a short headless run writes layouts that the evaluation harnesses read."""

from __future__ import annotations

import json

import pytest

from otel_llm.demo import Fault
from otel_llm.demo._generate import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    faults = [Fault("slow_dependency", 12.0, 17.0, {"service": "retrieval", "factor": 12.0}),
              Fault("gpu_xid", 18.0, 23.0, {"gpu": 0, "xid": 79})]
    summary = generate(out, runs=1, seed=5, duration_s=26.0, speedup=8.0, max_rate=4.0, faults=faults)
    return out, summary


def test_nab_layout_is_readable_by_the_anomaly_harness(dataset):
    from otel_llm.evaluation.anomaly import evaluate
    from otel_llm.evaluation.nab import load_nab

    out, summary = dataset
    root = out / "nab"
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    files = sorted(p.relative_to(root / "data").as_posix() for p in (root / "data").rglob("*.csv"))
    assert files and sorted(labels) == files
    assert summary["nab_series"] == len(files)
    for f in files:
        lines = (root / "data" / f).read_text().splitlines()
        assert lines[0] == "timestamp,value" and len(lines) > 20
    # the retrieval latency series is labelled with the slow dependency, GPU temperature is not
    ret = next(k for k in labels if "retrieval" in k)
    assert len(labels[ret]) == 1
    temps = [k for k in labels if "hw.temperature" in k]
    assert temps and all(labels[k] == [] for k in temps)
    series = load_nab(root)
    assert len(series) == len(files)
    result = evaluate(root, detector="threshold", series=series)
    assert result["series"] == len(files) and result["points"] > 0


def test_rca_cases_are_readable_by_the_rca_harness(dataset):
    from otel_llm.evaluation.rca import evaluate, load_cases

    out, summary = dataset
    cases = load_cases(out / "rca" / "cases.jsonl")
    assert [c.id for c in cases] == ["run00-slow_dependency", "run00-gpu_xid"]
    assert cases[0].root_cause["service"] == "retrieval"
    assert cases[1].root_cause["gpu"].startswith("GPU-")
    for c in cases:
        assert c.spans.exists() and c.fault_end > c.fault_start
    result = evaluate(cases)
    assert len(result["per_case"]) == 2
    assert all(0.0 <= result[k] <= 1.0 for k in ("AC@1", "AC@3", "Avg@5"))


def test_spans_are_otlp_json_with_hex_ids(dataset):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out, _ = dataset
    path = next((out / "rca" / "spans").glob("*.jsonl"))
    services = set()
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        for rs in obj["resourceSpans"]:
            services |= {a["value"]["stringValue"] for a in rs["resource"]["attributes"] if a["key"] == "service.name"}
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    assert len(sp["traceId"]) == 32 and int(sp["traceId"], 16) >= 0
                    assert len(sp["spanId"]) == 16
                    assert isinstance(sp["kind"], int)
        # hex ids are not valid proto3-JSON bytes; the rest of the message is
        for rs in obj["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for sp in ss["spans"]:
                    sp.pop("traceId"), sp.pop("spanId"), sp.pop("parentSpanId", None)
        json_format.ParseDict(obj, ExportTraceServiceRequest())
    assert services == {"llm-gateway", "retrieval", "llm-server"}


def test_ground_truth_and_readme(dataset):
    out, _ = dataset
    truth = json.loads((out / "runs" / "run00" / "faults.json").read_text())
    assert [f["kind"] for f in truth["faults"]] == ["slow_dependency", "gpu_xid"]
    assert truth["faults"][1]["root_cause"]["gpu"] == truth["gpus"][0]
    assert "CC BY 4.0" in (out / "README.md").read_text()


def test_cli_registers_generate():
    from typer.testing import CliRunner

    from otel_llm.cli._app import build_app

    result = CliRunner().invoke(build_app(), ["eval", "generate", "--help"])
    assert result.exit_code == 0 and "--runs" in result.output
