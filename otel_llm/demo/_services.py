"""The demo's two small services around the LLM server, both instrumented.

* :class:`RetrievalService` -- ``POST /search``: a vector-search stand-in with a
  realistic latency distribution and an injectable ``slowdown`` / ``error_rate``
  (the "slow downstream dependency" fault). SERVER span per request, W3C context
  extracted, a ``vector_search`` child span.
* :class:`Gateway` -- the front door the load hits: ``POST /v1/chat/completions``.
  For requests marked ``x-otel-llm-retrieval: 1`` it first calls retrieval (CLIENT
  span, ``traceparent`` injected), then routes the completion to the least-busy
  healthy LLM server replica (one per GPU, as data-parallel vLLM replicas are)
  and streams it back chunk by chunk (CLIENT span, context injected).

Both use their own tracer provider (distinct ``service.name``), so a trace spans
three services: gateway -> retrieval, gateway -> llm-server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import semconv

_RETRIEVAL_HEADER = "x-otel-llm-retrieval"


class RetrievalService:
    """A retrieval endpoint whose latency is lognormal around ``base_latency_s``."""

    def __init__(self, tracer_provider: Any, *, base_latency_s: float = 0.012, seed: int = 0) -> None:
        self.tracer = tracer_provider.get_tracer("otel_llm.demo.retrieval")
        self.base_latency_s = base_latency_s
        self.slowdown = 1.0
        """Multiplier on the latency; the demo's ``slow_dependency`` fault raises it."""
        self.slowdown_at: Callable[[float], float] | None = None
        """When set, ``slowdown_at(unix_time)`` gives the multiplier (exact fault timing)."""
        self.error_rate = 0.0
        self._rng = random.Random(seed)
        self.requests = 0

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def search(request):
            ctx = propagate.extract(dict(request.headers))
            with self.tracer.start_as_current_span(
                "POST /search", context=ctx, kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": "/search", "http.route": "/search"},
            ) as span:
                self.requests += 1
                try:
                    body = await request.json()
                except ValueError:
                    span.set_attribute("http.response.status_code", 400)
                    span.set_status(Status(StatusCode.ERROR, "malformed JSON"))
                    span.set_attribute(semconv.ERROR_TYPE, "400")
                    return JSONResponse({"error": "malformed JSON body"}, status_code=400)
                with self.tracer.start_as_current_span("vector_search"):
                    factor = self.slowdown_at(time.time()) if self.slowdown_at is not None else self.slowdown
                    await asyncio.sleep(self.base_latency_s * factor * self._rng.lognormvariate(0.0, 0.25))
                if self.error_rate and self._rng.random() < self.error_rate:
                    span.set_attribute("http.response.status_code", 503)
                    span.set_attribute(semconv.ERROR_TYPE, "503")
                    span.set_status(Status(StatusCode.ERROR, "index unavailable"))
                    return JSONResponse({"error": "index unavailable"}, status_code=503)
                span.set_attribute("http.response.status_code", 200)
                query = str(body.get("query", ""))[:64]
                docs = [f"doc-{abs(hash((query, i))) % 10_000}" for i in range(3)]
                return JSONResponse({"documents": docs})

        return Starlette(routes=[Route("/search", search, methods=["POST"])])


