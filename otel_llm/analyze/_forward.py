"""Forward received OTLP payloads, byte for byte, to a downstream endpoint.

The receivers hand each request's body (still compressed, if it came so) with
its content type and encoding to :meth:`Forwarder.submit`, which never blocks:
a bounded queue (items and bytes) feeds ``workers`` daemon threads that POST to
``{endpoint}/v1/traces`` or ``/v1/metrics`` (OTLP/HTTP) or calls the OTLP gRPC
service with the same serialized bytes (``grpc://host:port``). Retryable
failures (connection errors, 429, 502, 503, 504; gRPC UNAVAILABLE and
RESOURCE_EXHAUSTED) back off exponentially with jitter, honouring
``Retry-After``; other 4xx are permanent. Everything dropped is counted by
reason (``queue_full``, ``rejected``, ``retries_exhausted``, ``shutdown``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from urllib.parse import urlparse

from otel_llm._selftelemetry import report_dropped, report_error

_logger = logging.getLogger(__name__)
_COMPONENT = "analyze.forward"
_RETRYABLE = {429, 502, 503, 504}
_GRPC_PATHS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}


@dataclass(frozen=True, slots=True)
class Payload:
    signal: str  # "traces" | "metrics"
    body: bytes
    content_type: str = "application/x-protobuf"
    content_encoding: str | None = None
    message: bytes | None = None
    """The uncompressed protobuf message, for a gRPC downstream (None: ``body`` already is)."""


class Forwarder:
    """Bounded, retried, non-blocking forwarding of raw OTLP payloads."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        max_items: int = 256,
        max_bytes: int = 64 * 1024 * 1024,
        max_retries: int = 5,
        workers: int = 2,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        timeout_s: float = 10.0,
        insecure: bool = True,
    ) -> None:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https", "grpc", "grpcs") or not parsed.netloc:
            raise ValueError(f"forward endpoint {endpoint!r} must look like http(s)://host:port or grpc://host:port")
        if max_items < 1 or max_bytes < 1 or max_retries < 0:
            raise ValueError("max_items and max_bytes must be >= 1, max_retries >= 0")
        self.endpoint = endpoint.rstrip("/")
        self._safe_endpoint = f"{parsed.scheme}://{parsed.hostname}{f':{parsed.port}' if parsed.port else ''}"
        self.grpc = parsed.scheme.startswith("grpc")
        self._target = parsed.netloc
        self._secure_grpc = parsed.scheme == "grpcs"
        self.headers = dict(headers or {})
        self.max_items, self.max_bytes = max_items, max_bytes
        self.max_retries = max_retries
        self.initial_backoff_s, self.max_backoff_s = initial_backoff_s, max_backoff_s
        self.timeout_s = timeout_s
        self._queue: deque[Payload] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._stop = False
        self._busy = 0
        self.stats: Counter[str] = Counter()
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._local = threading.local()  # one HTTP client / gRPC channel per sender thread
        self._clients: list = []
        self._threads = [threading.Thread(target=self._run, name=f"otel-llm-forward-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ api
    def full(self, incoming: int = 0) -> bool:
        return len(self._queue) >= self.max_items or self._bytes + incoming > self.max_bytes

    def submit(self, payload: Payload) -> bool:
        """Queue one payload; False (dropped and counted) when the queue is full."""
        with self._cond:
            if self._stop or self.full(len(payload.body)):
                self._drop("queue_full" if not self._stop else "shutdown")
                return False
            self._queue.append(payload)
            self._bytes += len(payload.body)
            self._cond.notify()
        return True

    def flush(self, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (self._queue or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._queue and not self._busy

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self.flush(timeout_s)
        with self._cond:
            self._stop = True
            left = len(self._queue)
            self._queue.clear()
            self._bytes = 0
            self._cond.notify_all()
        if left:
            self._drop("shutdown", left)
        for t in self._threads:
            t.join(timeout=timeout_s)
        for client in self._clients:
            client.close()

    # ------------------------------------------------------------- internals
    def _drop(self, reason: str, n: int = 1) -> None:
        self.stats[f"dropped_{reason}"] += n
        report_dropped(_COMPONENT, reason, n)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                payload = self._queue.popleft()
                self._bytes -= len(payload.body)
                self._busy += 1
            try:
                self._deliver(payload)
            except Exception as exc:  # never let the thread die
                report_error(_COMPONENT, exc)
                self._drop("error")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _deliver(self, payload: Payload) -> None:
        backoff = self.initial_backoff_s
        for attempt in range(self.max_retries + 1):
            ok, retryable, retry_after = self._send_grpc(payload) if self.grpc else self._send_http(payload)
            if ok:
                self.stats["forwarded"] += 1
                return
            if not retryable:
                self._drop("rejected")
                return
            if attempt == self.max_retries or self._stop:
                break
            delay = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.5)
            with self._cond:
                self._cond.wait_for(lambda: self._stop, timeout=min(delay, self.max_backoff_s))
            backoff = min(backoff * 2, self.max_backoff_s)
        self._drop("retries_exhausted")

    def _send_http(self, payload: Payload) -> tuple[bool, bool, float | None]:
        import httpx
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, detach, set_value

        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=self.timeout_s)
            self._clients.append(client)
        headers = {"Content-Type": payload.content_type, **self.headers}
        if payload.content_encoding:
            headers["Content-Encoding"] = payload.content_encoding
        token = attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            resp = client.post(f"{self.endpoint}/v1/{payload.signal}", content=payload.body, headers=headers)
        except httpx.HTTPError as exc:
            self._log_once("transport", exc)
            return False, True, None
        finally:
            detach(token)
        if 200 <= resp.status_code < 300:
            return True, False, None
        retry_after = None
        if resp.status_code in _RETRYABLE:
            try:
                retry_after = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        self._log_once(f"http {resp.status_code}", None)
        return False, resp.status_code in _RETRYABLE, retry_after

    def _send_grpc(self, payload: Payload) -> tuple[bool, bool, float | None]:
        import grpc

        channel = getattr(self._local, "channel", None)
        if channel is None:
            if self._secure_grpc:
                channel = grpc.secure_channel(self._target, grpc.ssl_channel_credentials())
            else:
                channel = grpc.insecure_channel(self._target)
            self._local.channel = channel
            self._clients.append(channel)
        call = channel.unary_unary(_GRPC_PATHS[payload.signal])  # bytes in, bytes out: unchanged
        metadata = [(k.lower(), v) for k, v in self.headers.items()]
        try:
            body = payload.message if payload.message is not None else payload.body
            call(body, timeout=self.timeout_s, metadata=metadata)
            return True, False, None
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            self._log_once(f"grpc {code}", None)
            return False, code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   grpc.StatusCode.DEADLINE_EXCEEDED), None

    _logged: set[str] = set()

    def _log_once(self, what: str, exc: BaseException | None) -> None:
        if what not in self._logged:
            self._logged.add(what)
            _logger.warning("forwarding to %s failed (%s%s); retrying with backoff, drops are counted in "
                            "otel_llm.dropped{component=%s}", self._safe_endpoint, what, f": {exc}" if exc else "",
                            _COMPONENT)
