"""``/metrics`` for the reference server: its OpenTelemetry metrics in Prometheus text format.

A ``PrometheusMetricReader`` (opentelemetry-exporter-prometheus) on a private
``prometheus_client`` registry is added to the meter provider; ``render()``
is ``generate_latest(registry)``. The provider is, in order: the one passed
in, the global one when ``otel_llm.configure()`` (or any SDK set-up) installed
an SDK provider, else a private provider with otel-llm's histogram Views
(LLM-sized buckets) that the server's instruments then use.
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider

__all__ = ["PrometheusEndpoint"]


class PrometheusEndpoint:
    def __init__(self, meter_provider=None) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)
        self.reader = PrometheusMetricReader(registry=self.registry)
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        if isinstance(provider, MeterProvider):
            provider.add_metric_reader(self.reader)
            self.owns_provider = False
        else:
            if meter_provider is not None:
                raise TypeError(
                    f"meter_provider must be an opentelemetry-sdk MeterProvider, got {type(meter_provider).__name__}"
                )
            from opentelemetry.sdk.resources import Resource

            from otel_llm._views import default_views

            provider = MeterProvider(
                resource=Resource.create({"service.name": "otel-llm-serve"}),
                metric_readers=[self.reader],
                views=default_views(),
                shutdown_on_exit=False,
            )
            self.owns_provider = True
        self.meter_provider = provider

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Detach the reader (or shut the private provider down)."""
        if self.owns_provider:
            self.meter_provider.shutdown()
        else:
            try:
                self.meter_provider.remove_metric_reader(self.reader)
            except Exception:  # pragma: no cover - already shut down
                pass
