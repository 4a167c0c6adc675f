"""`otel-llm analyze`: OTLP receivers (HTTP proto/JSON/gzip, gRPC), auth, limits, TLS,
byte-for-byte forwarding, overload, and RCA end to end -- all on real loopback sockets."""

from __future__ import annotations

import dataclasses
import gzip
import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otel_llm.processors.rca import generate_case

from otel_llm.analyze import (
    AnalyzeConfig,
    AnalyzeService,
    JsonlSink,
    decode_metrics,
    decode_traces,
    records_to_json,
)

TRACE_PATH = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _payload(seed=1, traces=5) -> tuple[bytes, bytes, int]:
    """(protobuf bytes, OTLP/JSON bytes, span count) of a small synthetic batch."""
    spans = generate_case(seed, traces=traces, n_services=4).spans
    js = json.dumps(records_to_json(spans)).encode()
    return decode_traces(js, json_payload=True).SerializeToString(), js, len(spans)


def _service(**cfg) -> AnalyzeService:
    cfg.setdefault("http_endpoint", "127.0.0.1:0")
    cfg.setdefault("grpc_endpoint", "127.0.0.1:0")
    return AnalyzeService(AnalyzeConfig(**cfg), **cfg.pop("_kw", {})).start()


@pytest.fixture
def service():
    svc = _service()
    yield svc
    svc.shutdown()


def _post(svc, body, ctype="application/x-protobuf", path="/v1/traces", **headers):
    return httpx.post(f"http://127.0.0.1:{svc.http_port}{path}", content=body,
                      headers={"content-type": ctype, **headers}, timeout=10)


def test_http_protobuf_json_and_gzip_are_decoded_identically(service):
    proto, js, n = _payload()
    assert _post(service, proto).status_code == 200
    assert _post(service, js, "application/json").status_code == 200
    r = _post(service, gzip.compress(proto), **{"content-encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    service.pipeline.flush()
    assert service.pipeline.stats["spans"] == 3 * n
    # Every transport delivered the same spans, ids intact (JSON hex == protobuf bytes).
    expected = {(s.trace_id, s.span_id) for s in generate_case(1, traces=5, n_services=4).spans}
    got = [(s.trace_id, s.span_id) for t in service.rca.assembler._open.values() for s in t.spans]
    assert set(got) == expected and len(got) == 3 * n


def test_json_ids_are_hex_not_base64():
    _, js, _ = _payload(traces=1)
    data = json.loads(js)
    span = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    req = decode_traces(js, json_payload=True)
    first = req.resource_spans[0].scope_spans[0].spans[0]
    assert first.trace_id.hex() == span["traceId"] and first.span_id.hex() == span["spanId"]
    bad = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "AAAA", "spanId": "00"}]}]}]})
    with pytest.raises(ValueError, match="hex"):
        decode_traces(bad.encode(), json_payload=True)


