"""End to end against REAL Prometheus and Alertmanager (Debian binaries), started on free loopback ports.

Scrape targets (all through the real OTel SDK + opentelemetry-exporter-prometheus, or the GPU simulator):


* the reference server (``otel_llm.server``, tiny torch model) under a steady client load, its
  ``/metrics`` (OTel SDK -> PrometheusMetricReader), with an injected prefill delay and failures;
* otel-llm's GPU metrics (``GpuMetrics`` over ``SimulatedGpus`` with a thermal fault)
  and processor outputs (``DetectionMetricsExporter``: detections, scores, learned bands);
* raw dcgm-exporter text from the simulator (an ECC/XID fault), as a site running
  dcgm-exporter would expose it.

Prometheus evaluates the rendered ``alert_rules`` (``for:`` overridden to 0s, a strict TTFT SLO so
the burn-rate alert fires) and sends to Alertmanager; the otel-llm Alertmanager exporter posts its
own alerts, survives an Alertmanager outage and a hard kill of its own process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from otel_llm.alert_rules import RulesConfig, expressions, parse_slo, render_rules, write_rules
from otel_llm.exporters import AlertmanagerExporter, DetectionMetricsExporter
from otel_llm.exporters._promnames import DCGM, M
from otel_llm.processors._model import Detection, Incident, RootCauseCandidate, Severity

from otel_llm import dashboards
from otel_llm import semconv as sc
from otel_llm._backends import Alertmanager, Prometheus
from otel_llm.models import TINY_MODEL_NAME

pytestmark = pytest.mark.backends
BINARIES = ("prometheus", "promtool", "amtool")


def _have_binaries() -> bool:
    return all(shutil.which(b) for b in BINARIES) and bool(
        shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"))


class _ReferenceServer:
    """The reference server (``otel_llm.server``, tiny model) under a steady client load, bounded by ``stop``.

    A 50 ms prefill delay and a 25 % failure rate are injected (its ``SlowdownController``) so the
    strict TTFT SLO and the error budget of the test rendering burn for real.
    """

    def __init__(self, model, tokenizer):
        import httpx
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        from otel_llm._views import default_views
        from otel_llm.server import create_app, run_in_thread

        self.meters, self.tracers = MeterProvider(views=default_views()), TracerProvider()
        self.app = create_app(model, tokenizer, meter_provider=self.meters, tracer_provider=self.tracers)
        self.app.state.faults.set(prefill_delay_s=0.05, fail_rate=0.25)
        self.handle = run_in_thread(self.app, port=0)
        self.client = httpx.Client(base_url=self.handle.url, timeout=10)
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def target(self) -> str:
        return self.handle.url.split("//", 1)[1]

    def request(self, i: int) -> None:
        body = {"model": TINY_MODEL_NAME, "messages": [{"role": "user", "content": f"hello {i}"}],
                "max_tokens": 8, "stream": i % 2 == 0}
        try:
            with self.client.stream("POST", "/v1/chat/completions", json=body) as r:
                r.read()
                self.statuses.append(r.status_code)
        except Exception:  # the load must survive the server's own hiccups; statuses tell the story
            self.statuses.append(0)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.05):  # a steady trickle: enough for rates, little CPU on a shared box
            self.request(i)
            i += 1

    def start(self):
        for i in range(4):
            self.request(i)
        self.thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.thread.join(15)
        self.client.close()
        self.handle.stop()
        self.meters.shutdown()
        self.tracers.shutdown()


class _Agent:
    """otel-llm's own metrics: simulated GPUs through GpuMetrics, detections through DetectionMetricsExporter."""

    def __init__(self):
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from otel_llm.collectors import GpuMetrics, SimulatedGpus
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=self.registry)])
        self.sim = SimulatedGpus(2, "H100", faults=["thermal:0@0"], seed=1, thermal_time_constant_s=0.5)
        self.sim.set_load(0, 0.9)
        self.sim.set_load(1, 0.5)
        self.gpus = GpuMetrics(self.sim, self.provider, interval_s=0.25)
        self.detections = DetectionMetricsExporter(self.provider, _null_logger_provider())
        now = time.time()
        self.detections.export([Incident(
            id="e2e-1", start=now - 30, severity=Severity.WARNING, title="TTFT above band",
            detections=[Detection(kind="threshold", series='ttft{model="tiny"}', start=now - 30, score=0.95,
                                  metric=sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
                                  attributes={sc.GEN_AI_REQUEST_MODEL: "tiny"}, value=0.9, band=(0.02, 0.4),
                                  level=95)])])

    def render(self) -> str:
        from prometheus_client import generate_latest

        self.gpus.poll()
        return generate_latest(self.registry).decode()

    def stop(self):
        self.gpus.shutdown()
        self.provider.shutdown()


