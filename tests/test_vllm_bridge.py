"""VLLMMetricsBridge against real vLLM exposition text served over loopback HTTP.

Fixtures in tests/fixtures/vllm/ are verbatim vLLM /metrics output (see the
README there). Complete histograms are produced live by prometheus_client --
the library vLLM itself renders /metrics with -- under vLLM's metric names.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from otel_llm import semconv as sc
from otel_llm._selftelemetry import _reset_for_tests, dropped_counts
from otel_llm.instrumentation.vllm import VLLMMetricsBridge

FIXTURES = Path(__file__).parent / "fixtures" / "vllm"
MODEL = "Qwen/Qwen2.5-Coder-1.5B-Instruct"
# vLLM's TTFT bucket boundaries (vllm/v1/metrics/loggers.py)
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]


class _Exposition:
    """A real loopback HTTP server whose /metrics body (and status) the test controls."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 200
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(outer.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exposition():
    exp = _Exposition()
    yield exp
    exp.close()


@pytest.fixture(autouse=True)
def _fresh_selftelemetry():
    _reset_for_tests()
    yield
    _reset_for_tests()


def _bridge(url, telemetry, **kw):
    return VLLMMetricsBridge(url, interval_s=0.05, meter_provider=telemetry.meter_provider, retries=0, **kw).attach()


def _pts(metrics, name):
    return [p for m in metrics.get(name, []) for p in m.data.data_points]


def _by_name(telemetry):
    out = {}
    data = telemetry.metric_reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.setdefault(m.name, []).append(m)
    return out


def test_real_v0_exposition_maps_to_otel_names(exposition, telemetry):
    exposition.body = (FIXTURES / "aibrix_runtime_v0_engine.prom").read_bytes()
    bridge = _bridge(exposition.url, telemetry)
    try:
        assert bridge.scrape_once()
        metrics = _by_name(telemetry)
    finally:
        bridge.shutdown()

    (kv,) = metrics[sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION]
    (point,) = kv.data.data_points
    assert point.value == 0.0
    assert point.attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert point.attributes[sc.GEN_AI_PROVIDER_NAME] == "vllm"
    assert point.attributes[sc.SERVER_ADDRESS] == "127.0.0.1"

    (running,) = metrics[sc.OTEL_LLM_SERVER_REQUESTS_RUNNING]
    assert running.data.is_monotonic is False  # an up-down counter, like our own instrumentors emit
    (preempt,) = metrics[sc.OTEL_LLM_SERVER_PREEMPTIONS]
    assert preempt.data.is_monotonic is True

    assert _pts(metrics, "otel_llm.vllm.prompt_tokens")[0].value == 148.0
    assert _pts(metrics, "otel_llm.vllm.generation_tokens")[0].value == 955.0
    (success,) = _pts(metrics, "otel_llm.vllm.request_success")
    assert success.value == 4.0 and success.attributes["otel_llm.vllm.finished_reason"] == "stop"
    (cfg,) = _pts(metrics, "otel_llm.vllm.cache_config_info")
    assert cfg.attributes["otel_llm.vllm.num_gpu_blocks"] == "81767"
    # the deprecated CPU-swap gauge is bridged unchanged, not dropped
    assert _pts(metrics, "otel_llm.vllm.cpu_cache_usage_perc")[0].value == 0.0
    # The excerpt's iteration_tokens_total has neither +Inf nor _count: no honest total -> dropped and counted
    assert "otel_llm.vllm.iteration_tokens_total" not in metrics
    assert dropped_counts()[("vllm_bridge", "incomplete_histogram")] == 1
    # every bridged point carries gen_ai.provider.name; nothing outside vllm:* is bridged
    assert all(n.startswith(("otel_llm.", "gen_ai.")) for n in metrics)


def test_real_v1_exposition(exposition, telemetry):
    exposition.body = (FIXTURES / "vllm_design_doc_v1_engine.prom").read_bytes()
    bridge = _bridge(exposition.url, telemetry)
    try:
        assert bridge.scrape_once()
        metrics = _by_name(telemetry)
    finally:
        bridge.shutdown()
    reasons = {p.attributes["otel_llm.vllm.finished_reason"]: p.value for p in _pts(metrics, "otel_llm.vllm.request_success")}
    assert reasons == {"stop": 1.0, "length": 131.0, "abort": 0.0}
    assert _pts(metrics, sc.OTEL_LLM_SERVER_REQUESTS_RUNNING)[0].value == 8.0
    # The doc excerpt's TTFT histogram has _count but no _sum: dropped, counted, never invented
    assert _pts(metrics, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == []
    assert dropped_counts()[("vllm_bridge", "incomplete_histogram")] == 1


def _vllm_registry(ttft_values, prompt_tokens=(), gen_tokens=(), tpot=(), itl=(), preemptions=0, with_created=True):
    """A prometheus_client registry with vLLM's metric names, as vLLM's PrometheusStatLogger builds them."""
    reg = CollectorRegistry()
    labels = ["model_name", "engine"]
    h = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", labels, buckets=TTFT_BUCKETS, registry=reg)
    for v in ttft_values:
        h.labels(MODEL, "0").observe(v)
    p = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", labels, buckets=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], registry=reg)
    for v in prompt_tokens:
        p.labels(MODEL, "0").observe(v)
    g = Histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", labels, buckets=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], registry=reg)
    for v in gen_tokens:
        g.labels(MODEL, "0").observe(v)
    t = Histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", labels, buckets=[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5], registry=reg)
    for v in tpot:
        t.labels(MODEL, "0").observe(v)
    i = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", labels, buckets=[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5], registry=reg)
    for v in itl:
        i.labels(MODEL, "0").observe(v)
    c = Counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", labels, registry=reg)
    c.labels(MODEL, "0").inc(preemptions)
    Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", labels, registry=reg).labels(MODEL, "0").set(0.42)
    Gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. DEPRECATED", labels, registry=reg).labels(MODEL, "0").set(0.42)
    return reg


def _expected_buckets(values, bounds):
    counts = [0] * (len(bounds) + 1)
    for v in values:
        counts[next((k for k, b in enumerate(bounds) if v <= b), len(bounds))] += 1
    return counts


def test_histograms_are_reemitted_faithfully(exposition, telemetry):
    ttft = [0.003, 0.03, 0.03, 0.07, 0.3, 1.7, 12.0, 3000.0]
    exposition.body = generate_latest(
        _vllm_registry(ttft, prompt_tokens=[7, 300], gen_tokens=[32, 32, 900], tpot=[0.02, 0.2], itl=[0.01, 0.02, 0.5])
    )
    bridge = _bridge(exposition.url, telemetry)
    try:
        assert bridge.scrape_once()
        metrics = _by_name(telemetry)
    finally:
        bridge.shutdown()
    (point,) = _pts(metrics, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    assert list(point.explicit_bounds) == TTFT_BUCKETS  # vLLM's own boundaries, not re-bucketed
    assert list(point.bucket_counts) == _expected_buckets(ttft, TTFT_BUCKETS)
    assert point.count == len(ttft)
    assert point.sum == pytest.approx(sum(ttft))
    assert point.attributes[sc.GEN_AI_REQUEST_MODEL] == MODEL
    assert point.attributes["otel_llm.vllm.engine"] == "0"
    assert point.start_time_unix_nano < point.time_unix_nano  # from vLLM's _created sample

    usage = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p for p in _pts(metrics, sc.GEN_AI_CLIENT_TOKEN_USAGE)}
    assert usage["input"].count == 2 and usage["input"].sum == 307
    assert usage["output"].count == 3 and usage["output"].sum == 964

    # time_per_output_token feeds the semconv TPOT; inter-token latency feeds our gap histogram
    assert _pts(metrics, sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN)[0].count == 2
    assert _pts(metrics, sc.OTEL_LLM_SERVER_TOKEN_GAP)[0].count == 3
    # kv_cache_usage_perc is preferred; the deprecated gpu_cache_usage_perc is kept apart, not double-fed
    assert len(_pts(metrics, sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION)) == 1
    assert _pts(metrics, "otel_llm.vllm.gpu_cache_usage_perc")[0].value == pytest.approx(0.42)


def test_counters_and_histograms_stay_monotonic_across_a_vllm_restart(exposition, telemetry):
    exposition.body = generate_latest(_vllm_registry([0.03] * 10, preemptions=100))
    bridge = _bridge(exposition.url, telemetry)
    try:
        assert bridge.scrape_once()
        first = telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)[0]
        assert telemetry.points(sc.OTEL_LLM_SERVER_PREEMPTIONS)[0].value == 100
        time.sleep(0.01)  # a restarted vLLM has a later _created
        exposition.body = generate_latest(_vllm_registry([0.3] * 3, preemptions=5))  # vLLM restarted
        assert bridge.scrape_once()
        after = telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)[0]
        assert telemetry.points(sc.OTEL_LLM_SERVER_PREEMPTIONS)[0].value == 105
    finally:
        bridge.shutdown()
    assert after.count == 13 and after.sum == pytest.approx(10 * 0.03 + 3 * 0.3)
    assert after.start_time_unix_nano == first.start_time_unix_nano  # one continuous cumulative series
    assert all(b >= a for a, b in zip(first.bucket_counts, after.bucket_counts, strict=True))


