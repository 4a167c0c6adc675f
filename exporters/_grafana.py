"""Grafana HTTP API: folders and dashboards (push), incidents as annotations.

Endpoints (Grafana HTTP API, stable since 5.x, documented for 10.1):
``GET /api/health``, ``GET /api/folders/:uid``, ``POST /api/folders``,
``POST /api/dashboards/db`` (``overwrite: true``), ``POST /api/annotations``,
``PATCH /api/annotations/:id``. Auth: a service-account token (Bearer) or
basic auth; see :class:`~otel_llm.exporters.HttpOptions`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otel_llm.processors._model import ExportResult, Incident

from otel_llm import environment_variables as ev
from otel_llm._env import env_str

from ._http import HttpOptions, check_url, redact_url, split_userinfo, suppressed

_logger = logging.getLogger("otel_llm.exporters.grafana")
_COMPONENT = "exporters.grafana"


class GrafanaError(RuntimeError):
    """A Grafana API call failed; the message has the status and Grafana's own message, never credentials."""

    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(f"{what}: {'HTTP ' + str(status) if status else 'no response'}: {message}")
        self.status = status


@dataclass(frozen=True)
class PushResult:
    uid: str
    url: str
    version: int
    status: str


def _options_from_env(http: HttpOptions | None) -> HttpOptions:
    if http is not None:
        return http
    return HttpOptions(bearer_token=env_str(ev.GRAFANA_TOKEN), username=env_str(ev.GRAFANA_USERNAME),
                       password=env_str(ev.GRAFANA_PASSWORD))