def test_real_sdk_exporters_over_http_and_grpc(service):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tp = TracerProvider(resource=Resource.create({"service.name": "sdk-client"}))
    tp.add_span_processor(SimpleSpanProcessor(HttpExporter(
        endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces", compression=Compression.Gzip)))
    tp.add_span_processor(SimpleSpanProcessor(GrpcExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)))
    with tp.get_tracer("t").start_as_current_span("request"):
        pass
    tp.shutdown()
    service.pipeline.flush()
    assert service.intake.stats["traces_accepted"] == 2
    spans = [s for t in service.rca.assembler._open.values() for s in t.spans]
    assert {s.service for s in spans} == {"sdk-client"} and {s.name for s in spans} == {"request"}


def test_bad_requests_get_clear_errors(service):
    r = _post(service, b"\xff\xff\xff garbage")
    assert r.status_code == 400
    status = status_pb2.Status.FromString(r.content)
    assert status.code == 3 and "protobuf" in status.message
    r = _post(service, b"{not json", "application/json")
    assert r.status_code == 400 and "invalid JSON" in r.json()["message"]
    r = _post(service, b"[]", "application/json")
    assert r.status_code == 400 and "object" in r.json()["message"]
    assert _post(service, b"x", "text/plain").status_code == 415
    assert _post(service, b"not gzip", **{"content-encoding": "gzip"}).status_code == 400
    assert _post(service, b"x", **{"content-encoding": "br"}).status_code == 415
    assert httpx.get(f"http://127.0.0.1:{service.http_port}/healthz").text == "ok"


def test_size_limit_413_and_resource_exhausted():
    svc = _service(max_request_bytes=4096)
    try:
        assert _post(svc, b"\x00" * 5000).status_code == 413
        bomb = gzip.compress(b"\x00" * 1_000_000)  # small on the wire, huge inflated
        r = _post(svc, bomb, **{"content-encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in status_pb2.Status.FromString(r.content).message
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary(TRACE_PATH)(b"\x00" * 5000, timeout=5)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        svc.shutdown()


def test_grpc_malformed_is_invalid_argument(service):
    proto, _, _ = _payload()
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as ch:
        call = ch.unary_unary(TRACE_PATH)
        assert call(proto, timeout=5) == b""
        with pytest.raises(grpc.RpcError) as err:
            call(b"\xff\xff\xff garbage", timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "protobuf" in err.value.details()


def test_bearer_token_401_and_unauthenticated():
    svc = _service(token="s3cret")
    proto, _, _ = _payload()
    try:
        assert _post(svc, proto).status_code == 401
        r = _post(svc, proto, authorization="Bearer wrong")
        assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
        assert _post(svc, proto, authorization="Bearer s3cret").status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            call = ch.unary_unary(TRACE_PATH)
            with pytest.raises(grpc.RpcError) as err:
                call(proto, timeout=5, metadata=[("authorization", "Bearer nope")])
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert call(proto, timeout=5, metadata=[("authorization", "Bearer s3cret")]) == b""
    finally:
        svc.shutdown()


def test_tls_on_both_receivers(tmp_path, require):
    openssl = require.binary("openssl", hint="apt-get install openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    svc = _service(tls_cert=str(cert), tls_key=str(key))
    proto, _, _ = _payload()
    try:
        r = httpx.post(f"https://127.0.0.1:{svc.http_port}/v1/traces", content=proto,
                       verify=ssl.create_default_context(cafile=str(cert)),
                       headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 200
        creds = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{svc.grpc_port}", creds,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as ch:
            assert ch.unary_unary(TRACE_PATH)(proto, timeout=5) == b""
    finally:
        svc.shutdown()


def test_config_is_validated_at_start():
    with pytest.raises(ValueError, match="host:port"):
        AnalyzeConfig(http_endpoint="4318").resolve()
    with pytest.raises(ValueError, match="TLS needs both"):
        AnalyzeConfig(tls_cert="/x.pem").resolve()
    with pytest.raises(ValueError, match="disabled"):
        AnalyzeConfig(http_endpoint="none", grpc_endpoint="none").resolve()


# --------------------------------------------------------------------------- forwarding
class _Downstream:
    """A loopback OTLP/HTTP receiver that records exactly what it got."""

    def __init__(self, fail_first: int = 0):
        self.received: list[tuple[str, dict, bytes]] = []
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                outer.received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_forwards_every_payload_byte_for_byte_with_retries():
    down = _Downstream(fail_first=1)
    svc = _service(forward_endpoint=down.url)
    proto, js, _ = _payload()
    zipped = gzip.compress(proto)
    metrics = b""  # an empty ExportMetricsServiceRequest is valid
    try:
        assert _post(svc, proto).status_code == 200
        assert _post(svc, js, "application/json").status_code == 200
        assert _post(svc, zipped, **{"content-encoding": "gzip"}).status_code == 200
        assert _post(svc, metrics, path="/v1/metrics").status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            ch.unary_unary(TRACE_PATH)(proto, timeout=5)
        assert svc.forwarder.flush(10)
        got = [(p, h.get("Content-Type"), h.get("Content-Encoding"), b) for p, h, b in down.received]
        assert ("/v1/traces", "application/x-protobuf", None, proto) in got
        assert ("/v1/traces", "application/json", None, js) in got
        assert ("/v1/traces", "application/x-protobuf", "gzip", zipped) in got
        assert ("/v1/metrics", "application/x-protobuf", None, metrics) in got
        assert sum(1 for g in got if g[3] == proto and g[2] is None) == 2  # HTTP and gRPC copies
        assert svc.forwarder.stats["forwarded"] == 5
    finally:
        svc.shutdown()
        down.close()


def test_forward_failures_are_counted_not_fatal():
    down = _Downstream()
    url = down.url
    down.close()  # nothing listens there any more
    svc = AnalyzeService(AnalyzeConfig(http_endpoint="127.0.0.1:0", grpc_endpoint="none", forward_endpoint=url))
    svc.forwarder.max_retries, svc.forwarder.initial_backoff_s = 1, 0.01
    svc.start()
    proto, _, _ = _payload()
    try:
        assert _post(svc, proto).status_code == 200  # the receiver still answers
        svc.forwarder.flush(5)
        assert svc.forwarder.stats["dropped_retries_exhausted"] == 1
    finally:
        svc.shutdown()


# --------------------------------------------------------------------------- overload
def test_overload_is_refused_with_retry_after_and_bounded():
    gate = threading.Event()

    def slow_consumer(span):
        gate.wait(5)
        return []

    svc = AnalyzeService(AnalyzeConfig(http_endpoint="127.0.0.1:0", grpc_endpoint="127.0.0.1:0", queue_size=4),
                         span_consumers=[slow_consumer]).start()
    proto, _, n = _payload()
    try:
        codes = [_post(svc, proto).status_code for _ in range(40)]
        assert len(svc.pipeline._queue) <= 4
        refused = [c for c in codes if c == 503]
        assert refused and codes.count(200) <= 6
        r = _post(svc, proto)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as ch:
            with pytest.raises(grpc.RpcError) as err:
                ch.unary_unary(TRACE_PATH)(proto, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert svc.intake.stats["overloaded"] >= len(refused) + 2
        gate.set()
        assert svc.pipeline.flush(10)
        assert _post(svc, proto).status_code == 200  # recovers once drained
    finally:
        gate.set()
        svc.shutdown()


# --------------------------------------------------------------------------- end to end
def test_rca_end_to_end_over_otlp(tmp_path):
    """Normal traffic, then a slow downstream, sent over OTLP/HTTP: an incident ranks it first."""
    from otel_llm.processors.rca import RcaProcessor

    out = tmp_path / "incidents.jsonl"
    sink = JsonlSink(str(out))
    rca = RcaProcessor([sink], quiet_period_s=0.3, root_grace_s=0.1, rerank_interval_s=0.5)
    svc = AnalyzeService(AnalyzeConfig(http_endpoint="127.0.0.1:0", grpc_endpoint="none"), rca=rca).start()
    case = generate_case(3, fault="downstream", traces=400, n_services=6, fault_fraction=0.3, rate_per_s=300)
    starts: dict[str, float] = {}
    for s in case.spans:
        starts[s.trace_id] = min(starts.get(s.trace_id, s.start), s.start)
    normal = [s for s in case.spans if starts[s.trace_id] < case.fault_start]
    faulty = [s for s in case.spans if case.fault_start <= starts[s.trace_id] <= case.fault_end]

    def send(spans, end_at):
        shift = end_at - max(s.end for s in spans)
        moved = [dataclasses.replace(s, start=s.start + shift, end=s.end + shift) for s in spans]
        for i in range(0, len(moved), 500):
            body = json.dumps(records_to_json(moved[i:i + 500])).encode()
            assert _post(svc, body, "application/json").status_code == 200

    try:
        send(normal, time.time())
        time.sleep(0.8)  # normal traces complete and are learned
        assert svc.pipeline.flush() and rca.incident is None
        send(faulty, time.time())
        deadline = time.time() + 10
        while time.time() < deadline and (rca.incident is None or not rca.incident.candidates
                                          or rca.incident.candidates[0].evidence.get("window_traces", 0) < 80):
            time.sleep(0.2)
        assert rca.incident is not None and rca.baselines.frozen
        assert rca.incident.top.service == case.root_cause["service"], rca.incident.top
    finally:
        svc.shutdown()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and lines[-1]["candidates"][0]["service"] == case.root_cause["service"]


def test_empty_and_minimal_requests_are_fine(service):
    assert _post(service, b"").status_code == 200
    assert _post(service, b"{}", "application/json").status_code == 200
    req = ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x00" * 3, b"\x01" * 8, "bad id"
    assert _post(service, req.SerializeToString()).status_code == 200
    service.pipeline.flush()
    assert service.pipeline.stats["invalid_spans"] == 1


def _gpu_metrics(uuid: str, t: float, throttle_reason: str, xid_count: int) -> bytes:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    req = ExportMetricsServiceRequest()
    sm = req.resource_metrics.add().scope_metrics.add()
    gauge = sm.metrics.add(name="otel_llm.gpu.throttle").gauge
    for reason, value in ((throttle_reason, 1.0), ("gpu_idle", 1.0), ("sw_power_cap", 0.0)):
        p = gauge.data_points.add(time_unix_nano=int(t * 1e9), as_double=value)
        p.attributes.add(key="hw.id").value.string_value = uuid
        p.attributes.add(key="otel_llm.gpu.throttle.reason").value.string_value = reason
    xid = sm.metrics.add(name="otel_llm.gpu.xid.events").sum
    p = xid.data_points.add(time_unix_nano=int(t * 1e9), as_int=xid_count)
    p.attributes.add(key="hw.id").value.string_value = uuid
    p.attributes.add(key="otel_llm.gpu.xid").value.int_value = 79
    return req.SerializeToString()


def test_gpu_trouble_in_otlp_metrics_becomes_rca_evidence(service):
    uuid = "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    now = time.time()
    assert _post(service, _gpu_metrics(uuid, now, "hw_thermal_slowdown", 0), path="/v1/metrics").status_code == 200
    assert _post(service, _gpu_metrics(uuid, now + 1, "hw_thermal_slowdown", 2), path="/v1/metrics").status_code == 200
    service.pipeline.flush()
    reasons = [(a.uuid, a.reason) for a in service.rca._gpu_events]
    assert (uuid, "clock throttling (hw_thermal_slowdown)") in reasons
    assert (uuid, "XID 79") in reasons  # the counter grew
    assert not any("gpu_idle" in r or "sw_power_cap" in r for _, r in reasons)  # harmless / inactive


def test_forwards_to_a_grpc_downstream_byte_for_byte():
    from concurrent import futures

    got: list[bytes] = []

    def export(raw, context):
        got.append(raw)
        return b""

    down = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    down.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)}),))
    port = down.add_insecure_port("127.0.0.1:0")
    down.start()
    svc = _service(forward_endpoint=f"grpc://127.0.0.1:{port}")
    proto, _, _ = _payload()
    try:
        assert _post(svc, proto).status_code == 200
        assert _post(svc, gzip.compress(proto), **{"content-encoding": "gzip"}).status_code == 200
        assert svc.forwarder.flush(10)
        _, js, _ = _payload()
        assert _post(svc, js, "application/json").status_code == 200
        assert svc.forwarder.flush(10)
        assert got[:2] == [proto, proto] and svc.forwarder.stats["forwarded"] == 3
        assert decode_traces(got[2]) == decode_traces(js, json_payload=True)  # JSON re-encoded for gRPC
    finally:
        svc.shutdown()
        down.stop(0)


def test_otlp_metrics_feed_the_threshold_detector():
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    from otel_llm.analyze._metrics import OtlpThresholdFeed

    calls = []

    class Recorder:
        def observe(self, metric, attributes, t, value):
            calls.append((metric, dict(attributes), t, value))
            return []

    feed = OtlpThresholdFeed(Recorder())

    def request(t, hist_sum, hist_count, gauge):
        req = ExportMetricsServiceRequest()
        sm = req.resource_metrics.add().scope_metrics.add()
        h = sm.metrics.add(name="gen_ai.server.time_to_first_token").histogram
        h.aggregation_temporality = 2  # cumulative
        p = h.data_points.add(time_unix_nano=int(t * 1e9), sum=hist_sum, count=hist_count)
        p.attributes.add(key="gen_ai.request.model").value.string_value = "tiny"
        sm.metrics.add(name="otel_llm.server.kv_cache.utilization").gauge.data_points.add(
            time_unix_nano=int(t * 1e9), as_double=gauge)
        sm.metrics.add(name="not.a.fed.metric").gauge.data_points.add(time_unix_nano=int(t * 1e9), as_double=1)
        return decode_metrics(req.SerializeToString())

    feed(request(10, 2.0, 10, 0.5))
    feed(request(20, 5.0, 20, 0.6))  # 10 new observations, 3.0 s in all: mean 0.3
    feed(request(30, 5.0, 20, 0.7))  # nothing new: no histogram point
    feed(request(40, 1.0, 4, 0.8))   # counter reset: starts over
    ttft = [(t, v) for m, a, t, v in calls if m == "gen_ai.server.time_to_first_token"]
    assert ttft == [(10.0, 0.2), (20.0, pytest.approx(0.3)), (40.0, 0.25)]
    assert [v for m, a, t, v in calls if m == "otel_llm.server.kv_cache.utilization"] == [0.5, 0.6, 0.7, 0.8]
    assert all(m != "not.a.fed.metric" for m, *_ in calls)
    assert calls[0][1] == {"gen_ai.request.model": "tiny"}


def test_on_demand_ranking_and_incident_listing(tmp_path):
    from otel_llm.processors.rca import RcaProcessor

    rca = RcaProcessor(quiet_period_s=0.2, root_grace_s=0.05, self_detect=False)
    svc = AnalyzeService(AnalyzeConfig(http_endpoint="127.0.0.1:0", grpc_endpoint="none", token="tok"), rca=rca).start()
    case = generate_case(4, fault="downstream", traces=160, n_services=4, rate_per_s=300)
    shift = time.time() - max(s.end for s in case.spans)
    moved = [dataclasses.replace(s, start=s.start + shift, end=s.end + shift) for s in case.spans]
    auth = {"authorization": "Bearer tok"}
    base = f"http://127.0.0.1:{svc.http_port}"
    try:
        for i in range(0, len(moved), 2000):
            body = json.dumps(records_to_json(moved[i:i + 2000])).encode()
            assert _post(svc, body, "application/json", **auth).status_code == 200
        time.sleep(0.5)
        svc.pipeline.flush()
        time.sleep(1.2)  # a tick closes the traces
        assert httpx.get(f"{base}/v1/rca?last=60").status_code == 401
        r = httpx.get(f"{base}/v1/rca", params={"start": case.fault_start + shift, "end": case.fault_end + shift},
                      headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["service"] == case.root_cause["service"]
        assert httpx.get(f"{base}/v1/rca?last=abc", headers=auth).status_code == 400
        r = httpx.get(f"{base}/v1/incidents", headers=auth)
        assert r.status_code == 200 and r.json() == []  # nothing triggered (self-detection off)
    finally:
        svc.shutdown()
