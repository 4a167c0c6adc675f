"""Run an ASGI app with uvicorn on a background thread (tests, benchmarks, the demo)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = ["ServerHandle", "run_in_thread"]


@dataclass
class ServerHandle:
    """A running server: ``url`` (``http://host:port``), ``port``; ``stop()`` shuts it down (idempotent)."""

    url: str
    port: int
    _server: object = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_in_thread(app, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                  startup_timeout_s: float = 10.0) -> ServerHandle:
    """Serve ``app`` on ``host:port`` (0 = a free port) in a daemon thread; return once it accepts connections.

    The socket is bound here, before the thread starts, so the port is known
    and an in-use port fails fast with ``OSError``. Lifespan events run.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=2,
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on {host}:{bound} exited during start-up (see the log above)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server on {host}:{bound} did not start within {startup_timeout_s} s")
        time.sleep(0.005)
    shown = f"[{host}]" if ":" in host else host
    return ServerHandle(f"http://{shown}:{bound}", bound, server, thread)
