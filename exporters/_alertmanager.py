"""Deliver incidents to Alertmanager (API v2) durably: an on-disk outbox, retries, HA fan-out.

:class:`AlertmanagerExporter` is a :class:`~otel_llm.processors.DetectionSink`:
``export()`` only writes to the SQLite outbox and wakes a daemon worker, so it
never blocks the caller on the network and never raises. The worker posts
``POST /api/v2/alerts`` to every configured Alertmanager (each one of an HA
pair gets every alert, as the Alertmanager docs require) and:

* 2xx -> delivered, removed from the outbox;
* 5xx, 408, 429, connection errors -> kept, retried with exponential backoff
  and full jitter; one warning per outage, one info on recovery, every
  failed attempt counted;
* other 4xx -> the batch is split to find the bad alert, which is logged
  (labels and annotations, never credentials) and moved to the
  ``dead_letter`` table; it is never retried.

Firing alerts are re-sent every ``resend_interval_s`` (default 60 s, well
below Alertmanager's default ``resolve_timeout`` of 5 m) with ``endsAt`` =
now + ``alert_ttl_s``, so that if otel-llm dies they resolve on their own; a
resolved incident is sent once more with its real ``endsAt``. The outbox and
the set of firing alerts survive restarts: a new exporter on the same
``queue_path`` resumes delivery (Alertmanager deduplicates by labels).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_llm.processors._model import ExportResult, Incident

from otel_llm import environment_variables as ev
from otel_llm import semconv as sc
from otel_llm._env import env_bool, env_float, env_list, env_str

from ._alerts import alert_labels as _labels_for
from ._alerts import check_labels, check_trace_url_template, incident_to_alert, rfc3339
from ._http import HttpOptions, check_url, redact_url, split_userinfo, suppressed
from ._queue import DurableQueue, Row

_logger = logging.getLogger("otel_llm.exporters.alertmanager")
_COMPONENT = "exporters.alertmanager"
_DEFAULT_RESEND_S = 60.0
# Not the alert's fault: auth/config/route problems and throttling are retried, never dead-lettered.
_RETRYABLE_4XX = frozenset({401, 403, 404, 408, 409, 425, 429})
_DEFAULT_RUNBOOK = "https://github.com/otel-llm/otel-llm/blob/main/docs/exporters.md"


def default_queue_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "otel-llm" / "alertmanager-outbox.sqlite3"


@dataclass
class DeliveryStats:
    """Counters since this exporter started (also exported as self-telemetry)."""

    sent: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    evicted: int = 0


def _count(name: str, n: int, attrs: Mapping[str, str]) -> None:
    try:
        from otel_llm._selftelemetry import _counter

        _counter(name, "otel-llm exporter failures").add(n, dict(attrs))
    except Exception:  # pragma: no cover - self-telemetry must never break delivery
        pass


class AlertmanagerExporter:
    """Durable, retried delivery of incidents to one or more Alertmanagers.

    Configuration precedence: argument > environment variable > default.
    ``urls``: ``OTEL_LLM_ALERTMANAGER_URLS`` (comma-separated; each HA peer gets every alert).
    ``queue_path``: ``OTEL_LLM_ALERTMANAGER_QUEUE`` (``:memory:`` disables durability).
    Auth/TLS: ``OTEL_LLM_ALERTMANAGER_BEARER_TOKEN``, ``..._USERNAME``/``..._PASSWORD``,
    ``..._CA_FILE``, ``..._CLIENT_CERT``/``..._CLIENT_KEY``, ``..._INSECURE``.
    Links: ``OTEL_LLM_TRACE_URL_TEMPLATE`` (with ``{trace_id}``), ``OTEL_LLM_RUNBOOK_BASE_URL``.
    Invalid settings raise ``ValueError`` here; nothing raises later.
    """

    def __init__(
        self,
        urls: Sequence[str] | None = None,
        *,
        queue_path: str | os.PathLike[str] | None = None,
        http: HttpOptions | None = None,
        resend_interval_s: float | None = None,
        alert_ttl_s: float | None = None,
        trace_url_template: str | None = None,
        runbook_base: str | None = None,
        dashboard_url: str | None = None,
        extra_labels: Mapping[str, str] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 60.0,
        max_batch: int = 64,
        max_queue: int = 10_000,
        start: bool = True,
    ) -> None:
        raw_urls = env_list(ev.OTEL_LLM_ALERTMANAGER_URLS, urls)
        if not raw_urls:
            raise ValueError(f"no Alertmanager URL: pass urls=[...] or set {ev.OTEL_LLM_ALERTMANAGER_URLS}")
        urls, url_auth = [], None
        for raw in raw_urls:
            url, userinfo = split_userinfo(check_url(raw, "Alertmanager URL"))
            urls.append(url)
            url_auth = url_auth or userinfo
        self.urls = urls  # credentials never stay in a URL (httpx logs URLs)
        if len(set(self.urls)) != len(self.urls):
            raise ValueError("Alertmanager URLs contain duplicates")
        self.http = (http or HttpOptions(
            bearer_token=env_str(ev.OTEL_LLM_ALERTMANAGER_BEARER_TOKEN),
            username=env_str(ev.OTEL_LLM_ALERTMANAGER_USERNAME),
            password=env_str(ev.OTEL_LLM_ALERTMANAGER_PASSWORD),
            ca_file=env_str(ev.OTEL_LLM_ALERTMANAGER_CA_FILE),
            cert_file=env_str(ev.OTEL_LLM_ALERTMANAGER_CLIENT_CERT),
            key_file=env_str(ev.OTEL_LLM_ALERTMANAGER_CLIENT_KEY),
            insecure_skip_verify=env_bool(ev.OTEL_LLM_ALERTMANAGER_INSECURE),
        ))
        if url_auth and not (self.http.username or self.http.bearer_token):
            self.http = dataclasses.replace(self.http, username=url_auth[0], password=url_auth[1])
        self.http.validate()
        self.resend_interval_s = env_float(ev.OTEL_LLM_ALERTMANAGER_RESEND_INTERVAL, resend_interval_s,
                                           _DEFAULT_RESEND_S, minimum=0.05)
        self.alert_ttl_s = alert_ttl_s if alert_ttl_s is not None else 4 * self.resend_interval_s
        if self.alert_ttl_s <= self.resend_interval_s:
            raise ValueError("alert_ttl_s must exceed resend_interval_s, or alerts flap between resends")
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError("backoff needs 0 < backoff_initial_s <= backoff_max_s")
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be positive")
        self.trace_url_template = check_trace_url_template(env_str(ev.OTEL_LLM_TRACE_URL_TEMPLATE, trace_url_template))
        self.runbook_base = env_str(ev.OTEL_LLM_RUNBOOK_BASE_URL, runbook_base, _DEFAULT_RUNBOOK)
        self.dashboard_url = dashboard_url
        self.extra_labels = dict(extra_labels or {})
        check_labels(self.extra_labels)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_batch = max_batch
        self.queue_path = str(env_str(ev.OTEL_LLM_ALERTMANAGER_QUEUE, None if queue_path is None else str(queue_path))
                              or default_queue_path())
        self.queue = DurableQueue(self.queue_path, max_rows=max_queue)
        self.stats = DeliveryStats()
        self._client = self.http.client()
        self._healthy = dict.fromkeys(self.urls, True)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._shutdown = False
        self._next_resend = time.monotonic() + self.resend_interval_s
        self._thread: threading.Thread | None = None
        self._rng = random.Random()
        if start:
            self.start()
        self._atexit = atexit.register(_shutdown_ref(weakref.ref(self)))

    def __repr__(self) -> str:
        urls = ", ".join(redact_url(u) for u in self.urls)
        return f"AlertmanagerExporter(urls=[{urls}], http={self.http!r}, queue={self.queue_path!r})"

    # ----------------------------------------------------------------- public
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="otel-llm-alertmanager", daemon=True)
            self._thread.start()

    def export(self, incidents: Sequence[Incident]) -> ExportResult:
        """Queue the incidents' alerts (firing or resolved) for every Alertmanager. Never raises."""
        if self._shutdown:
            return ExportResult.FAILURE
        try:
            for incident in incidents:
                self._stage(incident)
            self._wake.set()
            return ExportResult.SUCCESS
        except Exception as exc:  # boundary: never raise into the processors
            from otel_llm._selftelemetry import report_error

            report_error(_COMPONENT, exc, logger=_logger)
            return ExportResult.FAILURE

    def post_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> ExportResult:
        """Queue raw API v2 alerts (``labels``, ``annotations``, ``startsAt``/``endsAt``...) durably."""
        try:
            for alert in alerts:
                payload = dict(alert)
                fp = "raw:" + _fingerprint(payload.get("labels") or {})
                self._enqueue(fp, payload)
            self._wake.set()
            return ExportResult.SUCCESS
        except Exception as exc:
            from otel_llm._selftelemetry import report_error

            report_error(_COMPONENT, exc, logger=_logger)
            return ExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        """Try to deliver everything queued now (ignoring backoff) until ``timeout_millis``; True if empty."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        while time.monotonic() < deadline:
            if self.queue.size() == 0:
                return True
            for url in self.urls:
                self._drain(url, ignore_backoff=True)
            if self.queue.size() == 0:
                return True
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.queue.size() == 0

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        """Stop the worker after a bounded flush; what is left stays on disk for the next start."""
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=min(5.0, timeout_millis / 1000.0))
        if self.queue.size():
            self.force_flush(min(timeout_millis, 2_000))
        left = self.queue.size()
        if left:
            _logger.warning("otel-llm: %d alert deliveries still queued in %s; they are sent on the next start",
                            left, self.queue_path)
        self._client.close()
        self.queue.close()
        atexit.unregister(self._atexit)

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.queue.dead_letters()

    # ---------------------------------------------------------------- staging
    def _stage(self, incident: Incident) -> None:
        fp = "incident:" + incident.id
        previous = self.queue.get_active(fp)
        labels = previous["labels"] if previous else _labels_for(incident, self.extra_labels)
        new_labels = _labels_for(incident, self.extra_labels)
        if previous and new_labels.get("severity") != labels.get("severity"):
            # Severity changed: resolve the old alert, fire one with the new labels.
            old = dict(previous, endsAt=rfc3339(time.time()))
            self._enqueue(fp + ":" + labels["severity"], old)
            labels = new_labels
        alert = incident_to_alert(incident, labels=labels, runbook_base=self.runbook_base,
                                  trace_url_template=self.trace_url_template, dashboard_url=self.dashboard_url)
        if incident.end is None:
            self.queue.set_active(fp, alert)
        else:
            self.queue.clear_active(fp)
        self._enqueue(fp, alert)

    def _enqueue(self, fp: str, alert: dict[str, Any]) -> None:
        for url in self.urls:
            evicted = self.queue.put(url, fp, alert)
            if evicted:
                self.stats.evicted += evicted
                from otel_llm._selftelemetry import report_dropped

                report_dropped(_COMPONENT, "queue_full", evicted)

    def _resend_active(self) -> None:
        for fp, alert in self.queue.active().items():
            self._enqueue(fp, alert)

    # ----------------------------------------------------------------- worker
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() >= self._next_resend:
                    self._next_resend = time.monotonic() + self.resend_interval_s
                    self._resend_active()
                for url in self.urls:
                    self._drain(url)
                wait = self._next_resend - time.monotonic()
                for url in self.urls:
                    nxt = self.queue.next_due(url)
                    if nxt is not None:
                        wait = min(wait, nxt - time.time())
                self._wake.wait(timeout=max(0.01, min(wait, 1.0)))
                self._wake.clear()
            except Exception as exc:  # pragma: no cover - the worker must survive anything
                from otel_llm._selftelemetry import report_error

                report_error(_COMPONENT, exc, logger=_logger)
                self._stop.wait(0.5)

    def _finalise(self, payload: dict[str, Any]) -> dict[str, Any]:
        if "endsAt" in payload:
            return payload
        return dict(payload, endsAt=rfc3339(time.time() + self.alert_ttl_s))

    def _drain(self, url: str, ignore_backoff: bool = False) -> None:
        with self._lock:  # one sender per exporter (worker and force_flush)
            for _ in range(1000):  # bounded: at most 64k alerts per call
                rows = self.queue.due(url, now=float("inf") if ignore_backoff else None, limit=self.max_batch)
                if not rows or not self._send(url, rows):
                    return

    def _send(self, url: str, rows: list[Row]) -> bool:
        """Post one batch; returns True if the target accepted or rejected it (move on), False to back off."""
        import httpx

        try:
            with suppressed():
                response = self._client.post(url + "/api/v2/alerts", json=[self._finalise(r.payload) for r in rows])
            status, text = response.status_code, response.text[:500]
        except httpx.HTTPError as exc:
            status, text = None, f"{type(exc).__name__}: {exc}"
        if status is not None and 200 <= status < 300:
            self.queue.ack(rows)
            self.stats.sent += len(rows)
            if not self._healthy[url]:
                self._healthy[url] = True
                _logger.info("otel-llm: Alertmanager %s reachable again; delivering queued alerts", redact_url(url))
            return True
        if status is not None and 400 <= status < 500 and status not in _RETRYABLE_4XX:
            if len(rows) > 1:  # find the malformed alert(s); deliver the rest
                for row in rows:
                    self._send(url, [row])
                return True
            row = rows[0]
            self.queue.dead(row, status, text)
            self.stats.dead_lettered += 1
            _count(sc.OTEL_LLM_DROPPED, 1, {sc.OTEL_LLM_COMPONENT: _COMPONENT, sc.OTEL_LLM_REASON: "rejected"})
            _logger.error("otel-llm: Alertmanager %s rejected an alert (HTTP %s: %s); moved to the dead-letter "
                          "table in %s, not retried. Alert: labels=%s annotations=%s", redact_url(url), status,
                          text.strip(), self.queue_path, row.payload.get("labels"),
                          row.payload.get("annotations"))
            return True
        # 5xx, 408, 429, transport error: back off and retry.
        self.stats.failed_attempts += 1
        _count(sc.OTEL_LLM_INSTRUMENTATION_ERRORS, 1,
               {sc.OTEL_LLM_COMPONENT: _COMPONENT, sc.ERROR_TYPE: str(status or text.split(":", 1)[0])})
        attempts = min(r.attempts for r in rows)
        delay = min(self.backoff_max_s, self.backoff_initial_s * (2 ** min(attempts, 30)))
        delay *= 0.5 + 0.5 * self._rng.random()  # jitter: spread HA peers' and replicas' retries
        self.queue.retry(rows, time.time() + delay)
        if self._healthy[url]:
            self._healthy[url] = False
            _logger.warning("otel-llm: Alertmanager %s unavailable (%s); alerts stay queued on disk (%s) and are "
                            "retried with backoff. Further failures are counted, not logged.",
                            redact_url(url), f"HTTP {status}" if status else text, self.queue_path)
        return False


def _fingerprint(labels: Mapping[str, Any]) -> str:
    import hashlib

    return hashlib.sha1(repr(sorted(labels.items())).encode()).hexdigest()[:16]


def _shutdown_ref(ref: weakref.ReferenceType[AlertmanagerExporter]):
    def _hook() -> None:
        exporter = ref()
        if exporter is not None:
            exporter.shutdown(timeout_millis=2_000)

    return _hook
