"""Test doubles shipped as product code: fresh providers wired to in-memory sinks.

Use them in your own tests of an instrumented server::

    from otel_llm.testing import Telemetry
    tel = Telemetry()
    TransformersInstrumentor().instrument(tracer_provider=tel.tracer_provider,
                                          meter_provider=tel.meter_provider)
    ...
    assert tel.spans()[0].attributes["gen_ai.usage.output_tokens"] == 32
    assert tel.points("gen_ai.server.time_to_first_token")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def points_by_name(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Collect ``reader`` once: metric name -> its data points, across resources and scopes."""
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


class Telemetry:
    """A tracer provider and a meter provider that keep everything in memory."""

    def __init__(self, resource: Resource | None = None, views: Sequence[Any] | None = None) -> None:
        if views is None:
            from otel_llm._views import default_views

            views = default_views()
        resource = resource or Resource.create({"service.name": "otel-llm-test"})
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.metric_reader], views=list(views))

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.span_exporter.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> list of data points (all scopes)."""
        return points_by_name(self.metric_reader)

    def points(self, name: str) -> list[Any]:
        return self.metrics().get(name, [])

    def clear(self) -> None:
        self.span_exporter.clear()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def expected_output_counts(generated: Any, eos_token_id: int) -> list[int]:
    """Reference output-token count per row of ``generate()``'s new tokens: up to and including the
    first EOS, else the whole row (what ``gen_ai.usage.output_tokens`` must sum to)."""
    counts = []
    for row in generated:
        hits = (row == eos_token_id).nonzero()
        counts.append(int(hits[0]) + 1 if len(hits) else row.shape[0])
    return counts