def _null_logger_provider():
    from opentelemetry.sdk._logs import LoggerProvider

    return LoggerProvider()


@pytest.fixture(scope="module")
def _stack(tmp_path_factory, tiny_model):
    if not _have_binaries():
        yield None
        return
    from otel_llm.collectors import ExpositionServer, SimulatedGpus

    tmp = tmp_path_factory.mktemp("backends")
    cfg = parse_slo(["ttft_p95=0.04s"], RulesConfig(for_override="0s"))  # 50 ms prefill delay: every TTFT misses
    rules = write_rules(tmp / "rules", cfg)
    load = _ReferenceServer(*tiny_model).start()
    agent = _Agent()
    dcgm_sim = SimulatedGpus(1, "A100", faults=["xid48:0@2"], seed=7)  # XID 2 s in: a change to see
    servers = [ExpositionServer(agent.render).start(), ExpositionServer(dcgm_sim.to_exposition).start()]
    am = Alertmanager(workdir=tmp / "am").start()
    targets = [load.target] + [s.url.split("//", 1)[1].rsplit("/", 1)[0] for s in servers]
    prom = Prometheus(workdir=tmp / "prom", scrape_targets=targets, rule_files=[rules],
                      alertmanager_urls=[am.url], scrape_interval="500ms", evaluation_interval="500ms").start()
    stack = {"prom": prom, "am": am, "tmp": tmp, "rules": rules, "cfg": cfg, "dcgm_sim": dcgm_sim, "agent": agent,
             "server": load}
    try:
        prom.wait_for('up{job="otel-llm"} == 1', timeout_s=15)
        prom.wait_for(f"count(count by (instance) ({{__name__=~\"{M.TTFT.count}|{M.GPU_UTIL}|{DCGM.GPU_TEMP}\"}})) == 3",
                      timeout_s=15)
        yield stack
    finally:
        prom.stop()
        am.stop()
        for s in servers:
            s.close()
        load.stop()
        agent.stop()


@pytest.fixture
def stack(_stack, require):
    for b in BINARIES:
        require.binary(b)
    require.binary("prometheus-alertmanager", "alertmanager")
    assert _stack is not None
    return _stack


def test_prometheus_scrapes_all_three_sources(stack):
    prom = stack["prom"]
    up = prom.query('up{job="otel-llm"}')["result"]
    assert len(up) == 3 and all(r["value"][1] == "1" for r in up)
    # our names, as the OTel Prometheus exporter renders them, are really there
    for name in (M.TTFT.bucket, M.REQUEST_DURATION.count, M.TOKEN_USAGE.sum, M.KV_CACHE.name, M.GPU_UTIL.name,
                 M.TEMPERATURE.name, M.THROTTLE.name, M.DETECTIONS.name, DCGM.GPU_TEMP, DCGM.XID):
        assert prom.query(f"count({name})")["result"], name
    band = prom.query('{__name__=~"otel_llm_threshold_upper(_[a-z]+)?"}')["result"]
    assert band and float(band[0]["value"][1]) == pytest.approx(0.4)


def test_rules_fire_in_prometheus_and_reach_alertmanager(stack):
    prom, am = stack["prom"], stack["am"]
    wanted = {"LLMTTFTBudgetBurn", "LLMErrorBudgetBurn", "GPUThermalThrottling", "GPUXidError",
              "LLMLearnedBandBreach"}
    deadline = time.monotonic() + 25
    names: set[str] = set()
    while time.monotonic() < deadline:
        names = {a["labels"]["alertname"] for a in am.alerts()}
        if wanted <= names:
            break
        time.sleep(0.25)
    assert wanted <= names, (
        f"alerts in Alertmanager: {sorted(names)}; error ratios: "
        f"{prom.query('otel_llm:error_slo_bad:ratio_rate1d')['result']} "
        f"{prom.query('sum by (error_type) (gen_ai_server_request_duration_seconds_count)')['result']} "
        f"statuses: {sorted(set(stack['server'].statuses))}")
    alerts = {a["labels"]["alertname"]: a for a in am.alerts()}
    thermal = alerts["GPUThermalThrottling"]
    assert thermal["labels"]["gpu"] == stack["agent"].sim.uuids[0], "the throttled simulated GPU is named"
    assert alerts["GPUXidError"]["labels"]["gpu"] == stack["dcgm_sim"].uuids[0], "raw dcgm-exporter path works"
    assert alerts["LLMTTFTBudgetBurn"]["labels"]["gen_ai_request_model"] == TINY_MODEL_NAME
    assert 500 in stack["server"].statuses and 200 in stack["server"].statuses
    assert alerts["LLMTTFTBudgetBurn"]["annotations"]["runbook_url"].endswith("#llmttftbudgetburn")
    # the healthy GPU does not page
    assert all(a["labels"].get("gpu") != stack["agent"].sim.uuids[1] for a in am.alerts()
               if a["labels"]["alertname"] == "GPUThermalThrottling")


