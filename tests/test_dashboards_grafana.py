"""`otel-llm dashboards push` and the annotation exporter against a RECORDED Grafana 10.1 API contract.

Grafana is not installable here: a loopback HTTP server answers with the documented response bodies in
tests/fixtures/grafana/ (sources in its README) and enforces the documented rules (auth, required
fields, folder existence, 412 on version conflicts without overwrite).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from otel_llm.exporters import HttpOptions
from otel_llm.exporters._grafana import (
    GrafanaAnnotationExporter,
    GrafanaClient,
    GrafanaError,
    push_dashboards,
)
from otel_llm.processors._model import Incident, RootCauseCandidate, Severity

from otel_llm import dashboards

FIXTURES = Path(__file__).parent / "fixtures" / "grafana"
TOKEN = "glsa_TestTokenNeverLogged_1234"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class FakeGrafana:
    """State + documented responses. ``fail_next`` forces statuses for the next requests."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.annotations: dict[int, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.fail_next: list[int] = []
        g = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                g.requests.append((method, self.path, body))
                if self.headers.get("Authorization") != f"Bearer {g.token}":
                    return self._reply(401, fixture("unauthorized_401.json"))
                if g.fail_next:
                    return self._reply(g.fail_next.pop(0), {"message": "injected"})
                return self._reply(*g.route(method, self.path, body))

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def route(self, method, path, body):
        if method == "GET" and path == "/api/health":
            return 200, fixture("health.json")
        m = re.fullmatch(r"/api/folders/([\w-]+)", path)
        if method == "GET" and m:
            folder = self.folders.get(m.group(1))
            return (200, folder) if folder else (404, fixture("folder_not_found_404.json"))
        if method == "POST" and path == "/api/folders":
            if not body or not body.get("title"):
                return 400, {"message": "folder title cannot be empty"}
            if body.get("uid") in self.folders:
                return 409, fixture("folder_exists_409.json")
            folder = fixture("folder_create_200.json")
            slug = body["title"].lower().replace(" ", "-")
            folder.update(id=len(self.folders) + 1, uid=body["uid"], title=body["title"],
                          url=f"/dashboards/f/{body['uid']}/{slug}")
            self.folders[body["uid"]] = folder
            return 200, folder
        if method == "POST" and path == "/api/dashboards/db":
            dash = (body or {}).get("dashboard") or {}
            if not dash.get("title"):
                return 400, fixture("dashboard_db_400.json")
            folder_uid = body.get("folderUid")
            if folder_uid and folder_uid not in self.folders:
                return 400, {"message": "folder not found"}
            existing = self.dashboards.get(dash.get("uid"))
            if existing and not body.get("overwrite") and dash.get("version") != existing["version"]:
                return 412, fixture("dashboard_db_412.json")
            version = existing["version"] + 1 if existing else 1
            self.dashboards[dash["uid"]] = {"dashboard": dash, "folderUid": folder_uid, "version": version}
            resp = fixture("dashboard_db_200.json")
            slug = re.sub(r"[^a-z0-9]+", "-", dash["title"].lower()).strip("-")
            resp.update(id=list(self.dashboards).index(dash["uid"]) + 1, uid=dash["uid"], version=version,
                        slug=slug, url=f"/d/{dash['uid']}/{slug}")
            return 200, resp
        if method == "POST" and path == "/api/annotations":
            if not body or "text" not in body:
                return 400, {"message": "text field should not be empty"}
            aid = len(self.annotations) + 1
            self.annotations[aid] = dict(body)
            return 200, {**fixture("annotation_create_200.json"), "id": aid}
        m = re.fullmatch(r"/api/annotations/(\d+)", path)
        if method == "PATCH" and m and int(m.group(1)) in self.annotations:
            self.annotations[int(m.group(1))].update(body or {})
            return 200, fixture("annotation_patch_200.json")
        return 404, {"message": "Not found"}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grafana():
    g = FakeGrafana()
    yield g
    g.close()


def test_push_creates_folder_and_dashboards_then_updates(grafana):
    with GrafanaClient(grafana.url, http=HttpOptions(bearer_token=TOKEN)) as client:
        assert client.health()["database"] == "ok"
        first = push_dashboards(client, dashboards.build_all())
        second = push_dashboards(client, dashboards.build_all())
    assert [r.uid for r in first] == list(dashboards.DASHBOARDS)
    assert all(r.version == 1 for r in first) and all(r.version == 2 for r in second)
    assert first[0].url == "/d/otel-llm-serving/otel-llm-llm-serving"
    assert grafana.folders["otel-llm"]["title"] == "otel-llm"
    posts = [b for m, p, b in grafana.requests if p == "/api/dashboards/db"]
    assert all(b["overwrite"] is True and b["folderUid"] == "otel-llm" and b["dashboard"]["id"] is None
               for b in posts)
    assert grafana.dashboards["otel-llm-gpu"]["dashboard"]["title"] == "otel-llm / GPU"
    folder_creates = [1 for m, p, _ in grafana.requests if m == "POST" and p == "/api/folders"]
    assert len(folder_creates) == 1, "an existing folder is reused"


