"""Alertmanager exporter: alert shape, retries, dead letters, durability, secrets (loopback HTTP only).

The real-Alertmanager cases (amtool, outage and restart) are in tests/test_backends.py.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from otel_llm.exporters import AlertmanagerExporter, HttpOptions, grafana_trace_url_template
from otel_llm.processors._model import Detection, ExportResult, Incident, RootCauseCandidate, Severity

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def make_incident(iid: str = "inc-1", *, end: float | None = None, severity=Severity.CRITICAL) -> Incident:
    now = time.time()
    det = Detection(
        kind="threshold", series='gen_ai.server.time_to_first_token{gen_ai.request.model="tiny"}', start=now - 30,
        score=0.97, severity=severity, metric="gen_ai.server.time_to_first_token",
        attributes={"gen_ai.request.model": "tiny", "service.name": "llm-server"}, value=1.8, band=(0.05, 0.4),
        level=95, explanation="TTFT p95 above its learned band for 5 of the last 6 points", trace_ids=(TRACE,),
    )
    cands = [
        RootCauseCandidate("gpu", "GPU-5f1b", 0.81, "GPU thermal throttling during the window; SM clock -40%",
                           trace_ids=("a" * 32,)),
        RootCauseCandidate("stage", "llm-server:decode", 0.55, "decode self-time 3.1x baseline"),
    ]
    return Incident(id=iid, start=now - 30, detections=[det], candidates=cands, end=end, severity=severity,
                    title="TTFT above its learned band on tiny")


class Recorder:
    """A loopback HTTP server answering POST /api/v2/alerts with scripted statuses."""

    def __init__(self, statuses=None, auth_required: str | None = None):
        self.statuses = list(statuses or [])
        self.received: list[list[dict]] = []
        self.headers: list[dict] = []
        self.auth_required = auth_required
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rec.headers.append(dict(self.headers))
                if rec.auth_required and self.headers.get("Authorization") != rec.auth_required:
                    status = 401
                else:
                    status = rec.statuses.pop(0) if rec.statuses else 200
                    if status == "validate":
                        status = 400 if any(not a.get("labels") for a in body) else 200
                if status == 200:
                    rec.received.append(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error":"scripted"}' if status != 200 else b"")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def alerts(self):
        return [a for batch in self.received for a in batch]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made = []

    def make(**kw):
        r = Recorder(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_alert_labels_annotations_and_links(recorder, tmp_path):
    rec = recorder()
    tmpl = grafana_trace_url_template("https://grafana.example", "tempo-uid")
    exp = AlertmanagerExporter([rec.url], queue_path=tmp_path / "q.db", trace_url_template=tmpl,
                               extra_labels={"cluster": "eu-1"}, dashboard_url="https://grafana.example/d/x")
    try:
        assert exp.export([make_incident()]) is ExportResult.SUCCESS
        assert wait_until(lambda: rec.alerts())
        (alert,) = rec.alerts()
        labels, ann = alert["labels"], alert["annotations"]
        assert labels == {"alertname": "LLMLearnedBandBreach", "severity": "critical", "source": "otel-llm",
                          "incident_id": "inc-1", "detector": "threshold", "service": "llm-server", "model": "tiny",
                          "gpu": "GPU-5f1b", "metric": "gen_ai.server.time_to_first_token", "cluster": "eu-1"}
        assert ann["summary"] == "TTFT above its learned band on tiny"
        assert ann["root_causes"].splitlines()[0].startswith("1. gpu GPU-5f1b (score 0.81): GPU thermal")
        assert ann["root_causes"].splitlines()[1].startswith("2. stage llm-server:decode")
        assert ann["root_cause"] == "gpu GPU-5f1b"
        assert "outside [0.05, 0.4] (95% band)" in ann["description"]
        assert ann["runbook_url"].endswith("#llmlearnedbandbreach")
        urls = ann["trace_urls"].splitlines()
        assert urls[0].startswith("https://grafana.example/explore?") and ("a" * 32) in urls[0]
        assert TRACE in ann["trace_ids"] and any(TRACE in u for u in urls)
        assert alert["generatorURL"] == urls[0]
        # firing: endsAt set by the sender to now + ttl, in the future
        assert alert["endsAt"] > alert["startsAt"]
    finally:
        exp.shutdown()


def test_resolved_incident_sends_endsat_and_stops_resending(recorder, tmp_path):
    rec = recorder()
    exp = AlertmanagerExporter([rec.url], queue_path=tmp_path / "q.db", resend_interval_s=0.2)
    try:
        exp.export([make_incident()])
        assert wait_until(lambda: len(rec.alerts()) >= 3, 3), "firing alerts must be re-sent while active"
        end = time.time()
        exp.export([make_incident(end=end)])
        assert exp.force_flush(3000)
        n = len(rec.alerts())
        resolved = rec.alerts()[-1]
        from datetime import datetime

        ends = datetime.fromisoformat(resolved["endsAt"].replace("Z", "+00:00")).timestamp()
        assert abs(ends - end) < 0.01
        time.sleep(0.5)
        assert len(rec.alerts()) == n, "a resolved incident is not re-sent"
    finally:
        exp.shutdown()


def test_an_incident_that_turns_critical_resolves_its_warning_alert_and_fires_a_critical_one(recorder, tmp_path):
    from datetime import datetime

    def ends(alert):
        return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00")).timestamp()

    rec = recorder()
    exp = AlertmanagerExporter([rec.url], queue_path=tmp_path / "q.db", resend_interval_s=0.2)
    try:
        exp.export([make_incident(severity=Severity.WARNING)])
        assert exp.force_flush(3000)
        escalated = time.time()
        exp.export([make_incident(severity=Severity.CRITICAL)])
        assert exp.force_flush(3000)
        first = rec.alerts()
        i = next(k for k, a in enumerate(first) if a["labels"]["severity"] == "critical")
        assert {a["labels"]["severity"] for a in first[:i]} == {"warning"}
        assert first[i - 1]["labels"]["alertname"] == first[i]["labels"]["alertname"]
        assert ends(first[i - 1]) <= escalated + 1  # the warning is resolved...
        assert ends(first[i]) >= ends(first[i - 1]) + 0.5  # ...and the critical one fires (endsAt = now + ttl)
        assert wait_until(lambda: len(rec.alerts()) >= len(first) + 2, 3)
        assert {a["labels"]["severity"] for a in rec.alerts()[len(first):]} == {"critical"}  # only it is re-sent
        end = time.time()
        exp.export([make_incident(end=end, severity=Severity.CRITICAL)])
        assert exp.force_flush(3000)
        last = rec.alerts()[-1]
        assert last["labels"]["severity"] == "critical" and abs(ends(last) - end) < 0.01
    finally:
        exp.shutdown()


def test_ha_each_alertmanager_gets_every_alert(recorder, tmp_path):
    a, b = recorder(), recorder(statuses=[503, 503])
    exp = AlertmanagerExporter([a.url, b.url], queue_path=tmp_path / "q.db", backoff_initial_s=0.05)
    try:
        exp.export([make_incident("i1"), make_incident("i2")])
        assert wait_until(lambda: len(a.alerts()) >= 2 and len(b.alerts()) >= 2, 5)
        assert {x["labels"]["incident_id"] for x in a.alerts()} == {"i1", "i2"}
        assert {x["labels"]["incident_id"] for x in b.alerts()} == {"i1", "i2"}
    finally:
        exp.shutdown()


def test_5xx_retried_with_backoff_reported_once_and_counted(recorder, tmp_path, caplog):
    rec = recorder(statuses=[500, 502, 503, 500])
    exp = AlertmanagerExporter([rec.url], queue_path=tmp_path / "q.db", backoff_initial_s=0.05, backoff_max_s=0.2)
    try:
        with caplog.at_level(logging.INFO, logger="otel_llm.exporters.alertmanager"):
            exp.export([make_incident()])
            assert wait_until(lambda: exp.stats.sent == 1, 5)  # counted after the response is read
        assert exp.stats.failed_attempts == 4 and exp.stats.sent == 1
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable (HTTP 500)" in warnings[0].getMessage()
        assert any("reachable again" in r.getMessage() for r in caplog.records)
        assert exp.dead_letters() == []
    finally:
        exp.shutdown()


def test_backoff_grows_exponentially_with_jitter(tmp_path):
    # nothing listens on this port: every attempt fails with a connection error
    exp = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path=tmp_path / "q.db", backoff_initial_s=1.0,
                               backoff_max_s=8.0, start=False)
    try:
        exp.export([make_incident()])
        delays = []
        for _ in range(6):
            (row,) = exp.queue.due("http://127.0.0.1:9", now=float("inf"))
            t0 = time.time()
            exp._send("http://127.0.0.1:9", [row])
            delays.append(exp.queue.next_due("http://127.0.0.1:9") - t0)
        caps = [1, 2, 4, 8, 8, 8]
        for d, cap in zip(delays, caps, strict=True):
            assert 0.5 * cap - 0.05 <= d <= cap + 0.05, (delays, caps)
        assert exp.stats.failed_attempts == 6
    finally:
        exp.shutdown(timeout_millis=100)


def test_malformed_alert_goes_to_dead_letter_and_the_rest_is_delivered(recorder, tmp_path, caplog):
    rec = recorder(statuses=["validate"] * 10)
    exp = AlertmanagerExporter([rec.url], queue_path=tmp_path / "q.db")
    try:
        with caplog.at_level(logging.ERROR, logger="otel_llm.exporters.alertmanager"):
            exp.post_alerts([{"labels": {}, "annotations": {"summary": "no labels"}},
                             {"labels": {"alertname": "Fine"}, "annotations": {}}])
            assert exp.force_flush(3000)
        assert [a["labels"] for a in rec.alerts()] == [{"alertname": "Fine"}]
        (dead,) = exp.dead_letters()
        assert dead["status"] == 400 and dead["payload"]["annotations"]["summary"] == "no labels"
        assert exp.stats.dead_lettered == 1
        assert "rejected an alert (HTTP 400" in caplog.text and "no labels" in caplog.text
        time.sleep(0.2)
        assert len(rec.alerts()) == 1, "a rejected alert is never retried"
    finally:
        exp.shutdown()


def test_queue_survives_our_restart(tmp_path):
    path = tmp_path / "q.db"
    down = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path=path, start=False)
    down.export([make_incident("a"), make_incident("b", end=time.time())])
    down.shutdown(timeout_millis=200)  # Alertmanager unreachable: everything stays on disk
    rec = Recorder()
    try:
        # same Alertmanager URL set, now reachable at a new address: re-point by replacing the target
        import sqlite3

        db = sqlite3.connect(path)
        db.execute("UPDATE outbox SET target = ?, next_attempt = 0", (rec.url,))
        db.commit()
        db.close()
        up = AlertmanagerExporter([rec.url], queue_path=path)
        try:
            assert wait_until(lambda: {a["labels"]["incident_id"] for a in rec.alerts()} == {"a", "b"}, 5)
            assert up.queue.active().keys() == {"incident:a"}, "firing alerts are restored for re-sending"
        finally:
            up.shutdown()
    finally:
        rec.close()


def test_secrets_never_logged(recorder, tmp_path, caplog):
    rec = recorder(auth_required="Bearer right-token")
    token, password = "tok-SECRET-1234", "pw-SECRET-5678"
    with caplog.at_level(logging.DEBUG):
        exp = AlertmanagerExporter([rec.url], queue_path=tmp_path / "a.db", http=HttpOptions(bearer_token=token))
        exp.export([make_incident()])
        assert exp.force_flush(300) is False  # 401: not delivered
        exp.shutdown(timeout_millis=300)
        exp2 = AlertmanagerExporter([rec.url.replace("http://", "http://admin:" + password + "@")],
                                    queue_path=tmp_path / "b.db")
        assert exp2.http.username == "admin" and "@" not in exp2.urls[0]
        exp2.export([make_incident()])
        exp2.force_flush(300)
        text = caplog.text + repr(exp) + repr(exp2) + repr(exp2.http)
        assert exp2.dead_letters() == [] and exp2.queue.size() == 1, "a 401 keeps the alert queued"
        exp2.shutdown(timeout_millis=300)
    assert rec.headers and rec.headers[0]["Authorization"] == f"Bearer {token}"  # it was really sent
    assert token not in text and password not in text
    assert "unavailable (HTTP 401)" in caplog.text, "auth failures are retried, not dead-lettered"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"urls": []}, "no Alertmanager URL"),
        ({"urls": ["ftp://x"]}, "not an http"),
        ({"urls": ["http://a:1", "http://a:1"]}, "duplicates"),
        ({"trace_url_template": "https://g/explore"}, r"\{trace_id\}"),
        ({"http": HttpOptions(bearer_token="t", username="u", password="p")}, "not both"),
        ({"extra_labels": {"bad-label": "x"}}, "not valid"),
        ({"resend_interval_s": 10, "alert_ttl_s": 5}, "alert_ttl_s"),
    ],
)
def test_invalid_configuration_fails_at_construction(kwargs, message, tmp_path, monkeypatch):
    monkeypatch.delenv("OTEL_LLM_ALERTMANAGER_URLS", raising=False)
    kwargs = {"urls": ["http://127.0.0.1:9093"], **kwargs}
    with pytest.raises(ValueError, match=message):
        AlertmanagerExporter(queue_path=tmp_path / "q.db", start=False, **kwargs)


def test_env_configuration(monkeypatch, tmp_path, recorder):
    rec = recorder()
    monkeypatch.setenv("OTEL_LLM_ALERTMANAGER_URLS", rec.url)
    monkeypatch.setenv("OTEL_LLM_ALERTMANAGER_QUEUE", str(tmp_path / "env.db"))
    monkeypatch.setenv("OTEL_LLM_ALERTMANAGER_BEARER_TOKEN", "env-token")
    exp = AlertmanagerExporter()
    try:
        assert exp.urls == [rec.url] and exp.queue_path == str(tmp_path / "env.db")
        exp.export([make_incident()])
        assert exp.force_flush(3000)
        assert rec.headers[-1]["Authorization"] == "Bearer env-token"
    finally:
        exp.shutdown()


def test_export_never_raises_and_never_blocks(tmp_path):
    exp = AlertmanagerExporter(["http://10.255.255.1:9093"], queue_path=tmp_path / "q.db",
                               http=HttpOptions(timeout_s=5.0))
    try:
        t0 = time.perf_counter()
        for i in range(50):
            assert exp.export([make_incident(f"i{i}")]) is ExportResult.SUCCESS
        assert time.perf_counter() - t0 < 1.0, "export() must not wait on the network"
        assert exp.export([object()]) is ExportResult.FAILURE  # garbage in: counted, not raised
    finally:
        exp.shutdown(timeout_millis=100)


def _make_pki(tmp, openssl):
    """A CA, a server cert for 127.0.0.1 and a client cert, with the openssl CLI."""
    import subprocess

    def run(*args):
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=tmp, timeout=30)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=otel-llm test CA")
    for name in ("server", "client"):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        (tmp / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return tmp


def test_tls_ca_client_certificate_and_insecure(tmp_path, require):
    import ssl

    pki = _make_pki(tmp_path, require.binary("openssl", hint="apt-get install openssl"))
    rec = Recorder()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the exporter must present its client certificate
    rec.server.socket = ctx.wrap_socket(rec.server.socket, server_side=True)
    url = rec.url.replace("http://", "https://")
    try:
        good = AlertmanagerExporter([url], queue_path=tmp_path / "a.db", http=HttpOptions(
            ca_file=str(pki / "ca.pem"), cert_file=str(pki / "client.pem"), key_file=str(pki / "client.key")))
        good.export([make_incident("tls-ok")])
        assert good.force_flush(5000)
        good.shutdown()
        assert [a["labels"]["incident_id"] for a in rec.alerts()] == ["tls-ok"]

        untrusted = AlertmanagerExporter([url], queue_path=tmp_path / "b.db", http=HttpOptions(
            cert_file=str(pki / "client.pem"), key_file=str(pki / "client.key")), start=False)
        untrusted.export([make_incident("tls-untrusted")])
        assert untrusted.force_flush(500) is False
        assert untrusted.queue.size() == 1 and untrusted.dead_letters() == [], "TLS failure: queued, not dropped"
        untrusted.shutdown(timeout_millis=100)

        insecure = AlertmanagerExporter([url], queue_path=tmp_path / "c.db", http=HttpOptions(
            insecure_skip_verify=True, cert_file=str(pki / "client.pem"), key_file=str(pki / "client.key")))
        insecure.export([make_incident("tls-insecure")])
        assert insecure.force_flush(5000)
        insecure.shutdown()
        assert "tls-insecure" in {a["labels"]["incident_id"] for a in rec.alerts()}
    finally:
        rec.close()


def test_outbox_is_bounded_evicting_oldest_and_counting(tmp_path):
    from otel_llm import _selftelemetry

    before = _selftelemetry.dropped_counts().get(("exporters.alertmanager", "queue_full"), 0)
    exp = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path=tmp_path / "q.db", max_queue=80, start=False)
    try:
        for i in range(1000):
            exp.export([make_incident(f"b{i}")])
        size = exp.queue.size()
        assert 80 <= size <= 90
        evicted = _selftelemetry.dropped_counts()[("exporters.alertmanager", "queue_full")] - before
        assert evicted == exp.stats.evicted == 1000 - size
        kept = {r.payload["labels"]["incident_id"] for r in exp.queue.due("http://127.0.0.1:9", limit=1000)}
        assert "b999" in kept and "b0" not in kept, "the oldest go first"
    finally:
        exp.shutdown(timeout_millis=100)
