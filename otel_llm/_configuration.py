"""``otel_llm.configure()``: tracer + meter providers from arguments, ``OTEL_*`` variables and defaults.

Precedence everywhere: keyword argument > environment variable > default.
Bad values raise ``ValueError`` naming the variable (or argument) at
configure time; nothing is silently replaced.

===============================================  ======================  ====================================
Setting (argument / variable)                    Default                 Meaning
===============================================  ======================  ====================================
``service_name`` / OTEL_SERVICE_NAME             SDK's ``unknown_service``  ``service.name``
``resource_attributes`` / OTEL_RESOURCE_ATTRIBUTES  --                   extra resource attributes
``traces_exporter`` / OTEL_TRACES_EXPORTER       ``otlp``                ``otlp``, ``console``, ``none`` (comma list)
``metrics_exporter`` / OTEL_METRICS_EXPORTER     ``otlp``                ``otlp``, ``prometheus``, ``console``, ``none``
``otlp_protocol`` / OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL  ``http/protobuf``  ``grpc`` or ``http/protobuf``
``prometheus_host`` / OTEL_LLM_PROMETHEUS_HOST   ``127.0.0.1``           bind address of ``/metrics``
``prometheus_port`` / OTEL_LLM_PROMETHEUS_PORT   ``9464``                port (0 = any free port)
``metric_export_interval_ms`` / OTEL_METRIC_EXPORT_INTERVAL  ``60000``   push interval (otlp, console)
``instrument`` / OTEL_LLM_INSTRUMENTATIONS       ``all``                 ``all``, ``none`` or names
``gpu_source`` / OTEL_LLM_GPU_SOURCE             ``auto``                GPU metrics source; ``none`` = off
``vllm_metrics_url`` / OTEL_LLM_VLLM_METRICS_URL  unset (off)            vLLM ``/metrics`` to bridge
===============================================  ======================  ====================================

GPU metrics (``hw.gpu.*``, :func:`otel_llm.collectors.start_gpu_metrics`)
start on the configured meter provider unless the source resolves to none
(``none``, or ``auto`` finding no DCGM / dcgm-exporter / NVML: one log line,
nothing started). A :class:`~otel_llm.instrumentation.vllm.VLLMMetricsBridge`
starts when a vLLM metrics URL is given (``vllm_metrics_url=""`` keeps it off
whatever the variable says: a caller that runs its own bridge). ``shutdown()``
stops both.

The OTLP exporters read their own variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``..._HEADERS``, ``..._TIMEOUT``, ``..._COMPRESSION``, certificates, metrics
temporality) exactly as the OpenTelemetry specification says.
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` excludes instrumentors as it does
for ``opentelemetry-instrument``.

``opentelemetry-instrument python app.py`` works two ways: the app calls
``otel_llm.configure(instrument=False)`` (the ``opentelemetry_instrumentor``
entry points do the instrumenting), or the ``opentelemetry_configurator``
entry point ``otel_llm`` = :class:`OtelLLMConfigurator` runs ``configure()``
for it (select with ``OTEL_PYTHON_CONFIGURATOR=otel_llm``).
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk._configuration import _BaseConfigurator as BaseConfigurator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_llm import __version__
from otel_llm import environment_variables as ev
from otel_llm._content import capture_content as _capture_content
from otel_llm._env import env_choice, env_int, env_list, env_str
from otel_llm._gpu import set_process_gpu_uuids
from otel_llm._views import default_views
from otel_llm.instrumentation._genai import stall_threshold_s

__all__ = ["Configured", "OtelLLMConfigurator", "configure", "available_instrumentations"]

_logger = logging.getLogger("otel_llm")

_TRACE_EXPORTERS = ("otlp", "console", "none")
_METRIC_EXPORTERS = ("otlp", "prometheus", "console", "none")
_PROTOCOLS = ("grpc", "http/protobuf")
_DEFAULT_EXPORTER = "otlp"
_DEFAULT_PROTOCOL = "http/protobuf"
_DEFAULT_PROMETHEUS_HOST = "127.0.0.1"
_DEFAULT_PROMETHEUS_PORT = 9464
_ENTRY_POINT_GROUP = "opentelemetry_instrumentor"
_OUR_PREFIX = "otel_llm_"


@dataclass
class Configured:
    """What :func:`configure` set up. ``shutdown()`` flushes and stops everything (idempotent, atexit)."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    instrumentors: dict[str, Any] = field(default_factory=dict)
    prometheus_address: tuple[str, int] | None = None
    gpu_metrics: Any = None  # the started GpuMetrics, or None
    vllm_bridge: Any = None  # the started VLLMMetricsBridge, or None
    _prometheus_server: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _closed: bool = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        ok = self.tracer_provider.force_flush(timeout_millis)
        return self.meter_provider.force_flush(timeout_millis) and ok

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            atexit.unregister(self.shutdown)
        except Exception:  # pragma: no cover
            pass
        for name, instrumentor in self.instrumentors.items():
            try:
                instrumentor.uninstrument()
            except Exception:
                _logger.exception("otel-llm: uninstrumenting %s failed", name)
        for name, poller in (("GPU metrics", self.gpu_metrics), ("vLLM bridge", self.vllm_bridge)):
            if poller is not None:
                try:
                    poller.shutdown()
                except Exception:
                    _logger.exception("otel-llm: stopping the %s failed", name)
        for what in (self.tracer_provider, self.meter_provider):
            try:
                what.shutdown()
            except Exception:
                _logger.exception("otel-llm: shutting down %s failed", type(what).__name__)
        if self._prometheus_server is not None:
            try:
                self._prometheus_server.shutdown()
                self._prometheus_server.server_close()
            except Exception:  # pragma: no cover
                _logger.exception("otel-llm: stopping the Prometheus endpoint failed")

    @property
    def closed(self) -> bool:
        return self._closed


