"""Run an ASGI app with uvicorn in a daemon thread on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class ServerHandle:
    url: str
    port: int
    _server: Any
    _thread: threading.Thread

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask uvicorn to exit and wait for its thread (bounded)."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(1.0)


def serve_in_thread(app: Any, *, host: str = "127.0.0.1", port: int = 0, name: str = "asgi",
                    start_timeout_s: float = 10.0) -> ServerHandle:
    """Start ``app`` and return once it accepts connections."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_keep_alive=30, loop="asyncio", http="h11")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"otel-llm-demo-{name}",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"{name} server did not start on {host}:{bound}")
        time.sleep(0.01)
    return ServerHandle(f"http://{host}:{bound}", bound, server, thread)
