"""A MetricProducer for the Python SDK: pre-aggregated points into every reader.

The OpenTelemetry metrics SDK specification defines a *MetricProducer*
("bridges third-party metric sources": Go's Prometheus bridge is one) that a
MetricReader asks for extra metrics on every collection. The Python SDK
(1.45) does not implement it yet, and its API cannot take pre-aggregated
histograms: re-recording vLLM's buckets value by value would be lossy and
slow. :func:`attach_producer` therefore does the minimum the specification
describes: it wraps each reader's collect callback (set by the
``MeterProvider``) so that the producer's metrics are appended, under their
own instrumentation scope, to what the SDK collected. Every reader --
Prometheus, periodic OTLP, in-memory -- then exports them like any other.

Obligations of a producer: ``produce()`` is called on the reader's thread
inside a collection; it must be fast, must not block on the network, and
must not raise (errors are reported once and counted, the collection goes
on without the producer's data).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Metric, MetricsData, ResourceMetrics, ScopeMetrics
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_llm._selftelemetry import report_error

__all__ = ["MetricProducer", "attach_producer"]


class MetricProducer(Protocol):
    """Supplies already-aggregated metrics at collection time (see module docstring)."""

    scope: InstrumentationScope

    def produce(self) -> Sequence[Metric]: ...


_lock = threading.Lock()


def _readers(meter_provider: MeterProvider) -> list:
    consumer = getattr(meter_provider, "_measurement_consumer", None)
    storages = getattr(consumer, "_reader_storages", None)
    if isinstance(storages, dict):  # includes readers added later with add_metric_reader()
        return list(storages)
    readers = getattr(meter_provider, "_metric_readers", None)
    if readers is None:  # pragma: no cover - depends on SDK internals
        raise TypeError("this MeterProvider exposes no metric readers; pass an opentelemetry-sdk MeterProvider")
    return list(readers)


def attach_producer(meter_provider: MeterProvider, producer: MetricProducer) -> Callable[[], None]:
    """Make every reader of ``meter_provider`` include ``producer``'s metrics; returns a detach function.

    Raises ``TypeError`` when ``meter_provider`` is not an SDK ``MeterProvider``
    (the API's no-op provider has no readers to feed).
    """
    if not isinstance(meter_provider, MeterProvider):
        raise TypeError(
            f"the vLLM bridge needs an opentelemetry-sdk MeterProvider, got {type(meter_provider).__name__}; "
            "call otel_llm.configure() first or pass meter_provider="
        )
    resource = meter_provider._sdk_config.resource
    undo: list[Callable[[], None]] = []
    with _lock:
        for reader in _readers(meter_provider):
            original = reader._collect
            if original is None:
                continue

            def wrapped(r, timeout_millis: float = 10_000, _original=original):
                data = _original(r, timeout_millis=timeout_millis)
                try:
                    extra = list(producer.produce())
                except Exception as exc:
                    report_error("vllm_bridge.produce", exc)
                    return data
                if not extra:
                    return data
                return _merge(data, resource, ScopeMetrics(producer.scope, extra, producer.scope.schema_url or ""))

            reader._collect = wrapped

            def _restore(reader=reader, original=original, wrapped=wrapped):
                if reader._collect is wrapped:
                    reader._collect = original

            undo.append(_restore)

    def detach() -> None:
        with _lock:
            for fn in undo:
                fn()
            undo.clear()

    return detach


def _merge(data: MetricsData | None, resource, scope_metrics: ScopeMetrics) -> MetricsData:
    if data is None or not data.resource_metrics:
        return MetricsData([ResourceMetrics(resource, [scope_metrics], "")])
    first, *rest = data.resource_metrics
    merged = ResourceMetrics(first.resource, [*first.scope_metrics, scope_metrics], first.schema_url)
    return MetricsData([merged, *rest])