class GrafanaClient:
    """A small, synchronous client for the endpoints otel-llm needs. ``url`` falls back to ``GRAFANA_URL``;
    credentials to ``GRAFANA_TOKEN`` or ``GRAFANA_USERNAME``/``GRAFANA_PASSWORD``."""

    def __init__(self, url: str | None = None, *, http: HttpOptions | None = None) -> None:
        raw = env_str(ev.GRAFANA_URL, url)
        if not raw:
            raise ValueError(f"no Grafana URL: pass --grafana-url or set {ev.GRAFANA_URL}")
        self.url, userinfo = split_userinfo(check_url(raw, "Grafana URL"))
        options = _options_from_env(http)
        if userinfo and not (options.username or options.bearer_token):
            import dataclasses

            options = dataclasses.replace(options, username=userinfo[0], password=userinfo[1])
        self.http = options.validate()
        self._client = self.http.client(base_url=self.url)

    def __repr__(self) -> str:
        return f"GrafanaClient(url={redact_url(self.url)!r}, http={self.http!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> GrafanaClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, what: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        import httpx

        try:
            with suppressed():
                r = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GrafanaError(what, None, f"{type(exc).__name__}: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"message": r.text[:300]}
        return r.status_code, body

    @staticmethod
    def _message(body: Any) -> str:
        return str(body.get("message", body)) if isinstance(body, dict) else str(body)

    def health(self) -> dict[str, Any]:
        status, body = self._call("health", "GET", "/api/health")
        if status != 200:
            raise GrafanaError("health", status, self._message(body))
        return body

    def ensure_folder(self, uid: str, title: str) -> dict[str, Any]:
        """Return the folder with ``uid``, creating it (``POST /api/folders``) when missing."""
        status, body = self._call("get folder", "GET", f"/api/folders/{uid}")
        if status == 200:
            return body
        if status != 404:
            raise GrafanaError(f"get folder {uid!r}", status, self._message(body))
        status, body = self._call("create folder", "POST", "/api/folders", json={"uid": uid, "title": title})
        if status == 200:
            return body
        if status == 409:  # created concurrently by someone else
            status, body = self._call("get folder", "GET", f"/api/folders/{uid}")
            if status == 200:
                return body
        raise GrafanaError(f"create folder {title!r}", status, self._message(body))

    def push_dashboard(self, dashboard: Mapping[str, Any], *, folder_uid: str | None = None,
                       message: str = "otel-llm dashboards push") -> PushResult:
        """Create or update (``overwrite: true``) one dashboard; its ``uid`` identifies it."""
        if not dashboard.get("uid") or not dashboard.get("title"):
            raise ValueError("a dashboard needs a uid and a title")
        payload: dict[str, Any] = {"dashboard": {**dashboard, "id": None}, "overwrite": True, "message": message}
        if folder_uid:
            payload["folderUid"] = folder_uid
        status, body = self._call("push dashboard", "POST", "/api/dashboards/db", json=payload)
        if status != 200:
            raise GrafanaError(f"push dashboard {dashboard['uid']!r}", status, self._message(body))
        return PushResult(uid=body.get("uid", dashboard["uid"]), url=body.get("url", ""),
                          version=int(body.get("version", 0)), status=body.get("status", "success"))

    def create_annotation(self, *, time_ms: int, text: str, tags: Sequence[str], time_end_ms: int | None = None,
                          dashboard_uid: str | None = None) -> int:
        body: dict[str, Any] = {"time": time_ms, "text": text, "tags": list(tags)}
        if time_end_ms is not None:
            body["timeEnd"] = time_end_ms
        if dashboard_uid:
            body["dashboardUID"] = dashboard_uid
        status, resp = self._call("create annotation", "POST", "/api/annotations", json=body)
        if status != 200:
            raise GrafanaError("create annotation", status, self._message(resp))
        return int(resp["id"])

    def patch_annotation(self, annotation_id: int, **fields: Any) -> None:
        status, resp = self._call("patch annotation", "PATCH", f"/api/annotations/{annotation_id}", json=fields)
        if status != 200:
            raise GrafanaError(f"patch annotation {annotation_id}", status, self._message(resp))


def push_dashboards(client: GrafanaClient, dashboards: Mapping[str, Mapping[str, Any]], *,
                    folder_uid: str = "otel-llm", folder_title: str = "otel-llm") -> list[PushResult]:
    """Ensure the folder, then create/update every dashboard in it. Raises :class:`GrafanaError` on failure."""
    client.ensure_folder(folder_uid, folder_title)
    return [client.push_dashboard(d, folder_uid=folder_uid) for d in dashboards.values()]


def _annotation_text(incident: Incident) -> str:
    lines = [f"<b>{incident.title or 'otel-llm incident'}</b> ({incident.severity.value})"]
    for i, c in enumerate(incident.candidates[:5], 1):
        lines.append(f"{i}. {c.kind} {c.name} ({c.score:.2f}): {c.reason}")
    for d in incident.detections[:5]:
        lines.append(f"- {d.kind} {d.series} score {d.score:.2f}")
    return "<br>".join(lines)


class GrafanaAnnotationExporter:
    """Incidents as Grafana annotations (tags ``otel-llm``, ``incident``, severity): a region from start
    to end, patched when the incident resolves. A :class:`DetectionSink`: ``export`` only queues (bounded,
    in memory) and a daemon worker talks to Grafana with retries; drops are counted, nothing raises."""

    def __init__(self, client: GrafanaClient, *, dashboard_uid: str | None = None, max_queue: int = 1000,
                 max_attempts: int = 5, backoff_initial_s: float = 0.5, extra_tags: Sequence[str] = ()) -> None:
        self.client = client
        self.dashboard_uid = dashboard_uid
        self.max_attempts = max_attempts
        self.backoff_initial_s = backoff_initial_s
        self.extra_tags = list(extra_tags)
        self._queue: collections.deque[tuple[Incident, int]] = collections.deque(maxlen=max_queue)
        self._ids: dict[str, int] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="otel-llm-grafana-annotations", daemon=True)
        self._thread.start()

    def export(self, incidents: Sequence[Incident]) -> ExportResult:
        try:
            with self._cond:
                if self._stop:
                    return ExportResult.FAILURE
                for incident in incidents:
                    if len(self._queue) == self._queue.maxlen:
                        from otel_llm._selftelemetry import report_dropped

                        report_dropped(_COMPONENT, "queue_full")
                    self._queue.append((incident, 0))
                self._cond.notify()
            return ExportResult.SUCCESS
        except Exception as exc:
            from otel_llm._selftelemetry import report_error

            report_error(_COMPONENT, exc, logger=_logger)
            return ExportResult.FAILURE

    def annotation_id(self, incident_id: str) -> int | None:
        return self._ids.get(incident_id)

    def _deliver(self, incident: Incident) -> None:
        tags = ["otel-llm", "incident", incident.severity.value, *self.extra_tags]
        start_ms = int(incident.start * 1000)
        end_ms = int(incident.end * 1000) if incident.end is not None else None
        known = self._ids.get(incident.id)
        text = _annotation_text(incident)
        if known is None:
            self._ids[incident.id] = self.client.create_annotation(
                time_ms=start_ms, time_end_ms=end_ms or start_ms, text=text, tags=tags,
                dashboard_uid=self.dashboard_uid)
        else:
            self.client.patch_annotation(known, time=start_ms, timeEnd=end_ms or int(time.time() * 1000),
                                         text=text, tags=tags)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait(0.5)
                if self._stop and not self._queue:
                    return
                incident, attempts = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(incident)
                self._warned = False
            except Exception as exc:
                if attempts + 1 < self.max_attempts and not self._stop:
                    if not self._warned:
                        self._warned = True
                        _logger.warning("otel-llm: Grafana annotation failed (%s); retrying with backoff", exc)
                    time.sleep(min(10.0, self.backoff_initial_s * 2 ** attempts))
                    with self._cond:
                        self._queue.appendleft((incident, attempts + 1))
                else:
                    from otel_llm._selftelemetry import report_dropped, report_error

                    report_error(_COMPONENT, exc, logger=_logger)
                    report_dropped(_COMPONENT, "annotation_failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        deadline = time.monotonic() + timeout_millis / 1000.0
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.1, deadline - time.monotonic())))
            return not self._queue and not self._busy

    def shutdown(self, timeout_millis: float = 30_000) -> None:
        self.force_flush(min(timeout_millis, 5_000))
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