def test_push_errors_are_clear_and_carry_no_secret(grafana):
    with GrafanaClient(grafana.url, http=HttpOptions(bearer_token="wrong-" + TOKEN)) as client:
        with pytest.raises(GrafanaError, match="HTTP 401: Unauthorized") as err:
            push_dashboards(client, dashboards.build_all())
        assert TOKEN not in str(err.value) and TOKEN not in repr(client)
    with GrafanaClient(grafana.url, http=HttpOptions(bearer_token=TOKEN)) as client:
        grafana.fail_next = [500]
        with pytest.raises(GrafanaError, match="get folder.*HTTP 500"):
            client.ensure_folder("otel-llm", "otel-llm")
        with pytest.raises(GrafanaError, match="HTTP 400: folder not found"):
            client.push_dashboard({"uid": "x", "title": "t"}, folder_uid="missing")
        with pytest.raises(ValueError, match="uid and a title"):
            client.push_dashboard({"uid": "x"})
    with pytest.raises(GrafanaError, match="no response"):
        GrafanaClient("http://127.0.0.1:9", http=HttpOptions(bearer_token=TOKEN, timeout_s=0.5)).health()
    with pytest.raises(ValueError, match="Grafana URL"):
        GrafanaClient("grafana:3000")


def test_cli_push_reads_token_from_env(grafana, monkeypatch, caplog):
    from typer.testing import CliRunner

    from otel_llm.cli._app import build_app

    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    result = CliRunner().invoke(build_app(), ["dashboards", "push", "--grafana-url", grafana.url])
    assert result.exit_code == 0, result.output
    assert set(grafana.dashboards) == set(dashboards.DASHBOARDS)
    assert "otel-llm-traces v1" in result.output
    monkeypatch.setenv("GRAFANA_TOKEN", "bad")
    result = CliRunner().invoke(build_app(), ["dashboards", "push", "--grafana-url", grafana.url])
    assert result.exit_code == 1 and "401" in result.output and "bad" not in result.output.replace("bad ", "")
    assert TOKEN not in result.output and TOKEN not in caplog.text


def _incident(end=None):
    return Incident(id="inc-7", start=time.time() - 60, end=end, severity=Severity.CRITICAL,
                    title="Decode slowed on GPU-1",
                    candidates=[RootCauseCandidate("gpu", "GPU-1", 0.9, "thermal throttling")])


def test_annotation_exporter_creates_then_patches_region(grafana):
    client = GrafanaClient(grafana.url, http=HttpOptions(bearer_token=TOKEN))
    exporter = GrafanaAnnotationExporter(client, dashboard_uid="otel-llm-anomalies")
    try:
        exporter.export([_incident()])
        assert exporter.force_flush(3000)
        (ann,) = grafana.annotations.values()
        assert ann["tags"] == ["otel-llm", "incident", "critical"] and ann["dashboardUID"] == "otel-llm-anomalies"
        assert "1. gpu GPU-1 (0.90): thermal throttling" in ann["text"]
        end = time.time()
        exporter.export([_incident(end=end)])
        assert exporter.force_flush(3000)
        assert len(grafana.annotations) == 1 and grafana.annotations[1]["timeEnd"] == int(end * 1000)
    finally:
        exporter.shutdown()
        client.close()


def test_annotation_exporter_retries_then_counts_drop(grafana):
    from otel_llm import _selftelemetry

    client = GrafanaClient(grafana.url, http=HttpOptions(bearer_token=TOKEN))
    exporter = GrafanaAnnotationExporter(client, max_attempts=3, backoff_initial_s=0.01)
    try:
        grafana.fail_next = [503, 502]
        exporter.export([_incident()])
        assert exporter.force_flush(3000) and len(grafana.annotations) == 1, "retried until it worked"
        before = _selftelemetry.dropped_counts().get(("exporters.grafana", "annotation_failed"), 0)
        grafana.fail_next = [500, 500, 500]
        exporter.export([Incident(id="other", start=time.time())])
        assert exporter.force_flush(3000)
        assert _selftelemetry.dropped_counts()[("exporters.grafana", "annotation_failed")] == before + 1
    finally:
        exporter.shutdown()
        client.close()