def test_failed_scrapes_are_counted_warned_once_and_export_nothing_stale(exposition, telemetry, caplog):
    exposition.body = (FIXTURES / "aibrix_runtime_v0_engine.prom").read_bytes()
    bridge = _bridge(exposition.url, telemetry)
    try:
        assert bridge.scrape_once()
        assert telemetry.points(sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION)
        exposition.status = 503
        with caplog.at_level(logging.WARNING, logger="otel_llm.instrumentation.vllm._bridge"):
            assert not bridge.scrape_once()
            assert not bridge.scrape_once()
        assert telemetry.points(sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION) == []  # no stale gauges
        errors = telemetry.points(sc.OTEL_LLM_VLLM_SCRAPE_ERRORS)
        assert [(p.attributes[sc.ERROR_TYPE], p.value) for p in errors] == [("503", 2)]
        assert len([r for r in caplog.records if "cannot scrape vLLM metrics" in r.getMessage()]) == 1
        exposition.status = 200
        assert bridge.scrape_once() and bridge.consecutive_failures == 0
    finally:
        bridge.shutdown()


def test_unreachable_endpoint_is_counted_by_exception_type(telemetry):
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as tmp:
        port = tmp.server_address[1]  # bound then closed below: nothing listens there
    bridge = _bridge(f"http://127.0.0.1:{port}/metrics", telemetry)
    try:
        assert not bridge.scrape_once()
    finally:
        bridge.shutdown()
    (err,) = telemetry.points(sc.OTEL_LLM_VLLM_SCRAPE_ERRORS)
    assert err.attributes[sc.ERROR_TYPE] == "ConnectError"