def test_every_rule_and_dashboard_query_is_valid_promql(stack):
    prom = stack["prom"]
    exprs = [(f"rule {name}", e) for name, e in expressions(render_rules(stack["cfg"]))]
    for uid in dashboards.DASHBOARDS:
        exprs += [(f"{uid} {where}", dashboards.expand_variables(e))
                  for where, e in dashboards.promql_queries(dashboards.build(uid))]
    assert len(exprs) > 100
    errors = []
    for where, expr in exprs:
        try:
            prom.query(expr)
        except Exception as exc:
            errors.append(f"{where}: {exc}")
    assert not errors, "\n".join(errors)


# Panels that may legitimately be empty on a healthy or fault-free series: event filters.
_EVENT_QUERY = re.compile(r'> 0\s*$|!=""|ALERTS|xid|_errors_total|row_remap|VIOLATION|ROW_REMAP|anomaly_requests'
                          r'|incidents_open|preemptions', re.I)


def test_dashboard_panels_return_data(stack):
    prom = stack["prom"]
    present = set(prom.query('count by (__name__) ({job="otel-llm"})')["result"] and
                  [r["metric"]["__name__"] for r in prom.query('count by (__name__) ({job="otel-llm"})')["result"]])
    checked, empty = 0, []
    for uid in dashboards.DASHBOARDS:
        for where, expr in dashboards.promql_queries(dashboards.build(uid)):
            expanded = dashboards.expand_variables(expr)
            names = {n for n in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expanded) if n in present}
            if not names or _EVENT_QUERY.search(expanded):
                continue
            checked += 1
            if not prom.query(expanded)["result"]:
                empty.append(f"{uid} {where}: {expanded}")
    assert checked >= 30, checked
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # the core panels are among the checked ones
    serving = dashboards.promql_queries(dashboards.build("otel-llm-serving"))
    ttft = next(e for w, e in serving if "Time to first token" in w)
    value = float(prom.query(dashboards.expand_variables(ttft))["result"][0]["value"][1])
    assert 0.04 <= value <= 5.0, "TTFT p50 above the injected 50 ms prefill delay"


def _incident(i: int, end: float | None = None) -> Incident:
    now = time.time()
    return Incident(
        id=f"e2e-am-{i}", start=now - 10, end=end, severity=Severity.CRITICAL, title=f"incident {i}",
        detections=[Detection(kind="gpu", series=f"GPU-{i}", start=now - 10, score=0.9,
                              attributes={sc.HW_ID: f"GPU-{i}", "service.name": "llm"})],
        candidates=[RootCauseCandidate("gpu", f"GPU-{i}", 0.9, "XID 79: fell off the bus")])


def _amtool(am: Alertmanager, *args: str) -> list[dict]:
    out = subprocess.run(["amtool", f"--alertmanager.url={am.url}", "alert", "query", "-o", "json", *args],
                         capture_output=True, text=True, timeout=15)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_exporter_alerts_visible_in_amtool(stack, tmp_path):
    am = stack["am"]
    exp = AlertmanagerExporter([am.url], queue_path=tmp_path / "q.db")
    try:
        exp.export([_incident(1), _incident(2)])
        assert exp.force_flush(5000)
        found = _amtool(am, "source=otel-llm", "alertname=GPUFault")
        ids = {a["labels"]["incident_id"] for a in found}
        assert {"e2e-am-1", "e2e-am-2"} <= ids
        one = next(a for a in found if a["labels"]["incident_id"] == "e2e-am-1")
        assert one["labels"]["gpu"] == "GPU-1" and one["labels"]["service"] == "llm"
        assert one["annotations"]["root_causes"].startswith("1. gpu GPU-1 (score 0.90): XID 79")
        # resolve: Alertmanager marks it resolved (no longer active)
        exp.export([_incident(2, end=time.time() - 1)])
        assert exp.force_flush(5000)
        active = {a["labels"]["incident_id"] for a in _amtool(am, "alertname=GPUFault")}
        assert "e2e-am-2" not in active and "e2e-am-1" in active
    finally:
        exp.shutdown()


