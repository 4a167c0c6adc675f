"""Scrape a vLLM ``/metrics`` endpoint and re-emit its ``vllm:*`` series as OpenTelemetry metrics.

Design (see :mod:`._producer` for why a producer and not API instruments):

* a daemon thread scrapes ``url`` every ``interval_s`` with httpx (our own
  HTTP is wrapped in OTel's suppress-instrumentation context so an
  instrumented httpx does not trace the scrapes);
* the text is parsed by ``prometheus_client.parser`` and converted by
  :class:`._convert.FamilyConverter` into SDK metric points (histograms keep
  vLLM's buckets; counters stay monotonic across vLLM restarts);
* the latest conversion is handed to every reader of the meter provider at
  collection time (``produce()`` never touches the network).

Failures: each scrape tries ``retries + 1`` times with a short exponential
backoff; a failed scrape clears the snapshot (no stale gauges are exported),
increments ``otel_llm.vllm.scrape.errors`` (``error.type`` = HTTP status or
exception class) and doubles the wait before the next scrape, up to
``max_backoff_s``. The first failure is logged as one warning, the recovery
as one info line; nothing in between floods the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import metrics
from opentelemetry.sdk.metrics.export import Gauge, Metric, NumberDataPoint
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_llm import __version__
from otel_llm import environment_variables as ev
from otel_llm import semconv as sc
from otel_llm._env import env_float, env_str
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation.vllm._convert import FamilyConverter
from otel_llm.instrumentation.vllm._producer import attach_producer

__all__ = ["DEFAULT_SCRAPE_INTERVAL_S", "DEFAULT_VLLM_METRICS_URL", "VLLMMetricsBridge"]

_logger = logging.getLogger(__name__)

DEFAULT_VLLM_METRICS_URL = "http://localhost:8000/metrics"
DEFAULT_SCRAPE_INTERVAL_S = 10.0
_SUPPRESS_KEYS = ("suppress_instrumentation", "suppress_http_instrumentation")


def _suppressed_context():
    ctx = otel_context.get_current()
    try:
        from opentelemetry.instrumentation.utils import (
            _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
            _SUPPRESS_INSTRUMENTATION_KEY,
        )

        ctx = otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True, ctx)
        ctx = otel_context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    except ImportError:  # pragma: no cover - opentelemetry-instrumentation is a core dependency
        for key in _SUPPRESS_KEYS:
            ctx = otel_context.set_value(key, True, ctx)
    return ctx


class VLLMMetricsBridge:
    """Re-emit a vLLM server's Prometheus metrics through an OpenTelemetry ``MeterProvider``.

    ``url`` > ``OTEL_LLM_VLLM_METRICS_URL`` > ``http://localhost:8000/metrics``;
    ``interval_s`` > ``OTEL_LLM_VLLM_SCRAPE_INTERVAL`` > 10 s.
    ``meter_provider`` must be an SDK ``MeterProvider`` (default: the global
    one, as set by ``otel_llm.configure()``). Use as a context manager or call
    :meth:`start` / :meth:`shutdown`; :meth:`scrape_once` scrapes synchronously
    (tests, one-shot tools). Invalid settings raise ``ValueError`` here.
    """

    def __init__(
        self,
        url: str | None = None,
        interval_s: float | None = None,
        meter_provider=None,
        *,
        timeout_s: float = 5.0,
        retries: int = 2,
        max_backoff_s: float = 120.0,
        include_unmapped: bool = True,
        http_client=None,
    ) -> None:
        self.url = env_str(ev.OTEL_LLM_VLLM_METRICS_URL, url, DEFAULT_VLLM_METRICS_URL)
        parts = urlsplit(self.url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"vLLM metrics URL {self.url!r} is not an http(s) URL; e.g. http://localhost:8000/metrics")
        interval = env_float(ev.OTEL_LLM_VLLM_SCRAPE_INTERVAL, interval_s, DEFAULT_SCRAPE_INTERVAL_S, minimum=0.01)
        assert interval is not None
        self.interval_s = interval
        if timeout_s <= 0 or retries < 0 or max_backoff_s < interval:
            raise ValueError("timeout_s must be > 0, retries >= 0 and max_backoff_s >= interval_s")
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_backoff_s = max_backoff_s
        self._meter_provider = meter_provider
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._converter = FamilyConverter(
            {sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_VLLM, sc.SERVER_ADDRESS: parts.hostname, sc.SERVER_PORT: port},
            include_unmapped=include_unmapped,
        )
        self.scope = InstrumentationScope("otel_llm.vllm", __version__, sc.SCHEMA_URL)
        self._client = http_client
        self._owns_client = http_client is None
        self._latest: list[Metric] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._detach = None
        self._errors = None
        self._failing = False
        self.consecutive_failures = 0
        self.scrapes = 0
        self._shutdown = False

    # -- lifecycle ----------------------------------------------------------
    def _provider(self):
        return self._meter_provider if self._meter_provider is not None else metrics.get_meter_provider()

    def attach(self) -> VLLMMetricsBridge:
        """Register as a producer on the meter provider's readers (idempotent); no thread is started."""
        if self._detach is None:
            provider = self._provider()
            self._detach = attach_producer(provider, self)
            meter = provider.get_meter("otel_llm.vllm", __version__, schema_url=sc.SCHEMA_URL)
            self._errors = meter.create_counter(
                sc.OTEL_LLM_VLLM_SCRAPE_ERRORS, unit="{scrape}", description="Failed scrapes of the vLLM /metrics endpoint."
            )
        return self

    def start(self) -> VLLMMetricsBridge:
        """Attach, scrape once now, then every ``interval_s`` on a daemon thread."""
        self.attach()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="otel-llm-vllm-bridge", daemon=True)
            self._thread.start()
        return self

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop the thread, detach from the readers, close the HTTP client. Safe to call twice."""
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._detach is not None:
            self._detach()
            self._detach = None
        if self._client is not None and self._owns_client:
            self._client.close()
            self._client = None

    def __enter__(self) -> VLLMMetricsBridge:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.scrape_once()
            delay = self.interval_s if ok else min(self.max_backoff_s, self.interval_s * 2 ** min(self.consecutive_failures, 16))
            self._stop.wait(delay)

    # -- scraping -----------------------------------------------------------
    def _http(self):
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout_s, headers={"Accept": "text/plain;version=0.0.4"})
        return self._client

    def _fetch(self) -> str:
        import httpx

        last: Exception | None = None
        token = otel_context.attach(_suppressed_context())
        try:
            for attempt in range(self.retries + 1):
                if attempt and self._stop.wait(min(2.0, 0.1 * 2**attempt)):
                    break
                try:
                    resp = self._http().get(self.url)
                    if resp.status_code >= 500:
                        last = _HTTPStatus(resp.status_code)
                        continue
                    if resp.status_code != 200:
                        raise _HTTPStatus(resp.status_code)  # 4xx: retrying will not help
                    return resp.text
                except (httpx.TransportError, httpx.TimeoutException) as exc:
                    last = exc
            raise last if last is not None else RuntimeError("scrape cancelled")
        finally:
            otel_context.detach(token)

    def scrape_once(self) -> bool:
        """Scrape and convert now; returns False (and counts the error) when the scrape failed."""
        from prometheus_client.parser import text_string_to_metric_families

        started = time.perf_counter()
        try:
            text = self._fetch()
            families = list(text_string_to_metric_families(text))
        except Exception as exc:
            self._record_failure(exc)
            return False
        try:
            now_ns = time.time_ns()
            converted = self._converter.convert(families, now_ns)
            took = time.perf_counter() - started
            converted.append(
                Metric(
                    sc.OTEL_LLM_VLLM_SCRAPE_DURATION,
                    "Duration of the last successful scrape of the vLLM /metrics endpoint.",
                    "s",
                    Gauge([NumberDataPoint({sc.SERVER_ADDRESS: urlsplit(self.url).hostname}, now_ns, now_ns, took)]),
                )
            )
        except Exception as exc:  # our bug, never the host's problem
            report_error("vllm_bridge.convert", exc)
            self._record_failure(exc, log=False)
            return False
        with self._lock:
            self._latest = converted
        self.scrapes += 1
        if self._failing:
            _logger.info("vLLM metrics endpoint %s is answering again; bridging resumed", self.url)
        self._failing = False
        self.consecutive_failures = 0
        return True

    def _record_failure(self, exc: BaseException, *, log: bool = True) -> None:
        etype = str(exc.status) if isinstance(exc, _HTTPStatus) else type(exc).__name__
        with self._lock:
            self._latest = []  # export nothing rather than stale values
        self.consecutive_failures += 1
        if self._errors is not None:
            self._errors.add(1, {sc.ERROR_TYPE: etype, sc.SERVER_ADDRESS: urlsplit(self.url).hostname})
        if log and not self._failing:
            _logger.warning(
                "cannot scrape vLLM metrics from %s (%s: %s); retrying with backoff, further failures are counted in %s",
                self.url, type(exc).__name__, exc, sc.OTEL_LLM_VLLM_SCRAPE_ERRORS,
            )
        self._failing = True

    # -- MetricProducer -----------------------------------------------------
    def produce(self) -> Sequence[Metric]:
        with self._lock:
            return list(self._latest)


class _HTTPStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