def test_background_thread_scrapes_and_shutdown_detaches(exposition, telemetry):
    exposition.body = (FIXTURES / "aibrix_runtime_v0_engine.prom").read_bytes()
    bridge = VLLMMetricsBridge(exposition.url, interval_s=0.02, meter_provider=telemetry.meter_provider)
    with bridge:
        deadline = time.monotonic() + 2.0
        while bridge.scrapes < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bridge.scrapes >= 2
        assert telemetry.points(sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION)
    assert telemetry.points(sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION) == []  # detached from the reader
    bridge.shutdown()  # idempotent


def test_prometheus_reader_exposes_bridged_histogram(exposition):
    """End to end through opentelemetry-exporter-prometheus: the bridged TTFT keeps its buckets."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client.parser import text_string_to_metric_families

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)  # its own registry: nothing global is touched
    provider = MeterProvider(metric_readers=[reader])
    exposition.body = generate_latest(_vllm_registry([0.03, 0.3, 0.3]))
    bridge = VLLMMetricsBridge(exposition.url, meter_provider=provider, retries=0).attach()
    try:
        assert bridge.scrape_once()
        text = generate_latest(registry).decode()
    finally:
        bridge.shutdown()
        provider.shutdown()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    ttft = next(f for n, f in fams.items() if n.startswith("gen_ai_server_time_to_first_token"))
    count = next(s.value for s in ttft.samples if s.name.endswith("_count"))
    inf = next(s.value for s in ttft.samples if s.name.endswith("_bucket") and math.isinf(float(s.labels["le"])))
    assert count == inf == 3


def test_invalid_settings_are_rejected_at_construction():
    with pytest.raises(ValueError, match="not an http"):
        VLLMMetricsBridge("localhost:8000/metrics")
    with pytest.raises(ValueError):
        VLLMMetricsBridge("http://localhost:8000/metrics", interval_s=0)


def test_env_var_configures_the_url(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_VLLM_METRICS_URL", "http://vllm.internal:9000/metrics")
    monkeypatch.setenv("OTEL_LLM_VLLM_SCRAPE_INTERVAL", "2.5")
    bridge = VLLMMetricsBridge()
    assert bridge.url == "http://vllm.internal:9000/metrics" and bridge.interval_s == 2.5
    monkeypatch.setenv("OTEL_LLM_VLLM_SCRAPE_INTERVAL", "soon")
    with pytest.raises(ValueError, match="OTEL_LLM_VLLM_SCRAPE_INTERVAL"):
        VLLMMetricsBridge()


def _counter_text(value: float, typed: bool) -> str:
    head = ("# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.\n"
            "# TYPE vllm:num_preemptions_total counter\n") if typed else ""  # untyped: still a counter (_total)
    return head + f'vllm:num_preemptions_total{{model_name="m"}} {value}\n'


def test_bridged_counter_never_decreases_whatever_vllm_does():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from prometheus_client.parser import text_string_to_metric_families

    from otel_llm.instrumentation.vllm._convert import FamilyConverter

    @settings(max_examples=80, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=30), st.booleans())
    def check(raw, typed):
        conv = FamilyConverter({})
        emitted = []
        for i, v in enumerate(raw):
            (metric,) = conv.convert(text_string_to_metric_families(_counter_text(float(v), typed)), now_ns=1_000 + i)
            assert metric.name == sc.OTEL_LLM_SERVER_PREEMPTIONS and metric.data.is_monotonic
            emitted.append(metric.data.data_points[0].value)
        assert all(b >= a for a, b in zip(emitted, emitted[1:], strict=False))
        # the total equals what vLLM counted across its restarts: each drop starts a new run
        runs, last = 0.0, 0.0
        for v in raw:
            if v < last:
                runs += last
            last = v
        assert emitted[-1] == runs + raw[-1]

    check()