def test_alertmanager_outage_loses_no_alert(stack, tmp_path):
    am = stack["am"]
    exp = AlertmanagerExporter([am.url], queue_path=tmp_path / "q.db", backoff_initial_s=0.05, backoff_max_s=0.3)
    try:
        am.kill()
        exp.export([_incident(i) for i in range(10, 16)])
        assert exp.force_flush(300) is False and exp.queue.size() == 6
        time.sleep(0.5)  # several failed attempts with backoff
        assert exp.stats.failed_attempts >= 1 and exp.stats.sent == 0
        am.restart()
        deadline = time.monotonic() + 10
        ids: set[str] = set()
        while time.monotonic() < deadline:
            ids = {a["labels"]["incident_id"] for a in am.alerts(alertname="GPUFault")}
            if {f"e2e-am-{i}" for i in range(10, 16)} <= ids:
                break
            time.sleep(0.1)
        assert {f"e2e-am-{i}" for i in range(10, 16)} <= ids
        assert exp.queue.size() == 0 and exp.stats.sent >= 6
    finally:
        exp.shutdown()


def test_malformed_alert_rejected_by_real_alertmanager_goes_to_dead_letter(stack, tmp_path):
    exp = AlertmanagerExporter([stack["am"].url], queue_path=tmp_path / "q.db")
    try:
        exp.post_alerts([{"labels": {}, "annotations": {"summary": "no labels"}},
                         {"labels": {"alertname": "E2EGood", "source": "otel-llm"}}])
        assert exp.force_flush(5000)
        (dead,) = exp.dead_letters()
        assert dead["status"] == 400 and dead["payload"]["annotations"]["summary"] == "no labels"
        assert stack["am"].alerts(alertname="E2EGood")
    finally:
        exp.shutdown()


def test_killed_exporter_process_delivers_after_restart(stack, tmp_path):
    """Our own process is SIGKILLed with alerts queued (Alertmanager unreachable); a new one delivers them."""
    am = stack["am"]
    queue = tmp_path / "outbox.db"
    script = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_backends import _incident
        from otel_llm.exporters import AlertmanagerExporter
        exp = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path={str(queue)!r})
        exp.export([_incident(i) for i in range(20, 24)])
        print("queued", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "queued"
    finally:
        proc.kill()
        proc.wait(10)
    import sqlite3

    db = sqlite3.connect(queue)  # same outbox, the Alertmanager is now reachable at its real address
    db.execute("UPDATE outbox SET target = ?, next_attempt = 0", (am.url,))
    db.commit()
    db.close()
    exp = AlertmanagerExporter([am.url], queue_path=queue)
    try:
        assert exp.force_flush(5000)
        ids = {a["labels"]["incident_id"] for a in am.alerts(alertname="GPUFault")}
        assert {f"e2e-am-{i}" for i in range(20, 24)} <= ids
        assert len([a for a in am.alerts(alertname="GPUFault") if a["labels"]["incident_id"] == "e2e-am-20"]) == 1
    finally:
        exp.shutdown()


def test_backend_start_failure_is_reported_with_the_log_and_leaks_nothing(tmp_path, require):
    from otel_llm._backends import BackendError, find_binary

    require.binary("prometheus")
    bad = tmp_path / "bad.rules.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: Broken\n    expr: sum(\n")
    prom = Prometheus(workdir=tmp_path / "p", rule_files=[bad], startup_timeout_s=10)
    with pytest.raises(BackendError, match="did not become ready") as err:
        prom.start()
    assert "bad.rules.yml" in str(err.value), "the error carries Prometheus' own log line"
    assert not prom.running and prom.pid is None
    with pytest.raises(BackendError, match="apt-get install prometheus"):
        find_binary("definitely-not-prometheus")


def test_prometheus_reload_picks_up_new_rules(tmp_path, require):
    require.binary("prometheus")
    rules = tmp_path / "r.yml"
    rules.write_text("groups: []\n")
    with Prometheus(workdir=tmp_path / "p", rule_files=[rules], evaluation_interval="200ms") as prom:
        rules.write_text("groups:\n- name: g\n  rules:\n  - record: otel_llm:test:one\n    expr: vector(1)\n")
        prom.reload()
        assert prom.wait_for("otel_llm:test:one", timeout_s=10)[0]["value"][1] == "1"
        pid = prom.pid
    import os

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
