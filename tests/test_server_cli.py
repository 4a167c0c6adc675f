"""``otel-llm serve`` wiring, in-process: configure() is called, options reach the app, bad values exit 2.

uvicorn.run is replaced by a recorder (it would block); the app it receives is
then served for real on a loopback port.
"""

from __future__ import annotations

import httpx
import pytest
from typer.testing import CliRunner

from otel_llm.cli._app import build_app
from otel_llm.server import run_in_thread


@pytest.fixture
def captured(monkeypatch, tiny_model):
    import uvicorn

    import otel_llm
    import otel_llm.models

    calls = {}

    class Handle:
        def shutdown(self):
            calls["shutdown"] = True

    def fake_configure(**kw):
        calls["configure"] = kw
        return Handle()

    def fake_run(app, **kw):
        calls["app"], calls["run"] = app, kw

    monkeypatch.setattr(otel_llm, "configure", fake_configure)
    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(otel_llm.models, "load_model", lambda path, seed=0: tiny_model)
    return calls


def test_serve_configures_telemetry_and_wires_options(captured):
    result = CliRunner().invoke(build_app(), ["serve", "--port", "0", "--max-queue", "3", "--seed", "5",
                                              "--log-level", "warning"])
    assert result.exit_code == 0, result.output
    assert "configure" in captured and captured["shutdown"] is True
    assert captured["run"]["port"] == 0 and captured["run"]["host"] == "127.0.0.1"
    app = captured["app"]
    assert app.state.engine.max_queue == 3
    with run_in_thread(app) as handle:
        r = httpx.post(handle.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 3}, timeout=20)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3


def test_bad_env_value_exits_with_the_variable_named(captured, monkeypatch):
    monkeypatch.setenv("OTEL_LLM_SERVER_MAX_QUEUE", "lots")
    result = CliRunner().invoke(build_app(), ["serve", "--no-instrument"])
    assert result.exit_code == 2
    assert "OTEL_LLM_SERVER_MAX_QUEUE" in result.output
    assert "configure" not in captured  # --no-instrument: no telemetry set-up at all


def test_vllm_bridge_once_prints_what_it_bridges():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    body = (Path(__file__).parent / "fixtures" / "vllm" / "aibrix_runtime_v0_engine.prom").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        result = CliRunner().invoke(build_app(), ["vllm-bridge", "--url", url, "--once"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert "otel_llm.server.kv_cache.utilization" in result.output
    assert "otel_llm.vllm.prompt_tokens" in result.output


def test_vllm_bridge_once_fails_clearly_when_unreachable():
    result = CliRunner().invoke(build_app(), ["vllm-bridge", "--url", "http://127.0.0.1:9/metrics", "--once"])
    assert result.exit_code == 1
    assert "could not scrape" in result.output