# ---------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------
def _exporters(name: str, arg: str | Sequence[str] | None, allowed: Sequence[str]) -> list[str]:
    if isinstance(arg, str):
        arg = [a.strip() for a in arg.split(",")]
    values = [v.lower() for v in env_list(name, arg, [_DEFAULT_EXPORTER])]
    source = "argument" if arg is not None else name
    for v in values:
        if v not in allowed:
            raise ValueError(f"{source}={','.join(values)!r}: {v!r} is not supported; choose from {', '.join(allowed)}")
    if "none" in values:
        if len(values) > 1:
            raise ValueError(f"{source}={','.join(values)!r}: 'none' cannot be combined with other exporters")
        return []
    return list(dict.fromkeys(values))


def _protocol(signal_var: str, arg: str | None) -> str:
    value = arg if arg is not None else env_str(signal_var) or env_str(ev.OTEL_EXPORTER_OTLP_PROTOCOL)
    value = (value or _DEFAULT_PROTOCOL).strip().lower()
    if value not in _PROTOCOLS:
        source = "otlp_protocol" if arg is not None else f"{signal_var} / {ev.OTEL_EXPORTER_OTLP_PROTOCOL}"
        hint = " (http/json has no Python exporter)" if value == "http/json" else ""
        raise ValueError(f"{source}={value!r} is not supported{hint}; choose grpc or http/protobuf")
    return value


def _resource(service_name: str | None, attributes: Mapping[str, Any] | None, resource: Resource | None) -> Resource:
    attrs: dict[str, Any] = {"telemetry.distro.name": "otel-llm", "telemetry.distro.version": __version__}
    if attributes:
        attrs.update(attributes)
    if service_name is not None:
        if not service_name.strip():
            raise ValueError("service_name must not be empty")
        attrs["service.name"] = service_name
    # Resource.create merges OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME under our arguments.
    created = Resource.create(attrs)
    return created.merge(resource) if resource is not None else created


def _span_exporter(kind: str, protocol: str):
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout)  # the stream current now, not at SDK import
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def _metric_exporter(kind: str, protocol: str):
    if kind == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter(out=sys.stdout)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def available_instrumentations() -> dict[str, Any]:
    """otel-llm's instrumentors from the ``opentelemetry_instrumentor`` entry points: short name -> entry point."""
    found = {}
    for ep in entry_points(group=_ENTRY_POINT_GROUP):
        if ep.value.startswith("otel_llm.") and ep.name.startswith(_OUR_PREFIX):
            found[ep.name[len(_OUR_PREFIX) :]] = ep
    return found


