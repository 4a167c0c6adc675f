"""Dashboards as code: committed JSON in sync, structure, datasource variables, queries well-formed."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from otel_llm.exporters._promnames import DCGM, M

from otel_llm import dashboards

UIDS = ["otel-llm-serving", "otel-llm-gpu", "otel-llm-anomalies", "otel-llm-traces"]


def test_committed_json_matches_the_code():
    built = dashboards.build_all()
    assert sorted(built) == sorted(UIDS)
    on_disk = dashboards.committed()
    assert sorted(on_disk) == sorted(UIDS), "regenerate with: otel-llm dashboards write otel_llm/dashboards"
    for uid in UIDS:
        path = dashboards.PACKAGE_DIR / f"{uid}.json"
        assert path.read_text() == dashboards.render(built[uid]), (
            f"dashboards/{uid}.json drifted from dashboards/_dashboards.py; regenerate it with "
            "`python -c 'from otel_llm import dashboards as d; [(d.PACKAGE_DIR / (u + \".json\")).write_text("
            "d.render(x)) for u, x in d.build_all().items()]'`"
        )


def _panels(d):
    for p in d["panels"]:
        yield p
        yield from p.get("panels") or []


def _datasource_refs(obj, path="$"):
    if isinstance(obj, dict):
        if "datasource" in obj and isinstance(obj["datasource"], dict):
            yield path, obj["datasource"]
        for k, v in obj.items():
            yield from _datasource_refs(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _datasource_refs(v, f"{path}[{i}]")


@pytest.mark.parametrize("uid", UIDS)
def test_structure_and_datasource_variables(uid):
    d = dashboards.build(uid)
    assert d["uid"] == uid and d["title"].startswith("otel-llm / ")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["prometheus"]["type"] == "datasource" and variables["prometheus"]["query"] == "prometheus"
    refs = list(_datasource_refs(d))
    assert refs
    for path, ref in refs:
        if ref == {"type": "grafana", "uid": "-- Grafana --"}:
            assert ".annotations." in path, f"{path}: Grafana's built-in datasource only for annotations"
            continue
        assert ref["uid"] in ("${prometheus}", "${tempo}"), f"{path}: datasource {ref} is not a template variable"
        assert ref["type"] == ref["uid"][2:-1]
        if ref["uid"] == "${tempo}":
            assert variables["tempo"]["type"] == "datasource" and variables["tempo"]["query"] == "tempo"
    titles = [p["title"] for p in _panels(d)]
    assert len(titles) == len(set(titles)), "panel titles are unique"
    ids = [p["id"] for p in _panels(d)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for p in _panels(d):
        if p["type"] == "row":
            continue
        assert p["targets"], f"panel {p['title']!r} has no query"
        refids = [t["refId"] for t in p["targets"]]
        assert all(refids) and len(refids) == len(set(refids))
        assert p["gridPos"]["w"] <= 24


def test_dashboards_round_trip_through_the_sdk_models():
    """The JSON parses back into the SDK's Dashboard model (its schema), panel types known."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    for uid in UIDS:
        raw = dashboards.build(uid)
        model = Dashboard.from_json(raw)
        assert model.uid == uid and len(model.panels) == len(raw["panels"])
        assert {p["type"] for p in raw["panels"]} <= {"row", "timeseries", "stat", "table"}


def test_content_covers_the_signals():
    text = {uid: json.dumps(dashboards.build(uid)) for uid in UIDS}
    for m in (M.TTFT.bucket, M.TPOT.bucket, M.REQUEST_DURATION.bucket, M.TOKEN_USAGE.sum, M.RUNNING.name,
              M.WAITING.name, M.KV_CACHE.name, M.QUEUE_DURATION.bucket):
        assert m in text["otel-llm-serving"], m
    for m in (M.SM_ACTIVE.name, M.TENSOR_ACTIVE.name, M.GPU_MEM_USAGE.name, M.POWER.name, M.TEMPERATURE.name,
              M.CLOCK_SM.name, M.THROTTLE.name, M.XID_EVENTS.name, M.HW_ERRORS.name, DCGM.GPU_TEMP, DCGM.XID,
              DCGM.SM_CLOCK, DCGM.POWER):
        assert m in text["otel-llm-gpu"], m
    assert "otel_llm_threshold_upper" in text["otel-llm-anomalies"] and M.ANOMALY_SCORE.name in text["otel-llm-anomalies"]
    traces = dashboards.build("otel-llm-traces")
    traceql = [t["query"] for p in traces["panels"] for t in p.get("targets", []) if t.get("queryType") == "traceql"]
    assert any("status = error" in q for q in traceql) and any("duration > $slow" in q for q in traceql)
    exemplar_targets = [t for p in traces["panels"] for t in p.get("targets", []) if t.get("exemplar")]
    assert exemplar_targets


def test_every_promql_query_is_listed_and_expands():
    for uid in UIDS:
        queries = dashboards.promql_queries(dashboards.build(uid))
        assert queries
        for where, expr in queries:
            expanded = dashboards.expand_variables(expr)
            assert not re.search(r"\$\w", expanded.replace("$1", "")), f"{uid} {where}: unexpanded variable"
            assert expanded.count("(") == expanded.count(")"), f"{uid} {where}"


def test_write_files_and_provisioning(tmp_path):
    paths = dashboards.write(tmp_path, folder="LLM")
    names = sorted(p.name for p in paths)
    assert names == sorted([f"{u}.json" for u in UIDS] + [dashboards.PROVISIONING_FILE])
    prov = yaml.safe_load((tmp_path / dashboards.PROVISIONING_FILE).read_text())
    (provider,) = prov["providers"]
    assert prov["apiVersion"] == 1 and provider["type"] == "file" and provider["folder"] == "LLM"
    assert provider["options"]["path"] == str(tmp_path.resolve())
    assert json.loads((tmp_path / "otel-llm-gpu.json").read_text())["uid"] == "otel-llm-gpu"


def test_cli_write(tmp_path):
    from typer.testing import CliRunner

    from otel_llm.cli._app import build_app

    result = CliRunner().invoke(build_app(), ["dashboards", "write", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "otel-llm-serving.json").exists()
