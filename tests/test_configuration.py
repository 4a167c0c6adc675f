"""otel_llm.configure(): precedence, validation, real exporters on loopback, instrumentors, shutdown."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm
from otel_llm import semconv as sc

OTEL_VARS = (
    "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_LLM_PROMETHEUS_PORT", "OTEL_LLM_PROMETHEUS_HOST", "OTEL_LLM_INSTRUMENTATIONS",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "OTEL_LLM_STALL_THRESHOLD_MS", "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_LLM_TORCH_MODULES",
    "OTEL_LLM_GPU_SOURCE", "OTEL_LLM_VLLM_METRICS_URL", "OTEL_LLM_VLLM_SCRAPE_INTERVAL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in OTEL_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def configured():
    handles = []

    def make(**kw):
        kw.setdefault("set_global", False)
        kw.setdefault("instrument", False)
        kw.setdefault("traces_exporter", "none")
        kw.setdefault("metrics_exporter", "none")
        h = otel_llm.configure(**kw)
        handles.append(h)
        return h

    yield make
    for h in handles:
        h.shutdown()


def test_service_name_precedence(configured, monkeypatch):
    assert configured().tracer_provider.resource.attributes["service.name"].startswith("unknown_service")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,team=llm")
    res = configured().tracer_provider.resource.attributes
    assert res["service.name"] == "from-env" and res["team"] == "llm"
    res = configured(service_name="from-arg", resource_attributes={"team": "arg"}).meter_provider._sdk_config.resource
    assert res.attributes["service.name"] == "from-arg" and res.attributes["team"] == "arg"
    assert res.attributes["telemetry.distro.name"] == "otel-llm"


@pytest.mark.parametrize(
    ("env", "value", "match"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
        ("OTEL_TRACES_EXPORTER", "prometheus", "OTEL_TRACES_EXPORTER"),  # not a trace exporter
        ("OTEL_METRICS_EXPORTER", "otlp,none", "cannot be combined"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ("OTEL_LLM_PROMETHEUS_PORT", "ninety", "OTEL_LLM_PROMETHEUS_PORT"),
        ("OTEL_LLM_PROMETHEUS_PORT", "70000", "maximum"),
        ("OTEL_LLM_INSTRUMENTATIONS", "tensorflow", "OTEL_LLM_INSTRUMENTATIONS"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "sometimes", "CAPTURE_MESSAGE_CONTENT"),
        ("OTEL_LLM_STALL_THRESHOLD_MS", "-1", "minimum"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "soon", "OTEL_METRIC_EXPORT_INTERVAL"),
    ],
)
def test_bad_env_values_name_the_variable(monkeypatch, env, value, match):
    monkeypatch.setenv(env, value)
    kw = {"set_global": False}
    if env != "OTEL_TRACES_EXPORTER":
        kw["traces_exporter"] = "otlp" if "PROTOCOL" in env else "none"
    if env != "OTEL_METRICS_EXPORTER":
        kw["metrics_exporter"] = "prometheus" if "PROMETHEUS" in env else "none"
    if env != "OTEL_LLM_INSTRUMENTATIONS":
        kw["instrument"] = False
    with pytest.raises(ValueError, match=match):
        otel_llm.configure(**kw)


def test_argument_beats_env(configured, monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")  # would be rejected ...
    configured(traces_exporter="none")  # ... but the argument wins
    with pytest.raises(ValueError, match="argument"):
        otel_llm.configure(traces_exporter="jaeger", metrics_exporter="none", set_global=False, instrument=False)


def test_console_exporter_prints_spans(configured, capsys):
    h = configured(traces_exporter="console")
    h.tracer_provider.get_tracer("t").start_span("hello-console").end()
    h.shutdown()
    assert "\"name\": \"hello-console\"" in capsys.readouterr().out


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_http_exporter_reads_its_own_env_and_delivers(configured, monkeypatch):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.bodies = []
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        h = configured(traces_exporter="otlp", service_name="otlp-test")  # default protocol: http/protobuf
        h.tracer_provider.get_tracer("t").start_span("over-the-wire").end()
        h.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    (path, body), *_ = _Collector.bodies
    assert path == "/v1/traces"
    req = ExportTraceServiceRequest.FromString(body)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.name == "over-the-wire"


def test_otlp_grpc_protocol_selects_grpc_exporter(configured, monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    h = configured(traces_exporter="otlp")
    exporters = [p.span_exporter for p in h.tracer_provider._active_span_processor._span_processors]
    assert any(isinstance(e, Grpc) for e in exporters)


def test_prometheus_endpoint_serves_llm_buckets(configured):
    h = configured(metrics_exporter="prometheus", prometheus_port=0)
    host, port = h.prometheus_address
    assert host == "127.0.0.1" and port > 0
    from otel_llm.instrumentation._genai import GenAIInstruments

    inst = GenAIInstruments(h.meter_provider.get_meter("t"), meter_provider=h.meter_provider)
    inst.time_to_first_token.record(0.03, {"gen_ai.request.model": "m"})
    inst.record_gaps([0.004, 0.02, 0.02], {"gen_ai.request.model": "m"})  # pre-aggregated producer path
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=5).text
    assert 'otel_llm_server_token_gap_seconds_count{' in text
    assert [ln for ln in text.splitlines() if ln.startswith("otel_llm_server_token_gap_seconds_count")][0].endswith(" 3.0")
    assert 'gen_ai_server_time_to_first_token_seconds_bucket{' in text
    assert 'le="0.04"' in text and 'le="10000.0"' not in text  # LLM buckets, not the SDK defaults
    h.shutdown()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{host}:{port}/metrics", timeout=1)


def test_shutdown_idempotent_and_global_untouched(configured):
    before = trace.get_tracer_provider()
    h = configured()
    assert trace.get_tracer_provider() is before
    h.shutdown()
    h.shutdown()
    assert h.closed


def test_instrument_choice_and_exclusion(configured, monkeypatch, tiny_model):
    from otel_llm._configuration import available_instrumentations

    assert {"transformers", "torch"} <= set(available_instrumentations())
    memory = InMemorySpanExporter()
    h = configured(instrument=["transformers"], span_processors=[SimpleSpanProcessor(memory)])
    assert set(h.instrumentors) == {"transformers"}
    model, tok = tiny_model
    model.generate(**tok("hi", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    (span,) = memory.get_finished_spans()
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    h.shutdown()  # uninstruments what it instrumented
    model.generate(**tok("hi", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert len(memory.get_finished_spans()) == 1

    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "otel_llm_torch,otel_llm_transformers")
    h2 = configured(instrument=True)
    assert "torch" not in h2.instrumentors and "transformers" not in h2.instrumentors


def test_instrument_all_skips_missing_libraries_quietly(configured, monkeypatch):
    h = configured(instrument=True)
    assert "transformers" in h.instrumentors and "torch" in h.instrumentors
    assert "vllm" not in h.instrumentors  # vllm is not installed here: skipped, not an error


def test_gpu_uuids_and_views(configured):
    from otel_llm._gpu import current_gpu_uuids, set_process_gpu_uuids

    try:
        configured(gpu_uuids=["GPU-1234"])
        assert current_gpu_uuids() == ("GPU-1234",)
    finally:
        set_process_gpu_uuids(None)


def _metric_names(reader) -> dict[str, str]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {m.name: sm.scope.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _wait_for(predicate, timeout_s: float = 3.0):
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def test_gpu_metrics_start_with_configure_and_stop_with_shutdown(configured):
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    h = configured(gpu_source="sim", metric_readers=[reader])
    assert h.gpu_metrics is not None
    assert _wait_for(lambda: sc.HW_GPU_UTILIZATION in _metric_names(reader))  # on the configured provider
    thread = h.gpu_metrics._thread
    h.shutdown()
    assert thread is None or not thread.is_alive()


def test_gpu_source_none_or_nothing_found_starts_nothing(configured, monkeypatch):
    assert configured(gpu_source="none").gpu_metrics is None
    monkeypatch.setenv("OTEL_LLM_GPU_SOURCE", "none")
    assert configured().gpu_metrics is None
    with pytest.raises(ValueError, match="OTEL_LLM_GPU_SOURCE"):
        configured(gpu_source="tpu")


def test_vllm_bridge_starts_from_env_and_stops_with_shutdown(configured, monkeypatch):
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    body = (
        b"# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.\n"
        b"# TYPE vllm:num_preemptions_total counter\n"
        b'vllm:num_preemptions_total{model_name="m"} 3.0\n'
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert configured().vllm_bridge is None  # off unless a URL is given
        monkeypatch.setenv("OTEL_LLM_VLLM_METRICS_URL", f"http://127.0.0.1:{server.server_port}/metrics")
        reader = InMemoryMetricReader()
        h = configured(gpu_source="none", metric_readers=[reader])
        assert h.vllm_bridge is not None
        assert _wait_for(lambda: h.vllm_bridge.scrapes >= 1)
        names = _metric_names(reader)
        assert "otel_llm.vllm" in names.values(), names  # bridged series reach the configured provider
        h.shutdown()
        assert h.vllm_bridge._thread is None
        assert configured(gpu_source="none", vllm_metrics_url="").vllm_bridge is None  # "" = off despite the env
        with pytest.raises(ValueError, match="not an http"):
            configured(vllm_metrics_url="localhost:8000")
    finally:
        server.shutdown()
        server.server_close()