def _chosen_instrumentations(arg: bool | str | Sequence[str] | None) -> tuple[list[str], bool]:
    """(short names, explicitly requested?)."""
    available = available_instrumentations()
    if arg is True:
        arg = None  # 'all', but still honour the env vars below
    if arg is False:
        return [], False
    if isinstance(arg, str):
        arg = [a.strip() for a in arg.split(",") if a.strip()]
    source = "instrument" if arg is not None else ev.OTEL_LLM_INSTRUMENTATIONS
    names = [n.lower() for n in env_list(ev.OTEL_LLM_INSTRUMENTATIONS, arg, ["all"])]
    disabled = {n.removeprefix(_OUR_PREFIX) for n in env_list(ev.OTEL_PYTHON_DISABLED_INSTRUMENTATIONS)}
    if names == ["none"] or "*" in disabled:
        return [], False
    if names == ["all"]:
        return [n for n in available if n not in disabled], False
    chosen = []
    for n in names:
        short = n.removeprefix(_OUR_PREFIX)
        if short not in available:
            raise ValueError(
                f"{source}: unknown instrumentation {n!r}; available: {', '.join(sorted(available)) or '(none)'}"
                " (or all / none)"
            )
        if short not in disabled:
            chosen.append(short)
    return chosen, True


def _instrument(
    names: Iterable[str], explicit: bool, options: dict[str, Any]
) -> dict[str, Any]:
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    available = available_instrumentations()
    done: dict[str, Any] = {}
    for name in names:
        try:
            instrumentor = available[name].load()()
        except ImportError as exc:
            if explicit:
                raise ValueError(f"instrumentation {name!r} cannot be imported: {exc}") from exc
            _logger.debug("otel-llm: skipping %s (%s)", name, exc)
            continue
        conflict = get_dependency_conflicts(instrumentor.instrumentation_dependencies())
        if conflict is not None:
            if explicit:
                raise ValueError(f"instrumentation {name!r} requested but its library is missing: {conflict}")
            _logger.debug("otel-llm: skipping %s (%s)", name, conflict)
            continue
        if instrumentor.is_instrumented_by_opentelemetry:
            _logger.info("otel-llm: %s was already instrumented; leaving it as is", name)
            continue
        instrumentor.instrument(skip_dep_check=True, **options)
        done[name] = instrumentor
    return done


