"""Serve Prometheus text over HTTP on loopback (the simulator as a stand-in dcgm-exporter)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ExpositionServer:
    """``GET /metrics`` answers ``render()``; an exception from ``render`` answers 503.

    Runs in one daemon thread; :meth:`close` stops it and frees the port.
    """

    def __init__(self, render: Callable[[], str], host: str = "127.0.0.1", port: int = 0) -> None:
        self._render = render
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics here")
                    return
                try:
                    body = outer._render().encode()
                    status = 200
                except Exception as exc:
                    body, status = f"telemetry unavailable: {exc}\n".encode(), 503
                self.send_response(status)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # keep test output and logs quiet
                pass

        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def start(self) -> ExpositionServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="otel-llm-exposition", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(2.0)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> ExpositionServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