class Gateway:
    """Front service: optional retrieval call, then a streamed completion from the LLM server."""

    def __init__(self, tracer_provider: Any, *, llm_backends: list[tuple[str, str]], retrieval_url: str,
                 healthy: Callable[[str], bool] | None = None, timeout_s: float = 60.0) -> None:
        """``llm_backends``: (base URL, GPU UUID) per replica; ``healthy(uuid)`` routes around lost GPUs."""
        import httpx

        if not llm_backends:
            raise ValueError("the gateway needs at least one LLM backend")
        self.tracer = tracer_provider.get_tracer("otel_llm.demo.gateway")
        self.backends = [(u.rstrip("/"), g) for u, g in llm_backends]
        self.healthy = healthy or (lambda _uuid: True)
        self._busy = dict.fromkeys(range(len(self.backends)), 0)
        self.retrieval_url = retrieval_url.rstrip("/")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        self._client = httpx.AsyncClient(timeout=timeout_s, limits=limits)

    async def aclose(self) -> None:
        await self._client.aclose()

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def chat(request):
            parent = propagate.extract(dict(request.headers))
            span = self.tracer.start_span(
                "POST /v1/chat/completions", context=parent, kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "http.route": "/v1/chat/completions",
                            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_CHAT},
            )
            ctx = trace.set_span_in_context(span, parent)
            t0 = time.perf_counter()
            try:
                body = await request.json()
            except ValueError:
                _fail(span, 400, "malformed JSON")
                span.end()
                return JSONResponse({"error": {"message": "malformed JSON body"}}, status_code=400)
            if model := body.get("model"):
                span.set_attribute(semconv.GEN_AI_REQUEST_MODEL, str(model))
            if request.headers.get(_RETRIEVAL_HEADER) == "1":
                ok = await self._retrieve(ctx, body)
                if not ok:
                    _fail(span, 502, "retrieval failed")
                    span.end()
                    return JSONResponse({"error": {"message": "retrieval failed"}}, status_code=502)
            healthy = [i for i, (_, g) in enumerate(self.backends) if self.healthy(g)]
            if not healthy:
                _fail(span, 503, "no healthy LLM replica")
                span.end()
                return JSONResponse({"error": {"message": "no healthy LLM replica"}}, status_code=503)
            pick = min(healthy, key=lambda i: self._busy[i])
            self._busy[pick] += 1
            return StreamingResponse(self._stream(span, ctx, body, t0, pick), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    async def _retrieve(self, ctx: Any, body: dict) -> bool:
        headers: dict[str, str] = {}
        with self.tracer.start_as_current_span(
            "POST /search", context=ctx, kind=SpanKind.CLIENT,
            attributes={"http.request.method": "POST", "server.address": "retrieval", "url.path": "/search",
                        semconv.OTEL_LLM_STAGE: semconv.STAGE_DOWNSTREAM},
        ) as cspan:
            propagate.inject(headers)
            query = ""
            messages = body.get("messages") or []
            if messages and isinstance(messages[-1], dict):
                query = str(messages[-1].get("content", ""))[:64]
            try:
                resp = await self._client.post(f"{self.retrieval_url}/search", json={"query": query}, headers=headers)
            except Exception as exc:
                cspan.set_attribute(semconv.ERROR_TYPE, type(exc).__qualname__)
                cspan.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
                return False
            cspan.set_attribute("http.response.status_code", resp.status_code)
            if resp.status_code >= 400:
                cspan.set_attribute(semconv.ERROR_TYPE, str(resp.status_code))
                cspan.set_status(Status(StatusCode.ERROR))
                return False
            return True

    async def _stream(self, span: Any, ctx: Any, body: dict, t0: float, backend: int):
        url, gpu = self.backends[backend]
        token = otel_context.attach(ctx)
        cspan = self.tracer.start_span(
            f"chat {body.get('model', '')}".strip(), kind=SpanKind.CLIENT,
            attributes={semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_CHAT, "server.address": "llm-server",
                        "http.request.method": "POST", "server.port": int(url.rsplit(":", 1)[-1])},
        )
        otel_context.detach(token)
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(cspan, ctx))
        status = 0
        first = True
        try:
            async with self._client.stream("POST", f"{url}/v1/chat/completions", json=body,
                                           headers=headers) as resp:
                status = resp.status_code
                cspan.set_attribute("http.response.status_code", status)
                if status >= 400:
                    text = (await resp.aread()).decode("utf-8", "replace")[:500]
                    yield f"data: {json.dumps({'error': {'message': text, 'status': status}})}\n\n"
                else:
                    async for line in resp.aiter_lines():
                        if not line:
                            continue
                        if first and line.startswith("data:") and _has_content(line):
                            first = False
                            ttft = time.perf_counter() - t0
                            span.set_attribute(semconv.OTEL_LLM_TTFT, ttft)
                            cspan.set_attribute(semconv.OTEL_LLM_TTFT, ttft)
                        yield line + "\n\n"
        except Exception as exc:  # upstream broke mid-stream: tell the caller, record it
            cspan.set_attribute(semconv.ERROR_TYPE, type(exc).__qualname__)
            cspan.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            status = status or 502
            yield f"data: {json.dumps({'error': {'message': 'upstream failed', 'status': 502}})}\n\n"
        finally:
            self._busy[backend] -= 1
            if status >= 400:
                _fail(cspan, status, "upstream error")
                _fail(span, status, "upstream error")
            else:
                span.set_attribute("http.response.status_code", 200)
            cspan.end()
            span.end()


def _has_content(line: str) -> bool:
    """Does this SSE ``data:`` line carry generated text (not the role-only first chunk, not [DONE])?"""
    payload = line[5:].strip()
    if payload == "[DONE]":
        return False
    try:
        choices = json.loads(payload).get("choices") or []
    except (ValueError, AttributeError):
        return False
    return any((c.get("delta") or {}).get("content") or c.get("text") for c in choices if isinstance(c, dict))


def _fail(span: Any, status: int, message: str) -> None:
    span.set_attribute("http.response.status_code", status)
    span.set_attribute(semconv.ERROR_TYPE, str(status))
    span.set_status(Status(StatusCode.ERROR, message))
