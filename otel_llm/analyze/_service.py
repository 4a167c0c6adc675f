"""``otel-llm analyze``: configuration and the service that wires everything.

:class:`AnalyzeConfig` resolves every setting as explicit argument > env var >
default and :meth:`AnalyzeConfig.validate` rejects impossible ones at start-up.
:class:`AnalyzeService` builds the RCA processor, the pipeline, the forwarder
and both receivers; :meth:`start` runs them on background threads (tests,
embedding), :meth:`serve_forever` runs until SIGINT/SIGTERM (the CLI).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_llm import environment_variables as ev
from otel_llm._env import env_int, env_str
from otel_llm.processors._model import DetectionSink

_logger = logging.getLogger(__name__)

DEFAULT_HTTP = "127.0.0.1:4318"
DEFAULT_GRPC = "127.0.0.1:4317"
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_QUEUE_SIZE = 64


def _split(endpoint: str, name: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{name}={endpoint!r} must be host:port (port 0 picks a free one), or 'none'")
    return host.strip("[]"), int(port)


@dataclass
class AnalyzeConfig:
    http_endpoint: str | None = None
    grpc_endpoint: str | None = None
    forward_endpoint: str | None = None
    forward_headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_request_bytes: int | None = None
    queue_size: int | None = None
    max_queued_spans: int = 100_000
    quiet_period_s: float | None = None

    def resolve(self) -> AnalyzeConfig:
        """Fill unset fields from env vars and defaults, then validate."""
        self.http_endpoint = env_str(ev.OTEL_LLM_ANALYZE_HTTP_ENDPOINT, self.http_endpoint, DEFAULT_HTTP)
        self.grpc_endpoint = env_str(ev.OTEL_LLM_ANALYZE_GRPC_ENDPOINT, self.grpc_endpoint, DEFAULT_GRPC)
        self.forward_endpoint = env_str(ev.OTEL_LLM_ANALYZE_FORWARD_ENDPOINT, self.forward_endpoint)
        self.token = env_str(ev.OTEL_LLM_ANALYZE_TOKEN, self.token)
        self.tls_cert = env_str(ev.OTEL_LLM_ANALYZE_TLS_CERT, self.tls_cert)
        self.tls_key = env_str(ev.OTEL_LLM_ANALYZE_TLS_KEY, self.tls_key)
        self.max_request_bytes = env_int(ev.OTEL_LLM_ANALYZE_MAX_REQUEST_BYTES, self.max_request_bytes,
                                         DEFAULT_MAX_REQUEST_BYTES, minimum=1024)
        self.queue_size = env_int(ev.OTEL_LLM_ANALYZE_QUEUE_SIZE, self.queue_size, DEFAULT_QUEUE_SIZE, minimum=1)
        return self.validate()

    def validate(self) -> AnalyzeConfig:
        if self.http_endpoint and self.http_endpoint != "none":
            _split(self.http_endpoint, ev.OTEL_LLM_ANALYZE_HTTP_ENDPOINT)
        if self.grpc_endpoint and self.grpc_endpoint != "none":
            _split(self.grpc_endpoint, ev.OTEL_LLM_ANALYZE_GRPC_ENDPOINT)
        if self.http_endpoint == "none" and self.grpc_endpoint == "none":
            raise ValueError("both receivers are disabled; enable the HTTP or the gRPC endpoint")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError(f"TLS needs both {ev.OTEL_LLM_ANALYZE_TLS_CERT} and {ev.OTEL_LLM_ANALYZE_TLS_KEY}")
        for path in (self.tls_cert, self.tls_key):
            if path:
                with open(path, "rb"):
                    pass  # raises FileNotFoundError naming the path
        return self

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


class AnalyzeService:
    """Receivers + pipeline + forwarder + RCA. ``start()`` / ``shutdown()``; ports in ``http_port`` / ``grpc_port``."""

    def __init__(
        self,
        config: AnalyzeConfig | None = None,
        *,
        sinks: Sequence[DetectionSink] = (),
        rca: Any = None,
        span_consumers: Sequence[Any] = (),
        metric_consumers: Sequence[Any] = (),
        gpu_state: Any = None,
    ) -> None:
        from otel_llm.processors.rca import RcaProcessor

        from ._forward import Forwarder
        from ._pipeline import Pipeline
        from ._receiver import Intake

        self.config = (config or AnalyzeConfig()).resolve()
        cfg = self.config
        self.rca = rca or RcaProcessor(sinks, quiet_period_s=cfg.quiet_period_s, gpu_state=gpu_state)
        self.pipeline = Pipeline(self.rca, span_consumers=span_consumers, metric_consumers=metric_consumers,
                                 max_items=cfg.queue_size, max_spans=cfg.max_queued_spans)
        self.forwarder = Forwarder(cfg.forward_endpoint, headers=cfg.forward_headers,
                                   max_items=cfg.queue_size) if cfg.forward_endpoint else None
        self.intake = Intake(self.pipeline, self.forwarder, token=cfg.token, max_request_bytes=cfg.max_request_bytes)
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self._uvicorn = None
        self._http_thread: threading.Thread | None = None
        self._grpc = None
        self._stopped = False

    # ------------------------------------------------------------ lifecycle
    def _tls_pair(self) -> tuple[bytes, bytes] | None:
        if not self.config.tls:
            return None
        with open(self.config.tls_cert, "rb") as c, open(self.config.tls_key, "rb") as k:  # type: ignore[arg-type]
            return c.read(), k.read()

    def _start_grpc(self) -> None:
        from ._receiver import grpc_server

        if self.config.grpc_endpoint == "none":
            return
        self._grpc, self.grpc_port = grpc_server(self.intake, self.config.grpc_endpoint, tls=self._tls_pair())
        self._grpc.start()

    def _uvicorn_server(self):
        import uvicorn

        from ._receiver import http_app

        host, port = _split(self.config.http_endpoint, ev.OTEL_LLM_ANALYZE_HTTP_ENDPOINT)
        config = uvicorn.Config(
            http_app(self.intake), host=host, port=port, log_level="warning", access_log=False,
            ssl_certfile=self.config.tls_cert if self.config.tls else None,
            ssl_keyfile=self.config.tls_key if self.config.tls else None,
            lifespan="off", timeout_keep_alive=30, limit_concurrency=256,
        )
        return uvicorn.Server(config)

    def start(self, timeout_s: float = 10.0) -> AnalyzeService:
        """Start both receivers on background threads and wait until they listen."""
        self._start_grpc()
        if self.config.http_endpoint != "none":
            server = self._uvicorn = self._uvicorn_server()
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
            self._http_thread = threading.Thread(target=server.run, name="otel-llm-analyze-http", daemon=True)
            self._http_thread.start()
            deadline = time.monotonic() + timeout_s
            while not server.started:
                if time.monotonic() > deadline or not self._http_thread.is_alive():
                    self.shutdown()
                    raise OSError(f"the OTLP/HTTP receiver did not start on {self.config.http_endpoint}")
                time.sleep(0.01)
            self.http_port = server.servers[0].sockets[0].getsockname()[1]
        return self

    def serve_forever(self) -> None:
        """Run in the foreground until SIGINT/SIGTERM (uvicorn handles the signals)."""
        self._start_grpc()
        try:
            if self.config.http_endpoint != "none":
                self._uvicorn = self._uvicorn_server()
                self._uvicorn.run()
            else:
                self._grpc.wait_for_termination()
        finally:
            self.shutdown()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(timeout=timeout_s)
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait(timeout_s)
        self.pipeline.shutdown(timeout_s)
        if self.forwarder is not None:
            self.forwarder.shutdown(timeout_s)
        self.rca.shutdown()

    def stats(self) -> dict[str, Any]:
        from otel_llm._selftelemetry import dropped_counts

        out: dict[str, Any] = {"intake": dict(self.intake.stats), "pipeline": dict(self.pipeline.stats),
                               "rca_issues": self.rca.issues, "assembly": vars(self.rca.assembler.stats).copy()}
        if self.forwarder is not None:
            out["forward"] = dict(self.forwarder.stats)
        out["dropped"] = {f"{c}/{r}": n for (c, r), n in dropped_counts().items()}
        return out

    def __enter__(self) -> AnalyzeService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
