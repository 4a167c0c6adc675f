"""A real Prometheus scrapes the reference server's /metrics; promtool lints the exposition."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from otel_llm.server import create_app, run_in_thread
from otel_llm.testing import Telemetry

pytestmark = pytest.mark.backends


def test_real_prometheus_scrapes_genai_histograms_and_stage_gauges(require, tiny_model):
    require.binary("prometheus")
    from otel_llm._backends import Prometheus

    tel = Telemetry()
    model, tok = tiny_model
    app = create_app(model, tok, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider, torch_threads=1)
    try:
        with run_in_thread(app) as server:
            for _ in range(3):
                httpx.post(server.url + "/v1/completions", json={"prompt": "hi", "max_tokens": 6, "stream": True},
                           timeout=20)
            with Prometheus(scrape_targets=[f"127.0.0.1:{server.port}"], scrape_interval="200ms") as prom:
                ttft = prom.wait_for('gen_ai_server_time_to_first_token_seconds_count{gen_ai_operation_name="text_completion"}')
                assert float(ttft[0]["value"][1]) == 3
                p50 = prom.wait_for("histogram_quantile(0.5, sum by (le) (gen_ai_server_time_to_first_token_seconds_bucket))")
                assert 0 < float(p50[0]["value"][1]) < 10
                assert prom.wait_for("otel_llm_server_requests_running")
                assert prom.wait_for("otel_llm_server_requests_waiting")
                assert prom.wait_for("otel_llm_server_kv_cache_utilization")
                assert prom.wait_for("otel_llm_server_queue_duration_seconds_count")[0]["value"][1] == "3"
    finally:
        tel.shutdown()


def test_promtool_accepts_the_exposition(require, tiny_model):
    promtool = require.binary("promtool")
    tel = Telemetry()
    model, tok = tiny_model
    app = create_app(model, tok, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider, torch_threads=1)
    try:
        with run_in_thread(app) as server:
            httpx.post(server.url + "/v1/chat/completions", timeout=20,
                       json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True})
            text = httpx.get(server.url + "/metrics").text
    finally:
        tel.shutdown()
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr  # parses, and no lint warnings either
