"""One process, several services: a TracerProvider per ``service.name``, one span sink.

The demo runs the gateway, the retrieval service and the LLM server in one
process. Each gets its own :class:`TracerProvider` (and meter provider) with a
distinct ``service.name`` resource, exactly as separate processes would; every
finished span is converted to a :class:`~otel_llm.processors._spans.SpanRecord`
and appended to one bounded, thread-safe :class:`SpanSink` that the analysis
pipeline drains. With ``otlp_endpoint`` set, spans and metrics are also exported
over OTLP/HTTP to that endpoint (an ``otel-llm analyze``, a Collector, Tempo).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from otel_llm._selftelemetry import report_dropped, report_error
from otel_llm.processors._spans import SpanRecord, from_readable_span

SERVICE_GATEWAY = "llm-gateway"
SERVICE_RETRIEVAL = "retrieval"
SERVICE_LLM = "llm-server"


class SpanSink(SpanProcessor):
    """Keeps finished spans (as SpanRecord and as ReadableSpan) in bounded deques.

    ``drain()`` hands new records to one consumer (the pipeline); ``readable``
    keeps the SDK spans for OTLP/JSON export. Overflow evicts the oldest and is
    counted with :func:`report_dropped`.
    """

    def __init__(self, maxlen: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._new: deque[SpanRecord] = deque()
        self._maxlen = maxlen
        self.readable: deque[ReadableSpan] = deque(maxlen=maxlen)
        self.total = 0

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        try:
            rec = from_readable_span(span)
        except Exception as exc:  # never break the host over our own bookkeeping
            report_error("demo.span_sink", exc)
            return
        with self._lock:
            if len(self._new) >= self._maxlen:
                self._new.popleft()
                report_dropped("demo.span_sink", "queue_full", 1)
            self._new.append(rec)
            if len(self.readable) == self.readable.maxlen:
                report_dropped("demo.span_sink", "readable_evicted", 1)
            self.readable.append(span)
            self.total += 1

    def drain(self) -> list[SpanRecord]:
        with self._lock:
            out = list(self._new)
            self._new.clear()
        return out

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class ServiceTelemetry:
    """Tracer and meter providers for one named service, wired to the shared sink."""

    def __init__(self, service: str, sink: SpanSink, *, otlp_endpoint: str | None = None,
                 extra_resource: dict[str, Any] | None = None, views: Sequence[Any] | None = None) -> None:
        from otel_llm._views import default_views

        attrs = {"service.name": service, "service.namespace": "otel-llm-demo"}
        attrs.update(extra_resource or {})
        self.service = service
        self.resource = Resource.create(attrs)
        self.tracer_provider = TracerProvider(resource=self.resource)
        self.tracer_provider.add_span_processor(sink)
        self.metric_reader = InMemoryMetricReader()
        readers: list[Any] = [self.metric_reader]
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            base = otlp_endpoint.rstrip("/")
            self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
                                                         export_interval_millis=5_000))
        self.meter_provider = MeterProvider(resource=self.resource, metric_readers=readers,
                                            views=list(views) if views is not None else default_views())

    def tracer(self, name: str = "otel_llm.demo"):
        return self.tracer_provider.get_tracer(name)

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> data points collected so far (cumulative)."""
        from otel_llm.testing import points_by_name

        return points_by_name(self.metric_reader)

    def shutdown(self) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            try:
                provider.shutdown()
            except Exception as exc:
                report_error("demo.telemetry", exc)
