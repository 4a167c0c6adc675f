"""The ``dcgm-exporter`` source: scrape its ``/metrics`` over HTTP (httpx) and parse it."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable

from otel_llm.collectors._exposition import ParseStats, parse_exposition
from otel_llm.collectors._model import GpuSample

from otel_llm._selftelemetry import report_dropped

_logger = logging.getLogger("otel_llm.collectors")

DEFAULT_URL = "http://localhost:9400/metrics"
_DEFAULT_TIMEOUT_S = 2.0
_COMPONENT = "gpu.dcgm_exporter"


class DcgmExporterCollector:
    """Scrapes a dcgm-exporter endpoint; one :class:`GpuSample` per GPU (or MIG instance).

    ``client`` is injectable (an ``httpx.Client``; tests pass one bound to a
    loopback server or a mock transport). An unreachable or failing endpoint
    never raises: ``collect()`` returns ``[]``, counts the failure in
    ``scrape_errors`` (by error type), logs one warning per outage, and backs
    off exponentially (``backoff_initial_s`` doubling up to ``backoff_max_s``,
    with jitter) before it tries again. Malformed lines are skipped and counted
    in ``malformed_lines``; the rest of the scrape is used.
    """

    name = "dcgm-exporter"

    def __init__(
        self,
        url: str | None = None,
        *,
        client=None,
        timeout_s: float = _DEFAULT_TIMEOUT_S,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if backoff_initial_s < 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("need 0 <= backoff_initial_s <= backoff_max_s")
        self.url = url or DEFAULT_URL
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"dcgm-exporter URL must start with http:// or https://, got {self.url!r}")
        if client is None:
            try:
                import httpx
            except ImportError as exc:  # pragma: no cover - httpx is in the gpu extra
                raise ImportError("the dcgm-exporter source needs httpx: pip install 'otel-llm[gpu]'") from exc
            client = httpx.Client(timeout=timeout_s, headers={"Accept": "text/plain"})
            self._owns_client = True
        else:
            self._owns_client = False
        self._client = client
        self._clock = clock
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._failures_in_row = 0
        self._next_attempt = 0.0
        self.scrape_errors: Counter[str] = Counter()
        self.malformed_lines = 0
        self.unknown_metrics = 0
        self.scrapes = 0
        self.last_collect_ok = True
        self.last_stats = ParseStats()

    def collect(self) -> list[GpuSample]:
        now = self._clock()
        if now < self._next_attempt:
            self.last_collect_ok = False  # still backing off: no data, not "GPUs lost"
            return []
        try:
            text = self._fetch()
        except Exception as exc:  # boundary: a failing exporter must never break the host
            self._failed(exc)
            return []
        stats = ParseStats()
        samples = parse_exposition(text, stats=stats)
        self.last_stats = stats
        self.scrapes += 1
        if stats.malformed:
            self.malformed_lines += stats.malformed
            report_dropped(_COMPONENT, "malformed_line", stats.malformed)
            _logger.debug("dcgm-exporter %s: skipped %d malformed line(s)", self.url, stats.malformed)
        self.unknown_metrics += stats.unknown_metric
        if self._failures_in_row:
            _logger.info("dcgm-exporter %s answers again after %d failed scrape(s)", self.url,
                         self._failures_in_row)
        self._failures_in_row = 0
        self._next_attempt = 0.0
        self.last_collect_ok = True
        return samples

    def _fetch(self) -> str:
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))  # never trace our own scrape
        try:
            resp = self._client.get(self.url)
        finally:
            detach(token)
        resp.raise_for_status()
        return resp.text

    def _failed(self, exc: BaseException) -> None:
        etype = type(exc).__name__
        self.scrape_errors[etype] += 1
        self.last_collect_ok = False
        if self._failures_in_row == 0:
            _logger.warning(
                "dcgm-exporter at %s cannot be scraped (%s: %s); retrying with backoff. "
                "Is dcgm-exporter running and is the URL right (--url / OTEL_LLM_DCGM_EXPORTER_URL)?",
                self.url, etype, exc,
            )
        self._failures_in_row += 1
        delay = min(self._backoff_max, self._backoff_initial * 2 ** (self._failures_in_row - 1))
        self._next_attempt = self._clock() + delay * random.uniform(0.8, 1.0)

    @property
    def scrape_error_total(self) -> int:
        return sum(self.scrape_errors.values())

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
