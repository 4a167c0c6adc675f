"""End-to-end: a short, bounded demo run on loopback with two injected faults.

Real parts: two reference-server replicas on the tiny model, the retrieval
service and the gateway (three tracer providers), the collectors' GPU
simulator, the threshold / PyOD / RCA processors. Only the GPU is simulated.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from typer.testing import CliRunner

from otel_llm.demo import DemoConfig, Fault, run_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from rich.console import Console

    out = tmp_path_factory.mktemp("report")
    faults = [
        Fault("slow_dependency", 11.0, 17.0, {"service": "retrieval", "factor": 12.0}),
        Fault("gpu_xid", 17.0, 22.0, {"gpu": 1, "xid": 79}),
    ]
    cfg = DemoConfig(duration_s=24.0, speedup=8.0, max_rate=4.0, faults=faults, report_dir=out, window_s=1.0,
                     min_history=8, seed=3)
    console = Console(record=True, width=140, force_terminal=False)
    run = run_demo(cfg, console=console, live=False)
    return run, out, console.export_text()


def test_services_produce_multi_service_traces_with_gpu_stamps(demo):
    run, _, _ = demo
    spans = list(run.sink.readable)
    services = Counter(str(s.resource.attributes["service.name"]) for s in spans)
    assert set(services) == {"llm-gateway", "retrieval", "llm-server"}
    by_trace: dict[int, set[str]] = {}
    for s in spans:
        by_trace.setdefault(s.context.trace_id, set()).add(str(s.resource.attributes["service.name"]))
    assert sum(1 for v in by_trace.values() if {"llm-gateway", "llm-server"} <= v) >= 0.9 * run.stats.ok
    assert any(v == {"llm-gateway", "retrieval", "llm-server"} for v in by_trace.values())
    llm = [s for s in spans if s.resource.attributes["service.name"] == "llm-server" and s.kind.name == "SERVER"]
    stamped = Counter(tuple(s.attributes.get("otel_llm.gpu.uuids") or ()) for s in llm)
    assert {g for (g,) in stamped if stamped} <= set(run.gpus.uuids)
    assert len(stamped) == 2  # both replicas served
    # W3C propagation: every retrieval SERVER span has the gateway's CLIENT span as parent
    clients = {s.context.span_id for s in spans if s.kind.name == "CLIENT"}
    ret = [s for s in spans if s.resource.attributes["service.name"] == "retrieval" and s.kind.name == "SERVER"]
    assert ret and all(s.parent is not None and s.parent.span_id in clients for s in ret)


def test_faults_were_injected(demo):
    run, _, _ = demo
    t0 = run.t0_wall
    ret = [s for s in run.sink.readable if s.name == "vector_search"]
    inside = [(s.end_time - s.start_time) / 1e9 for s in ret if 11.5 <= s.start_time / 1e9 - t0 < 16.5]
    before = [(s.end_time - s.start_time) / 1e9 for s in ret if s.start_time / 1e9 - t0 < 10.5]
    import statistics

    # medians: robust to event-loop jitter on a busy host
    assert inside and before and statistics.median(inside) > 4 * statistics.median(before)
    lost = run.gpus.uuids[1]
    llm = [s for s in run.sink.readable if s.resource.attributes["service.name"] == "llm-server"
           and s.kind.name == "SERVER" and 17.5 <= s.start_time / 1e9 - t0 < 21.5]
    assert llm and all(tuple(s.attributes.get("otel_llm.gpu.uuids")) != (lost,) for s in llm)


def test_scorecard_alerts_and_report_are_written(demo):
    run, out, text = demo
    card = json.loads((out / "scorecard.json").read_text())
    assert [f["kind"] for f in card["faults"]] == ["slow_dependency", "gpu_xid"]
    xid = card["faults"][1]
    assert xid["true_root_cause"] == {"kind": "gpu", "service": "llm-server", "gpu": run.gpus.uuids[1]}
    assert xid["detected"] and 0 <= xid["delay_s"] < 5.0
    assert set(card["summary"]) >= {"detected", "rca_top1", "false_alarms", "false_alarms_per_replayed_hour"}
    assert card["run"]["components"]["server"].startswith("otel_llm.server")
    events = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert events and all(e["status"] in ("firing", "resolved") for e in events)
    lost = f'hw.status{{hw.id="{run.gpus.uuids[1]}"}}'
    assert any(e["status"] == "firing" and lost in e["detections"] for e in events)
    html = (out / "index.html").read_text()
    assert html.count("<svg") >= 4
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"?https?:", html)  # self-contained
    assert "Scorecard" in html and "CC BY 4.0" in html
    assert "FIRING" in text and "Scorecard" in text


def test_cli_rejects_a_bad_schedule_with_a_clear_message(tmp_path):
    from otel_llm.cli._app import build_app

    bad = tmp_path / "f.yaml"
    bad.write_text("faults:\n  - {kind: gpu_xid, start: 5, duration: 4, gpu: 9}\n")
    result = CliRunner().invoke(build_app(), ["demo", "--faults", str(bad), "--duration", "30"])
    assert result.exit_code == 2
    assert "gpu must be a GPU index in 0..1" in result.output


def test_live_view_renders_serving_gpus_and_incidents(demo):
    from rich.console import Console

    from otel_llm.demo._live import LiveView
    from otel_llm.demo._runner import TickState

    run, _, _ = demo
    console = Console(record=True, width=140, force_terminal=True)
    view = LiveView(run.cfg, console, enabled=True)
    view.pipeline = run.pipeline
    uuid = run.gpus.uuids[1]
    state = TickState(t=20.0, points=[], active_faults=list(run.cfg.faults[1:]), replay=run.stats,
                      gpu_state={uuid: {"index": 1, "lost": True, "fields": {}, "slowdown": 1.0}})
    with view:
        view.on_tick(state)
        view.on_alert({"status": "firing", "time": run.t0_wall + 18, "incident": "inc-x", "title": "GPU lost",
                       "root_cause": uuid})
    text = console.export_text()
    for expected in ("TTFT p95 (gateway)", "learned band", "LOST (XID)", "gpu_xid", "Incidents", "FIRING"):
        assert expected in text


@pytest.mark.parametrize("engine", [True, False])
def test_an_escalated_detection_is_recorded_once_and_alerted_again_as_critical(engine):
    from dataclasses import replace

    from otel_llm.processors import Detection, Severity

    from otel_llm.demo._pipeline import DemoPipeline

    p = DemoPipeline()
    if not engine:
        p._engine = None  # the path without otel_llm.processors.rca
    try:
        warn = Detection(kind="threshold", series="ttft", start=5.0, score=0.6, severity=Severity.WARNING)
        crit = replace(warn, score=0.9, severity=Severity.CRITICAL)
        for now, d in ((6.0, warn), (7.0, crit), (8.0, crit)):
            if engine:
                p._engine_tick(now, [], [], [d])
            else:
                p._on_detection(d)
        assert [(d.severity, d.end) for d in p.record.detections] == [(Severity.CRITICAL, None)]
        assert [(a["status"], a["severity"]) for a in p.record.alerts] == [
            ("firing", "warning"), ("firing", "critical")]
        (inc,) = p.record.incidents.values()
        assert inc.severity is Severity.CRITICAL and [d.severity for d in inc.detections] == [Severity.CRITICAL]
        done = replace(crit, end=9.0)
        if engine:
            p._engine_tick(9.0, [], [], [done])
        else:
            p._on_detection(done)
        assert [(d.severity, d.end) for d in p.record.detections] == [(Severity.CRITICAL, 9.0)]
    finally:
        for proc in (p.thr_up, p.thr_down, p.pyod):
            proc.shutdown()