# ---------------------------------------------------------------------------
# configure
# ---------------------------------------------------------------------------
def configure(
    *,
    service_name: str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    resource: Resource | None = None,
    traces_exporter: str | Sequence[str] | None = None,
    metrics_exporter: str | Sequence[str] | None = None,
    otlp_protocol: str | None = None,
    prometheus_host: str | None = None,
    prometheus_port: int | None = None,
    metric_export_interval_ms: int | None = None,
    instrument: bool | str | Sequence[str] | None = True,
    capture_content: bool | None = None,
    stall_threshold_ms: float | None = None,
    gpu_uuids: Sequence[str] | None = None,
    gpu_source: str | None = None,
    vllm_metrics_url: str | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    views: Sequence[Any] | None = None,
    set_global: bool = True,
) -> Configured:
    """Set up tracing and metrics for an LLM server process; returns a :class:`Configured` handle.

    Every keyword overrides its environment variable (see the module table).
    ``span_processors`` / ``metric_readers`` are added next to the configured
    exporters (tests, in-process detectors). ``views`` are added after
    otel-llm's histogram Views. ``set_global=False`` leaves the global
    providers alone (tests, embedding). Raises ``ValueError`` on any bad value,
    before anything is started.
    """
    # -- validate everything first ---------------------------------------
    span_kinds = _exporters(ev.OTEL_TRACES_EXPORTER, traces_exporter, _TRACE_EXPORTERS)
    metric_kinds = _exporters(ev.OTEL_METRICS_EXPORTER, metrics_exporter, _METRIC_EXPORTERS)
    trace_protocol = _protocol(ev.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, otlp_protocol) if "otlp" in span_kinds else None
    metric_protocol = _protocol(ev.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, otlp_protocol) if "otlp" in metric_kinds else None
    prom_host = env_str(ev.OTEL_LLM_PROMETHEUS_HOST, prometheus_host, _DEFAULT_PROMETHEUS_HOST)
    prom_port = env_int(ev.OTEL_LLM_PROMETHEUS_PORT, prometheus_port, _DEFAULT_PROMETHEUS_PORT, minimum=0, maximum=65535)
    interval = env_int(ev.OTEL_METRIC_EXPORT_INTERVAL, metric_export_interval_ms, 60_000, minimum=1)
    capture = _capture_content(capture_content)
    stall_threshold_s(stall_threshold_ms)  # validates
    chosen, explicit = _chosen_instrumentations(instrument)
    res = _resource(service_name, resource_attributes, resource)
    from otel_llm.collectors._auto import SOURCES

    gpu = env_choice(ev.OTEL_LLM_GPU_SOURCE, gpu_source, "auto", SOURCES)
    vllm_url = env_str(ev.OTEL_LLM_VLLM_METRICS_URL, vllm_metrics_url) or None  # "" = off despite the variable
    if vllm_url is not None:
        from otel_llm.instrumentation.vllm import VLLMMetricsBridge

        VLLMMetricsBridge(vllm_url)  # validates the URL and scrape interval (no I/O, nothing started)

    # -- build -----------------------------------------------------------
    tracer_provider = TracerProvider(resource=res)
    for kind in span_kinds:
        tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(kind, trace_protocol or "")))
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)

    readers: list[MetricReader] = list(metric_readers)
    prom_server = None
    prom_address = None
    for kind in metric_kinds:
        if kind == "prometheus":
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import start_http_server

            readers.append(PrometheusMetricReader())
            try:
                prom_server, _thread = start_http_server(prom_port, addr=prom_host)
            except OSError as exc:
                raise ValueError(
                    f"{ev.OTEL_LLM_PROMETHEUS_HOST}:{ev.OTEL_LLM_PROMETHEUS_PORT}={prom_host}:{prom_port} "
                    f"cannot be bound ({exc}); choose a free port (0 = any)"
                ) from exc
            prom_address = (prom_host, prom_server.server_port)
        else:
            readers.append(
                PeriodicExportingMetricReader(_metric_exporter(kind, metric_protocol or ""), export_interval_millis=interval)
            )
    meter_provider = MeterProvider(resource=res, metric_readers=readers, views=[*default_views(), *(views or ())])

    if gpu_uuids is not None:
        set_process_gpu_uuids(gpu_uuids)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)

    handle = Configured(tracer_provider, meter_provider, prometheus_address=prom_address, _prometheus_server=prom_server)
    atexit.register(handle.shutdown)
    try:
        handle.instrumentors = _instrument(
            chosen,
            explicit,
            {
                "tracer_provider": tracer_provider,
                "meter_provider": meter_provider,
                "capture_content": capture,
                "stall_threshold_ms": stall_threshold_ms,
            },
        )
        if gpu != "none":
            from otel_llm.collectors import start_gpu_metrics

            handle.gpu_metrics = start_gpu_metrics(gpu, meter_provider=meter_provider)
        if vllm_url is not None:
            handle.vllm_bridge = VLLMMetricsBridge(vllm_url, meter_provider=meter_provider).start()
    except Exception:
        handle.shutdown()
        raise
    return handle


class OtelLLMConfigurator(BaseConfigurator):
    """``opentelemetry_configurator`` entry point: ``opentelemetry-instrument`` calls ``configure()``.

    Instrumenting is left to ``opentelemetry-instrument`` (it loads every
    ``opentelemetry_instrumentor`` entry point), so this configures the
    providers only, globally, from the environment.
    """

    handle: Configured | None = None

    def _configure(self, **kwargs: Any) -> None:
        OtelLLMConfigurator.handle = configure(instrument=False, set_global=True)
