"""OTLP out: detections/scores/bands as OTel metrics, incidents as OTel log records.

In memory (SDK readers) and over a real OTLP/HTTP exporter to a loopback receiver that decodes the
protobuf with opentelemetry-proto.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from otel_llm.exporters import DetectionMetricsExporter
from otel_llm.processors._model import Detection, ExportResult, Incident, RootCauseCandidate, Severity

from otel_llm import semconv as sc

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def incident(end=None, candidates=None):
    d = Detection(kind="threshold", series='ttft{model="tiny"}', start=1000.0, score=0.93,
                  severity=Severity.CRITICAL, metric=sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN,
                  attributes={sc.GEN_AI_REQUEST_MODEL: "tiny"}, value=1.2, band=(0.05, 0.4), level=95,
                  trace_ids=(TRACE,))
    return Incident(id="inc-1", start=1000.0, detections=[d], end=end, severity=Severity.CRITICAL,
                    title="TTFT above band", candidates=candidates if candidates is not None else
                    [RootCauseCandidate("gpu", "GPU-1", 0.9, "thermal throttling")])


@pytest.fixture
def logs():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _point(telemetry, name, **attrs):
    pts = [p for p in telemetry.points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]
    assert pts, f"no {name} point with {attrs}: {telemetry.points(name)}"
    return pts


def test_metrics_and_logs_in_memory(telemetry, logs):
    provider, log_exporter = logs
    exp = DetectionMetricsExporter(telemetry.meter_provider, provider)
    assert exp.export([incident()]) is ExportResult.SUCCESS
    assert exp.export([incident()]) is ExportResult.SUCCESS  # re-export: counted once, no new log
    (count,) = _point(telemetry, sc.OTEL_LLM_DETECTIONS, **{sc.OTEL_LLM_DETECTOR: "threshold"})
    assert count.value == 1 and count.attributes[sc.OTEL_LLM_SEVERITY] == "critical"
    (score,) = _point(telemetry, sc.OTEL_LLM_ANOMALY_SCORE)
    assert score.value == pytest.approx(0.93) and score.attributes[sc.GEN_AI_REQUEST_MODEL] == "tiny"
    (upper,) = _point(telemetry, sc.OTEL_LLM_THRESHOLD_UPPER)
    (lower,) = _point(telemetry, sc.OTEL_LLM_THRESHOLD_LOWER)
    assert (lower.value, upper.value) == (0.05, 0.4) and upper.attributes[sc.OTEL_LLM_LEVEL] == 95.0
    (open_,) = _point(telemetry, sc.OTEL_LLM_INCIDENTS_OPEN)
    assert open_.value == 1
    records = [r.log_record for r in log_exporter.get_finished_logs()]
    assert len(records) == 1
    rec = records[0]
    assert rec.body == "TTFT above band [opened]" and rec.severity_text == "CRITICAL"
    assert rec.attributes["otel_llm.incident.root_causes"] == ("gpu GPU-1 (0.90): thermal throttling",)
    assert rec.trace_id == int(TRACE, 16)
    # new ranking -> "updated"; resolution -> "resolved" and the open gauge back to 0
    exp.export([incident(candidates=[RootCauseCandidate("stage", "decode", 0.7, "slow decode")])])
    exp.export([incident(end=1100.0)])
    bodies = [r.log_record.body for r in log_exporter.get_finished_logs()]
    assert bodies == ["TTFT above band [opened]", "TTFT above band [updated]", "TTFT above band [resolved]"]
    assert _point(telemetry, sc.OTEL_LLM_INCIDENTS_OPEN)[0].value == 0


def test_an_incident_that_turns_critical_moves_in_the_open_gauge_and_is_logged_as_updated(telemetry, logs):
    import dataclasses

    provider, log_exporter = logs
    exp = DetectionMetricsExporter(telemetry.meter_provider, provider)
    crit = incident()
    warn = dataclasses.replace(crit, severity=Severity.WARNING,
                               detections=[dataclasses.replace(crit.detections[0], severity=Severity.WARNING)])

    def open_by_severity():
        return {p.attributes[sc.OTEL_LLM_SEVERITY]: p.value for p in telemetry.points(sc.OTEL_LLM_INCIDENTS_OPEN)}

    exp.export([warn])
    assert open_by_severity() == {"warning": 1}
    exp.export([crit])  # same incident, same ranking, now critical (an escalated detection)
    assert open_by_severity() == {"warning": 0, "critical": 1}
    exp.export([incident(end=1100.0)])
    assert open_by_severity() == {"warning": 0, "critical": 0}
    records = [r.log_record for r in log_exporter.get_finished_logs()]
    assert [(r.body, r.severity_text) for r in records] == [
        ("TTFT above band [opened]", "WARNING"), ("TTFT above band [updated]", "CRITICAL"),
        ("TTFT above band [resolved]", "CRITICAL")]
    # the escalated detection is one detection (same fingerprint and start), counted under its first severity
    (count,) = _point(telemetry, sc.OTEL_LLM_DETECTIONS)
    assert (count.value, count.attributes[sc.OTEL_LLM_SEVERITY]) == (1, "warning")


def test_series_limit_and_bad_input(telemetry, logs):
    from otel_llm import _selftelemetry

    provider, _ = logs
    exp = DetectionMetricsExporter(telemetry.meter_provider, provider, max_series=2)
    before = _selftelemetry.dropped_counts().get(("exporters.otlp", "series_limit"), 0)
    dets = [Detection(kind="anomaly", series=f"s{i}", start=float(i), score=0.5) for i in range(5)]
    assert exp.export_detections(dets) is ExportResult.SUCCESS
    assert len(telemetry.points(sc.OTEL_LLM_ANOMALY_SCORE)) == 2
    assert _selftelemetry.dropped_counts()[("exporters.otlp", "series_limit")] == before + 3
    assert exp.export([object()]) is ExportResult.FAILURE  # never raises
    with pytest.raises(ValueError):
        DetectionMetricsExporter(telemetry.meter_provider, provider, max_series=0)


class OtlpReceiver:
    """A loopback OTLP/HTTP receiver decoding protobuf requests with opentelemetry-proto."""

    def __init__(self):
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        self.metrics: list = []
        self.logs: list = []
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.headers["Content-Type"] == "application/x-protobuf"
                if self.path == "/v1/metrics":
                    rx.metrics.append(ExportMetricsServiceRequest.FromString(body))
                elif self.path == "/v1/logs":
                    rx.logs.append(ExportLogsServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_real_otlp_http_export_to_loopback_receiver():
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    rx = OtlpReceiver()
    try:
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=rx.url + "/v1/metrics", timeout=5),
                                               export_interval_millis=60_000)
        meters = MeterProvider(metric_readers=[reader])
        loggers = LoggerProvider()
        loggers.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=rx.url + "/v1/logs",
                                                                                  timeout=5)))
        exp = DetectionMetricsExporter(meters, loggers)
        exp.export([incident()])
        assert meters.force_flush(5000) and loggers.force_flush(5000)
        deadline = time.monotonic() + 5
        while (not rx.metrics or not rx.logs) and time.monotonic() < deadline:
            time.sleep(0.02)
        names = {m.name for req in rx.metrics for rm in req.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics}
        assert {sc.OTEL_LLM_DETECTIONS, sc.OTEL_LLM_ANOMALY_SCORE, sc.OTEL_LLM_THRESHOLD_UPPER,
                sc.OTEL_LLM_THRESHOLD_LOWER, sc.OTEL_LLM_INCIDENTS_OPEN} <= names
        scopes = {sm.scope.name for req in rx.metrics for rm in req.resource_metrics for sm in rm.scope_metrics}
        assert "otel_llm.exporters.otlp" in scopes
        (log,) = [lr for req in rx.logs for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
        assert log.body.string_value == "TTFT above band [opened]"
        assert log.trace_id.hex() == TRACE
        attrs = {kv.key: kv.value for kv in log.attributes}
        assert attrs["otel_llm.incident.id"].string_value == "inc-1"
        meters.shutdown()
        loggers.shutdown()
    finally:
        rx.close()


def test_every_sink_satisfies_the_detection_sink_protocol(tmp_path, telemetry, logs):
    from otel_llm.exporters import AlertmanagerExporter, GrafanaAnnotationExporter, GrafanaClient
    from otel_llm.processors._model import DetectionSink

    am = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path=tmp_path / "q.db", start=False)
    client = GrafanaClient("http://127.0.0.1:9")
    grafana = GrafanaAnnotationExporter(client)
    otlp = DetectionMetricsExporter(telemetry.meter_provider, logs[0])
    try:
        for sink in (am, grafana, otlp):
            assert isinstance(sink, DetectionSink)
    finally:
        am.shutdown(timeout_millis=100)
        grafana.shutdown(timeout_millis=100)
        client.close()


def test_exporter_http_carries_the_suppress_instrumentation_key(tmp_path, monkeypatch):
    """HTTP-client instrumentations (httpx, ...) skip calls made under this key: otel-llm never traces itself."""
    import httpx
    from opentelemetry import context
    from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled
    from otel_llm.exporters import AlertmanagerExporter, GrafanaClient

    seen = []

    def fake_send(self, request, **kwargs):
        seen.append((context.get_value(context._SUPPRESS_INSTRUMENTATION_KEY), is_http_instrumentation_enabled()))
        return httpx.Response(200, json={"database": "ok"}, request=request)

    monkeypatch.setattr(httpx.Client, "send", fake_send)
    am = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path=tmp_path / "q.db", start=False)
    am.export([incident()])
    assert am.force_flush(2000)
    am.shutdown(timeout_millis=100)
    with GrafanaClient("http://127.0.0.1:9") as client:
        client.health()
    assert seen == [(True, False), (True, False)]
