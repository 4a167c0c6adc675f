"""Pure-ASGI middleware: one SERVER span (+ GenAI metrics) per OpenAI-compatible request.

Obligations (each covered by a test):

* Anything but ``POST`` to a watched path passes straight through (one dict
  lookup, one string comparison).
* The request body is read once, parsed for the GenAI request fields, and
  replayed unchanged to the app; ``http.disconnect`` is noticed on the way.
* Response messages are forwarded *first* and inspected after, so a stream is
  never buffered or delayed: SSE ``data:`` events are scanned incrementally
  (:mod:`._sse`) and every output-carrying event is timestamped (TTFT, TPOT,
  gap percentiles via :class:`~otel_llm.instrumentation._genai.TokenTimeline`).
  A non-streamed JSON body is kept (up to a cap) and parsed at the end.
* The span ends on every exit path: normal end, client disconnect
  (``otel_llm.client.disconnected``, ``error.type=client_disconnected``), an
  app exception (recorded, re-raised unchanged) and cancellation.
* 4xx/5xx set ``error.type`` to the status code; 5xx also set the span status
  to ERROR (HTTP server convention: a 4xx is the client's error).
* Our own failures never reach the app: they are reported once and counted.
* Prompts / completions are recorded only when content capture is on
  (:mod:`otel_llm._content`), redacted and capped.

Token counts: ``usage`` from the response when the server sends it
(``otel_llm.response.token_count_source = usage``), else the number of
output-carrying SSE chunks (``= chunks``; a chunk may hold several tokens).
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Iterable
from time import perf_counter_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import __version__
from otel_llm import semconv as sc
from otel_llm._content import capture_content as _capture_content
from otel_llm._content import input_messages_json, output_messages_json
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation._genai import (
    GenAIInstruments,
    TokenTimeline,
    metric_attributes,
    metrics_recorded_by_caller,
    record_generation,
    stall_threshold_s,
    stamp_gpu_uuids,
)
from otel_llm.instrumentation.openai_server._sse import SSEScanner

__all__ = ["DEFAULT_PATHS", "OpenAIServerMiddleware"]

DEFAULT_PATHS: dict[str, str] = {
    "/v1/chat/completions": sc.OPERATION_CHAT,
    "/v1/completions": sc.OPERATION_TEXT_COMPLETION,
    "/v1/embeddings": sc.OPERATION_EMBEDDINGS,
}
_COMPONENT = "openai_server"
_MAX_REQUEST_PARSE = 8 << 20  # bytes of request JSON we parse; larger bodies are replayed unparsed
_MAX_RESPONSE_PARSE = 4 << 20  # bytes of a non-streamed response we keep for usage/finish_reason
_DISCONNECTED = "client_disconnected"
_TRACED = "otel_llm.traced"  # scope key: the request already has our span (mounted sub-apps share the scope)


class _HeaderGetter:
    """OTel propagator getter over ASGI ``scope['headers']`` (lower-case byte pairs)."""

    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: dict[str, list[str]]) -> Iterable[str]:
        return carrier.keys()


_GETTER = _HeaderGetter()


def _headers(scope: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in scope.get("headers") or ():
        out.setdefault(k.decode("latin-1").lower(), []).append(v.decode("latin-1"))
    return out


class _Shared:
    """Telemetry objects bound once per middleware (or per instrumentor)."""

    def __init__(self, tracer_provider, meter_provider, provider_name: str, capture: bool | None, stall_ms: float | None,
                 record_metrics: bool = True):
        self.tracer = trace.get_tracer(__name__, __version__, tracer_provider=tracer_provider, schema_url=sc.SCHEMA_URL)
        meter = metrics.get_meter(__name__, __version__, meter_provider=meter_provider, schema_url=sc.SCHEMA_URL)
        self.instruments = GenAIInstruments(meter)
        self.provider_name = provider_name
        self.capture = _capture_content(capture)
        self.stall_s = stall_threshold_s(stall_ms)
        self.record_metrics = record_metrics


class _Request:
    """Everything known about one request while it is in flight."""

    __slots__ = (
        "body", "content_type", "disconnected", "json_parts", "json_size", "model", "operation", "req", "scanner",
        "complete", "first_chunk_ns", "server", "span", "start_ns", "status", "stream", "timeline",
    )

    def __init__(self, operation: str, start_ns: int) -> None:
        self.operation = operation
        self.start_ns = start_ns
        self.timeline = TokenTimeline(start_ns)
        self.status: int | None = None
        self.stream = False
        self.scanner: SSEScanner | None = None
        self.json_parts: list[bytes] = []
        self.json_size = 0
        self.disconnected = False
        self.req: dict[str, Any] = {}
        self.model: str | None = None
        self.span = None
        self.body = b""
        self.content_type = b""
        self.server: tuple | None = None
        self.complete = False
        self.first_chunk_ns = 0


class OpenAIServerMiddleware:
    """ASGI middleware for OpenAI-compatible servers (Starlette, FastAPI, vLLM, SGLang, llama-cpp-python...).

    ``OpenAIServerMiddleware(app, tracer_provider=None, meter_provider=None,
    provider_name="openai_compatible", capture_content=None,
    stall_threshold_ms=None, paths=DEFAULT_PATHS)``. ``paths`` maps a path
    suffix to the GenAI operation name; a request matches when its path ends
    with one of them (so ``/openai/v1/chat/completions`` matches too).
    ``enabled`` is a zero-argument callable checked per request
    (``OpenAIServerInstrumentor.uninstrument()`` turns already-built apps into
    pass-through with it).
    """

    def __init__(
        self,
        app,
        tracer_provider=None,
        meter_provider=None,
        *,
        provider_name: str = sc.PROVIDER_OPENAI_COMPATIBLE,
        capture_content: bool | None = None,
        stall_threshold_ms: float | None = None,
        paths: dict[str, str] | None = None,
        record_metrics: bool = True,
        enabled=None,
        _shared: _Shared | None = None,
    ) -> None:
        self.app = app
        self._shared = _shared or _Shared(
            tracer_provider, meter_provider, provider_name, capture_content, stall_threshold_ms, record_metrics
        )
        self._paths = dict(paths or DEFAULT_PATHS)
        self._exact = self._paths  # fast path: exact match
        self._enabled = enabled

    def _operation(self, path: str) -> str | None:
        op = self._exact.get(path)
        if op is not None:
            return op
        path = path.rstrip("/")
        for suffix, op in self._paths.items():
            if path.endswith(suffix):
                return op
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        operation = self._operation(scope.get("path", ""))
        if operation is None or _TRACED in scope or (self._enabled is not None and not self._enabled()):
            await self.app(scope, receive, send)  # not ours, or an outer instance (a mounting app) has it
            return
        scope[_TRACED] = True
        await self._traced(scope, receive, send, operation)

    # ------------------------------------------------------------------
    async def _traced(self, scope, receive, send, operation: str) -> None:
        state = _Request(operation, perf_counter_ns())
        pending: deque[dict[str, Any]] = deque()
        # 1. read the request body (replayed below, unchanged)
        size = 0
        chunks: list[bytes] = []
        while True:
            message = await receive()
            pending.append(message)
            if message["type"] != "http.request":
                if message["type"] == "http.disconnect":
                    state.disconnected = True
                break
            body = message.get("body", b"")
            size += len(body)
            if size <= _MAX_REQUEST_PARSE:
                chunks.append(body)
            if not message.get("more_body", False):
                break
        token = None
        try:
            if size <= _MAX_REQUEST_PARSE:
                state.body = b"".join(chunks)
            token = self._start(scope, state)
        except Exception as exc:  # ours: the request goes on untraced
            report_error(_COMPONENT, exc)
            state.span = None

        async def replay_receive():
            if pending:
                return pending.popleft()
            message = await receive()
            if message["type"] == "http.disconnect" and not state.complete:
                state.disconnected = True  # gone before the response ended (after it, disconnect is normal)
            return message

        async def observed_send(message):
            await send(message)  # the client gets it first: nothing is held back
            try:
                scanner = state.scanner
                if scanner is not None and message["type"] == "http.response.body" and message.get("more_body"):
                    body = message.get("body")  # hot path: one SSE chunk of a stream
                    if state.first_chunk_ns == 0 and body:
                        state.first_chunk_ns = perf_counter_ns()
                    n = scanner.feed(body) if body else 0
                    if n:
                        now = perf_counter_ns()
                        append = state.timeline.append
                        for _ in range(n):
                            append(now)
                else:
                    self._observe(state, message)
            except Exception as exc:
                report_error(_COMPONENT, exc)

        error: BaseException | None = None
        try:
            await self.app(scope, replay_receive, observed_send)
        except BaseException as exc:  # includes CancelledError; re-raised unchanged below
            error = exc
            raise
        finally:
            if token is not None:
                try:
                    otel_context.detach(token)
                except Exception:  # pragma: no cover - a detach across tasks; never the host's problem
                    pass
            if state.span is not None:
                try:
                    self._finish(state, error)
                except Exception as exc:
                    report_error(_COMPONENT, exc)
                    try:
                        state.span.end()
                    except Exception:
                        pass

    # ------------------------------------------------------------------
    def _start(self, scope, state: _Request):
        shared = self._shared
        req: dict[str, Any] = {}
        if state.body:
            try:
                parsed = json.loads(state.body)
                if isinstance(parsed, dict):
                    req = parsed
            except ValueError:
                pass  # the app answers the malformed body; the span records its status
        state.req = req
        model = req.get("model")
        state.model = model if isinstance(model, str) else None
        if trace.get_current_span().get_span_context().is_valid:
            # an outer HTTP instrumentation (opentelemetry-instrumentation-asgi/fastapi) already made the
            # SERVER span from the headers: nest under it rather than start a second SERVER span
            parent, kind = otel_context.get_current(), SpanKind.INTERNAL
        else:
            parent, kind = propagate.extract(_headers(scope), getter=_GETTER), SpanKind.SERVER
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: state.operation,
            sc.GEN_AI_PROVIDER_NAME: shared.provider_name,
            sc.HTTP_REQUEST_METHOD: "POST",
            sc.URL_PATH: scope.get("path", ""),
        }
        server = scope.get("server")
        state.server = tuple(server) if server else None
        if server:
            attrs[sc.SERVER_ADDRESS] = server[0]
            if server[1]:
                attrs[sc.SERVER_PORT] = server[1]
        if state.model:
            attrs[sc.GEN_AI_REQUEST_MODEL] = state.model
        _request_attributes(req, attrs)
        state.stream = bool(req.get("stream"))
        name = f"{state.operation} {state.model}" if state.model else state.operation
        span = shared.tracer.start_span(name, context=parent, kind=kind, attributes=attrs)
        state.span = span
        if span.is_recording():
            stamp_gpu_uuids(span)
            if shared.capture:
                prompt = _prompt(req)
                if prompt is not None:
                    try:
                        text, cut = input_messages_json(prompt)
                        span.set_attribute(sc.GEN_AI_INPUT_MESSAGES, text)
                        if cut:
                            span.set_attribute(sc.OTEL_LLM_CONTENT_TRUNCATED, True)
                    except Exception as exc:
                        report_error(_COMPONENT, exc)
        return otel_context.attach(trace.set_span_in_context(span, parent))

    def _observe(self, state: _Request, message: dict[str, Any]) -> None:
        mtype = message["type"]
        if mtype == "http.response.body":
            body = message.get("body", b"")
            if not message.get("more_body", False):
                state.complete = True
            if state.scanner is not None:
                if body:
                    if state.first_chunk_ns == 0:
                        state.first_chunk_ns = perf_counter_ns()
                    n = state.scanner.feed(body)
                    if n:
                        now = perf_counter_ns()
                        for _ in range(n):
                            state.timeline.append(now)
            elif body and state.json_size <= _MAX_RESPONSE_PARSE:
                state.json_parts.append(body)
                state.json_size += len(body)
        elif mtype == "http.response.start":
            state.status = int(message.get("status", 200))
            for k, v in message.get("headers") or ():
                if k.lower() == b"content-type":
                    state.content_type = v
                    break
            if b"text/event-stream" in state.content_type:
                state.scanner = SSEScanner(capture=self._shared.capture)

    def _finish(self, state: _Request, error: BaseException | None) -> None:
        shared = self._shared
        span = state.span
        end_ns = perf_counter_ns()
        status = state.status
        error_type: str | None = None
        if error is not None:
            error_type = type(error).__qualname__
        elif status is not None and status >= 400:
            error_type = str(status)
        elif state.disconnected and (state.scanner is None or not state.scanner.done) and status is not None:
            error_type = _DISCONNECTED
        input_tokens = output_tokens = None
        finish: dict[int, str] = {}
        response_model = None
        response_id = None
        texts: dict[int, list[str]] = {}
        count_source = None
        scanner = state.scanner
        if scanner is not None:
            usage = scanner.usage
            if usage:
                input_tokens = _int(usage.get("prompt_tokens"))
                output_tokens = _int(usage.get("completion_tokens"))
            if output_tokens is not None:
                count_source = "usage"
            elif state.operation != sc.OPERATION_EMBEDDINGS:
                output_tokens = scanner.content_chunks
                count_source = "chunks"
            finish = scanner.finish_reasons
            response_model, response_id, texts = scanner.response_model, scanner.response_id, scanner.texts
        elif state.json_parts and state.json_size <= _MAX_RESPONSE_PARSE and b"json" in state.content_type:
            try:
                obj = json.loads(b"".join(state.json_parts))
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                usage = obj.get("usage")
                if isinstance(usage, dict):
                    input_tokens = _int(usage.get("prompt_tokens"))
                    output_tokens = _int(usage.get("completion_tokens"))
                    if output_tokens is not None:
                        count_source = "usage"
                model = obj.get("model")
                response_model = model if isinstance(model, str) else None
                rid = obj.get("id")
                response_id = rid if isinstance(rid, str) else None
                for i, choice in enumerate(obj.get("choices") or ()):
                    if isinstance(choice, dict):
                        idx = choice.get("index", i)
                        if isinstance(choice.get("finish_reason"), str):
                            finish[idx] = choice["finish_reason"]
                        if shared.capture:
                            msg = choice.get("message")
                            text = msg.get("content") if isinstance(msg, dict) else choice.get("text")
                            if isinstance(text, str):
                                texts[idx] = [text]

        summary = None
        if scanner is not None and len(state.timeline):
            summary = state.timeline.summary(shared.stall_s)
            # one chunk may carry several tokens: TPOT is per *token* when usage says how many
            if count_source == "usage" and output_tokens and output_tokens > 1 and summary.tpot is not None:
                times = state.timeline.times
                summary.tpot = (times[-1] - times[0]) / 1e9 / (output_tokens - 1)

        if span.is_recording():
            attrs: dict[str, Any] = {}
            if status is not None:
                attrs[sc.HTTP_RESPONSE_STATUS_CODE] = status
            if response_model:
                attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
            if response_id:
                attrs[sc.GEN_AI_RESPONSE_ID] = response_id
            if finish:
                attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [finish[k] for k in sorted(finish)]
            if count_source:
                attrs[sc.OTEL_LLM_TOKEN_COUNT_SOURCE] = count_source
            if scanner is not None:
                attrs[sc.OTEL_LLM_RESPONSE_CHUNKS] = scanner.chunks
                if state.first_chunk_ns:
                    attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = (state.first_chunk_ns - state.start_ns) / 1e9
            if state.disconnected:
                attrs[sc.OTEL_LLM_CLIENT_DISCONNECTED] = True
            if error_type:
                attrs[sc.ERROR_TYPE] = error_type
            if shared.capture and texts:
                try:
                    text, cut = output_messages_json(
                        ["".join(texts[k]) for k in sorted(texts)], [finish.get(k) or "" for k in sorted(texts)]
                    )
                    attrs[sc.GEN_AI_OUTPUT_MESSAGES] = text
                    if cut:
                        attrs[sc.OTEL_LLM_CONTENT_TRUNCATED] = True
                except Exception as exc:
                    report_error(_COMPONENT, exc)
            span.set_attributes(attrs)
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"))
            elif status is not None and status >= 500:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))

        server = state.server or (None, None)
        mattrs = metric_attributes(
            state.operation, shared.provider_name, state.model, response_model if error_type is None else None, error_type,
            server[0], server[1],
        )
        with contextlib.nullcontext() if shared.record_metrics else metrics_recorded_by_caller():
            record_generation(
                span, shared.instruments, mattrs, duration_s=(end_ns - state.start_ns) / 1e9, summary=summary,
                input_tokens=input_tokens, output_tokens=output_tokens, context=trace.set_span_in_context(span),
            )
        span.end()


def _prompt(req: dict[str, Any]) -> Any:
    """The request's prompt in a shape ``input_messages_json`` takes (chat messages or text), else None."""
    messages = req.get("messages")
    if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
        return messages
    prompt = req.get("prompt", req.get("input"))
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    return None  # token ids: no text to record


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _request_attributes(req: dict[str, Any], attrs: dict[str, Any]) -> None:
    max_tokens = req.get("max_completion_tokens", req.get("max_tokens"))
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    for key, name in (("temperature", sc.GEN_AI_REQUEST_TEMPERATURE), ("top_p", sc.GEN_AI_REQUEST_TOP_P)):
        v = req.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            attrs[name] = float(v)
    seed = req.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        attrs[sc.GEN_AI_REQUEST_SEED] = seed
    n = req.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    stream = req.get("stream")
    if isinstance(stream, bool):
        attrs[sc.GEN_AI_REQUEST_STREAM] = stream
    stop = req.get("stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and stop:
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
