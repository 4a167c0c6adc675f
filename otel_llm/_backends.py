"""Start and stop local Prometheus and Alertmanager for tests and ``otel-llm demo --with-backends``.

Both run from the installed binaries (Debian: ``prometheus``,
``prometheus-alertmanager``; upstream tarballs: ``alertmanager``) on free
loopback ports, with generated configuration in a private working folder.
Every process is started in its own process group and killed on
:meth:`stop`, on context exit and at interpreter exit: nothing leaks.

    with Alertmanager() as am, Prometheus(scrape_targets=["127.0.0.1:9464"],
                                         rule_files=[rules], alertmanager_urls=[am.url]) as prom:
        prom.query("up")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

_LIVE: weakref.WeakSet[_Backend] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


class BackendError(RuntimeError):
    """A backend binary is missing or did not become ready; the message says why."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise BackendError(
        f"none of {', '.join(names)} is on PATH; install them with "
        "`apt-get install prometheus prometheus-alertmanager` (Debian/Ubuntu) or put the upstream binaries on PATH"
    )


def _kill_all() -> None:  # atexit safety net
    for backend in list(_LIVE):
        with contextlib.suppress(Exception):
            backend.stop()


atexit.register(_kill_all)


class _Backend:
    """A child process with a working folder, a port and a readiness probe."""

    name = "backend"
    ready_path = "/-/ready"

    def __init__(self, binary: str, *, workdir: str | os.PathLike[str] | None, port: int | None,
                 startup_timeout_s: float) -> None:
        self.binary = binary
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"otel-llm-{self.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.workdir / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _write_config(self) -> None:
        raise NotImplementedError

    def start(self) -> _Backend:
        """Start the process and wait until it answers ``/-/ready``; raise :class:`BackendError` otherwise."""
        if self.running:
            return self
        self._write_config()
        log = open(self._log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = subprocess.Popen(
                self._argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True,
            )
        finally:
            log.close()
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                break
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        tail = self.log_tail()
        self.stop()
        raise BackendError(f"{self.name} on {self.url} did not become ready in {self.startup_timeout_s:g}s; "
                           f"its log ends with:\n{tail}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the process group (an outage), keeping the working folder for a restart."""
        self._signal(signal.SIGKILL, wait_s=5)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate gracefully, then kill; remove the working folder if we created it."""
        self._signal(signal.SIGTERM, wait_s=timeout_s)
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _signal(self, sig: int, wait_s: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._proc = None

    def restart(self) -> _Backend:
        """Start again on the same port with the same storage (after :meth:`kill`)."""
        self._signal(signal.SIGTERM, wait_s=5)
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Alertmanager(_Backend):
    """A single, non-clustered Alertmanager with one receiver that only stores alerts.

    ``receiver_webhook`` (a URL) adds a webhook receiver, handy to observe notifications.
    """

    name = "alertmanager"

    def __init__(self, *, binary: str | None = None, workdir: str | os.PathLike[str] | None = None,
                 port: int | None = None, resolve_timeout: str = "5m", group_wait: str = "1s",
                 receiver_webhook: str | None = None, startup_timeout_s: float = 20.0) -> None:
        super().__init__(binary or find_binary("prometheus-alertmanager", "alertmanager"), workdir=workdir,
                         port=port, startup_timeout_s=startup_timeout_s)
        self.resolve_timeout = resolve_timeout
        self.group_wait = group_wait
        self.receiver_webhook = receiver_webhook

    def config(self) -> dict[str, Any]:
        receiver: dict[str, Any] = {"name": "otel-llm"}
        if self.receiver_webhook:
            receiver["webhook_configs"] = [{"url": self.receiver_webhook, "send_resolved": True}]
        return {
            "global": {"resolve_timeout": self.resolve_timeout},
            "route": {"receiver": "otel-llm", "group_by": ["alertname"], "group_wait": self.group_wait,
                      "group_interval": "5s", "repeat_interval": "1h"},
            "receivers": [receiver],
        }

    def _write_config(self) -> None:
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        (self.workdir / "data").mkdir(exist_ok=True)

    def _argv(self) -> list[str]:
        return [self.binary, f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=", "--log.level=warn"]

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (optionally ``filter=label="value"``)."""
        import httpx

        params = [("filter", f'{k}="{v}"') for k, v in filters.items()]
        r = httpx.get(self.url + "/api/v2/alerts", params=params, timeout=5.0)
        r.raise_for_status()
        return r.json()


class Prometheus(_Backend):
    """A Prometheus server scraping ``scrape_targets`` (host:port), evaluating ``rule_files``,
    sending alerts to ``alertmanager_urls``. Lifecycle API enabled, so :meth:`reload` works."""

    name = "prometheus"

    def __init__(self, *, binary: str | None = None, workdir: str | os.PathLike[str] | None = None,
                 port: int | None = None, scrape_targets: Iterable[str] = (),
                 rule_files: Sequence[str | os.PathLike[str]] = (), alertmanager_urls: Iterable[str] = (),
                 scrape_interval: str = "1s", evaluation_interval: str = "1s", metrics_path: str = "/metrics",
                 startup_timeout_s: float = 20.0) -> None:
        super().__init__(binary or find_binary("prometheus"), workdir=workdir, port=port,
                         startup_timeout_s=startup_timeout_s)
        self.scrape_targets = list(scrape_targets)
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.alertmanager_urls = list(alertmanager_urls)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.metrics_path = metrics_path

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.evaluation_interval,
                       "scrape_timeout": self.scrape_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [],
        }
        if self.scrape_targets:
            cfg["scrape_configs"].append({"job_name": "otel-llm", "metrics_path": self.metrics_path,
                                          "static_configs": [{"targets": self.scrape_targets}]})
        if self.alertmanager_urls:
            targets = [u.split("://", 1)[-1].rstrip("/") for u in self.alertmanager_urls]
            cfg["alerting"] = {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": targets}]}]}
        return cfg

    def _write_config(self) -> None:
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def _argv(self) -> list[str]:
        return [self.binary, f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle", "--log.level=warn"]

    def reload(self) -> None:
        """Rewrite the config and ``POST /-/reload``."""
        import httpx

        self._write_config()
        httpx.post(self.url + "/-/reload", timeout=10.0).raise_for_status()

    def query(self, expr: str, *, at: float | None = None) -> dict[str, Any]:
        """``/api/v1/query``; returns ``data`` or raises :class:`BackendError` with Prometheus' error text."""
        import httpx

        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        r = httpx.get(self.url + "/api/v1/query", params=params, timeout=10.0)
        body = r.json()
        if body.get("status") != "success":
            raise BackendError(f"{body.get('errorType')}: {body.get('error')} in {expr!r}")
        return body["data"]

    def wait_for(self, expr: str, *, timeout_s: float = 20.0, interval_s: float = 0.25) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns a non-empty vector; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)["result"]
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} stayed empty for {timeout_s:g}s")
            time.sleep(interval_s)
