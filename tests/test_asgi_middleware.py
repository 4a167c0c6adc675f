"""OpenAIServerMiddleware on a plain Starlette app (a fake OpenAI server), over real loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from otel_llm import semconv as sc
from otel_llm.instrumentation.openai_server import OpenAIServerInstrumentor, OpenAIServerMiddleware
from otel_llm.server import run_in_thread

FIRST_DELAY_S = 0.15
LATER_DELAY_S = 0.25


def _chunk(text: str | None, *, finish: str | None = None, usage: dict | None = None, role: bool = False) -> bytes:
    delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text is not None else {})
    body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "fake-model", "choices": [], "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def chat(request: Request):
    req = await request.json()  # the app still gets the whole body
    if req.get("model") == "boom":
        raise RuntimeError("boom from the host")
    if not req.get("stream"):
        return JSONResponse({
            "id": "chatcmpl-2", "object": "chat.completion", "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
        })
    with_usage = (req.get("stream_options") or {}).get("include_usage", False)
    parts = req.get("parts", ["Hel", "lo", " wor", "ld", "!"])

    async def gen():
        yield _chunk(None, role=True)  # role-only chunk: no output yet
        await asyncio.sleep(FIRST_DELAY_S)
        yield _chunk(parts[0])
        await asyncio.sleep(LATER_DELAY_S)
        # two SSE events in one body message, and one event split across two messages
        yield _chunk(parts[1]) + _chunk(parts[2])
        half = _chunk(parts[3])
        yield half[:10]
        await asyncio.sleep(0.01)
        yield half[10:]
        for p in parts[4:]:
            yield _chunk(p)
        yield _chunk(None, finish="length")
        if with_usage:
            yield _chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 2 * len(parts), "total_tokens": 9 + 2 * len(parts)})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream")


async def slow_stream(request: Request):
    await request.body()

    async def gen():
        for i in range(200):
            yield _chunk(f"t{i}")
            await asyncio.sleep(0.02)

    return StreamingResponse(gen(), media_type="text/event-stream")


async def bad_request(request: Request):
    try:
        await request.json()
    except ValueError:
        return JSONResponse({"error": {"message": "bad json", "type": "invalid_request_error"}}, status_code=400)
    return JSONResponse({"ok": True})


async def health(request: Request):
    return PlainTextResponse("ok")


def _app() -> Starlette:
    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", bad_request, methods=["POST"]),
        Route("/openai/v1/chat/completions", slow_stream, methods=["POST"]),
        Route("/health", health),
    ])


@pytest.fixture
def served(telemetry):
    app = OpenAIServerMiddleware(_app(), tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    handle = run_in_thread(app)
    yield handle
    handle.stop()


def _wait_spans(telemetry, n=1, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = telemetry.spans()
        if len(spans) >= n:
            return spans
        time.sleep(0.01)
    return telemetry.spans()


def test_streamed_chunks_are_timed_as_they_pass_without_delay(served, telemetry):
    payload = {"model": "fake-model", "stream": True, "max_tokens": 16, "temperature": 0.5, "seed": 7,
               "messages": [{"role": "user", "content": "hi"}]}
    t0 = time.perf_counter()
    first_at = None
    with httpx.stream("POST", served.url + "/v1/chat/completions", json=payload, timeout=10) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content": "Hel"' in line and first_at is None:
                first_at = time.perf_counter() - t0
    total = time.perf_counter() - t0
    # the first token reached the client well before the stream ended: nothing was buffered
    assert first_at is not None and first_at < total - LATER_DELAY_S * 0.8

    (span,) = _wait_spans(telemetry)
    a = span.attributes
    assert span.name == "chat fake-model" and span.kind.name == "SERVER"
    assert a[sc.GEN_AI_REQUEST_MODEL] == "fake-model" and a[sc.GEN_AI_RESPONSE_MODEL] == "fake-model"
    assert a[sc.GEN_AI_REQUEST_MAX_TOKENS] == 16 and a[sc.GEN_AI_REQUEST_TEMPERATURE] == 0.5 and a[sc.GEN_AI_REQUEST_SEED] == 7
    assert a[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("length",)
    # no usage in the stream: tokens are counted as output-carrying chunks (role-only and finish chunks excluded)
    assert a[sc.OTEL_LLM_TOKEN_COUNT_SOURCE] == "chunks" and a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 5
    # TTFT reflects the deliberate delay before the first token, not the role-only chunk
    assert FIRST_DELAY_S <= a[sc.OTEL_LLM_TTFT] < FIRST_DELAY_S + LATER_DELAY_S * 0.8
    assert a[sc.OTEL_LLM_GAP_MAX] >= LATER_DELAY_S * 0.9  # the long gap after the first token
    assert a[sc.HTTP_RESPONSE_STATUS_CODE] == 200 and sc.ERROR_TYPE not in a
    assert a[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] < FIRST_DELAY_S  # the role-only chunk came first
    (ttft,) = telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    assert ttft.count == 1 and ttft.sum >= FIRST_DELAY_S
    assert ttft.attributes[sc.GEN_AI_OPERATION_NAME] == "chat"
    assert "gen_ai.response.id" not in ttft.attributes  # metric attributes stay low-cardinality


def test_usage_in_the_stream_wins_over_chunk_counting(served, telemetry):
    payload = {"model": "fake-model", "stream": True, "stream_options": {"include_usage": True},
               "messages": [{"role": "user", "content": "hi"}]}
    httpx.post(served.url + "/v1/chat/completions", json=payload, timeout=10)
    (span,) = _wait_spans(telemetry)
    assert span.attributes[sc.OTEL_LLM_TOKEN_COUNT_SOURCE] == "usage"
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 10  # 5 chunks carried 10 tokens
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 9
    # TPOT is per token: (last - first chunk) / (10 - 1), smaller than the per-chunk mean gap
    assert span.attributes[sc.OTEL_LLM_TPOT] < span.attributes[sc.OTEL_LLM_GAP_MAX]
    usage = {p.attributes[sc.GEN_AI_TOKEN_TYPE]: p.sum for p in telemetry.points(sc.GEN_AI_CLIENT_TOKEN_USAGE)}
    assert usage == {"input": 9, "output": 10}


def test_non_streamed_json_response(served, telemetry):
    resp = httpx.post(served.url + "/v1/chat/completions", json={"model": "fake-model", "messages": []}, timeout=10)
    assert resp.json()["usage"]["completion_tokens"] == 2  # the body reached the client intact
    (span,) = _wait_spans(telemetry)
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 11
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert span.attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert span.attributes[sc.GEN_AI_RESPONSE_ID] == "chatcmpl-2"
    assert telemetry.points(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == []  # no token timing without a stream
    assert telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION)[0].count == 1


def test_w3c_traceparent_is_continued(served, telemetry):
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    httpx.post(served.url + "/v1/chat/completions", json={"model": "fake-model"}, headers=headers, timeout=10)
    (span,) = _wait_spans(telemetry)
    assert format(span.context.trace_id, "032x") == trace_id
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_malformed_json_gives_an_error_span_with_the_status(served, telemetry):
    resp = httpx.post(served.url + "/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400
    (span,) = _wait_spans(telemetry)
    assert span.attributes[sc.ERROR_TYPE] == "400"
    assert span.attributes[sc.HTTP_RESPONSE_STATUS_CODE] == 400
    (dur,) = telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION)
    assert dur.attributes[sc.ERROR_TYPE] == "400"


def test_other_paths_and_methods_pass_through_untouched(served, telemetry):
    assert httpx.get(served.url + "/health").text == "ok"
    assert httpx.get(served.url + "/v1/chat/completions").status_code == 405
    time.sleep(0.05)
    assert telemetry.spans() == []


def test_client_disconnect_mid_stream_ends_the_span(served, telemetry):
    with httpx.stream("POST", served.url + "/openai/v1/chat/completions", json={"model": "m", "stream": True}, timeout=10) as resp:
        for i, _ in enumerate(resp.iter_lines()):
            if i >= 6:
                break  # close the connection after a few chunks; the server would stream for 4 s
    (span,) = _wait_spans(telemetry, timeout=3.0)  # the path suffix match: /openai/v1/chat/completions
    assert span.attributes[sc.OTEL_LLM_CLIENT_DISCONNECTED] is True
    assert span.attributes[sc.ERROR_TYPE] == "client_disconnected"
    assert 0 < span.attributes[sc.OTEL_LLM_RESPONSE_CHUNKS] < 200
    assert (span.end_time - span.start_time) / 1e9 < 3.0


async def test_host_exception_propagates_unchanged_and_is_recorded(telemetry):
    app = OpenAIServerMiddleware(_app(), tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    transport = httpx.ASGITransport(app=app)  # re-raises the app's exception
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        with pytest.raises(RuntimeError, match="boom from the host"):
            await client.post("/v1/chat/completions", json={"model": "boom"})
    (span,) = telemetry.spans()
    assert span.attributes[sc.ERROR_TYPE] == "RuntimeError"
    assert span.status.status_code.name == "ERROR"
    assert span.events[0].name == "exception"


async def test_cancellation_ends_the_span_and_propagates(telemetry):
    started = asyncio.Event()

    async def never(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        started.set()
        await asyncio.sleep(30)

    app = OpenAIServerMiddleware(never, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    scope = {"type": "http", "method": "POST", "path": "/v1/completions", "headers": [], "server": ("127.0.0.1", 1)}

    async def receive():
        return {"type": "http.request", "body": b'{"model": "m", "stream": true}', "more_body": False}

    async def send(message):
        pass

    task = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(started.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (span,) = telemetry.spans()
    assert span.attributes[sc.ERROR_TYPE] == "CancelledError"


async def test_request_body_is_replayed_unchanged(telemetry):
    seen = {}

    async def echo(scope, receive, send):
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen["body"] = body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    app = OpenAIServerMiddleware(echo, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    parts = [b'{"model": "m", ', b'"prompt": "x', b'yz"}']
    queue = [{"type": "http.request", "body": p, "more_body": i < 2} for i, p in enumerate(parts)]

    async def receive():
        return queue.pop(0)

    async def send(message):
        pass

    await app({"type": "http", "method": "POST", "path": "/v1/completions", "headers": []}, receive, send)
    assert seen["body"] == b"".join(parts)
    (span,) = telemetry.spans()
    assert span.attributes[sc.GEN_AI_REQUEST_MODEL] == "m"
    assert span.name == "text_completion m"


async def test_content_is_captured_only_when_opted_in_and_redacted(telemetry):
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "mail me at jane.doe@example.com"}]}
    for capture in (False, True):
        telemetry.clear()
        app = OpenAIServerMiddleware(_app(), tracer_provider=telemetry.tracer_provider,
                                     meter_provider=telemetry.meter_provider, capture_content=capture)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            await client.post("/v1/chat/completions", json=body)
        (span,) = telemetry.spans()
        if not capture:
            assert sc.GEN_AI_INPUT_MESSAGES not in span.attributes and sc.GEN_AI_OUTPUT_MESSAGES not in span.attributes
        else:
            assert "jane.doe@example.com" not in span.attributes[sc.GEN_AI_INPUT_MESSAGES]
            assert "mail me at" in span.attributes[sc.GEN_AI_INPUT_MESSAGES]
            assert "hi there" in span.attributes[sc.GEN_AI_OUTPUT_MESSAGES]


async def test_instrumentor_patches_starlette_and_uninstrument_restores(telemetry):
    from starlette.applications import Starlette as S

    original = S.__call__
    inst = OpenAIServerInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        built_while_on = _app()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=built_while_on), base_url="http://t") as c:
            await c.post("/v1/chat/completions", json={"model": "fake-model"})
        assert len(telemetry.spans()) == 1
        # an app instrumented explicitly is not wrapped a second time by the global patch
        explicit = _app()
        OpenAIServerInstrumentor.instrument_app(explicit, tracer_provider=telemetry.tracer_provider,
                                                meter_provider=telemetry.meter_provider)
        OpenAIServerInstrumentor.instrument_app(explicit)  # idempotent
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=explicit), base_url="http://t") as c:
            await c.post("/v1/chat/completions", json={"model": "fake-model"})
        assert len(telemetry.spans()) == 2
    finally:
        inst.uninstrument()
    assert S.__call__ is original
    telemetry.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=built_while_on), base_url="http://t") as c:
        await c.post("/v1/chat/completions", json={"model": "fake-model"})  # built before: now a pass-through
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as c:
        await c.post("/v1/chat/completions", json={"model": "fake-model"})
    assert telemetry.spans() == []


async def test_embeddings_and_gpu_uuids(telemetry, monkeypatch):
    monkeypatch.setenv("OTEL_LLM_GPU_UUIDS", "GPU-aaaa,GPU-bbbb")

    async def embeddings(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({
            "object": "list", "model": "emb", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}).encode()})

    app = OpenAIServerMiddleware(embeddings, tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/v1/embeddings", json={"model": "emb", "input": "hello"})
    (span,) = telemetry.spans()
    assert span.name == "embeddings emb" and span.attributes[sc.GEN_AI_OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 5 and sc.GEN_AI_USAGE_OUTPUT_TOKENS not in span.attributes
    assert span.attributes[sc.OTEL_LLM_GPU_UUIDS] == ("GPU-aaaa", "GPU-bbbb")
    usage = telemetry.points(sc.GEN_AI_CLIENT_TOKEN_USAGE)
    assert [(p.attributes[sc.GEN_AI_TOKEN_TYPE], p.sum) for p in usage] == [("input", 5)]


async def test_record_metrics_false_keeps_spans_and_drops_points(telemetry):
    app = OpenAIServerMiddleware(_app(), tracer_provider=telemetry.tracer_provider,
                                 meter_provider=telemetry.meter_provider, record_metrics=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post("/v1/chat/completions", json={"model": "fake-model"})
    (span,) = telemetry.spans()
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 2
    assert telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION) == []
    assert telemetry.points(sc.GEN_AI_CLIENT_TOKEN_USAGE) == []


async def test_nested_under_an_outer_http_server_span(telemetry):
    """Under opentelemetry-instrumentation-asgi style middleware, ours is an INTERNAL child, not a 2nd SERVER span."""
    from opentelemetry import context, trace

    inner = OpenAIServerMiddleware(_app(), tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    tracer = telemetry.tracer_provider.get_tracer("outer")

    async def outer(scope, receive, send):
        with tracer.start_as_current_span("POST /v1/chat/completions", kind=trace.SpanKind.SERVER):
            await inner(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as client:
        await client.post("/v1/chat/completions", json={"model": "fake-model"})
    spans = {s.name: s for s in telemetry.spans()}
    ours, http = spans["chat fake-model"], spans["POST /v1/chat/completions"]
    assert ours.kind.name == "INTERNAL" and ours.parent.span_id == http.context.span_id
    assert context.get_current() is not None


async def test_fastapi_app_is_instrumented_by_the_global_patch(telemetry):
    from fastapi import FastAPI

    api = FastAPI()

    @api.post("/v1/completions")
    async def completions(body: dict):
        return {"id": "cmpl-1", "object": "text_completion", "model": body["model"],
                "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

    inst = OpenAIServerInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                    provider_name="vllm")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as client:
            r = await client.post("/v1/completions", json={"model": "m", "prompt": "x"})
        assert r.json()["usage"]["completion_tokens"] == 1
    finally:
        inst.uninstrument()
    (span,) = telemetry.spans()
    assert span.name == "text_completion m" and span.attributes[sc.GEN_AI_PROVIDER_NAME] == "vllm"
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 1


async def test_a_mounted_instrumented_app_is_traced_once(telemetry):
    from starlette.routing import Mount

    kw = {"tracer_provider": telemetry.tracer_provider, "meter_provider": telemetry.meter_provider}
    inner = OpenAIServerMiddleware(_app(), **kw)
    outer = OpenAIServerMiddleware(Starlette(routes=[Mount("/api", app=inner)]), **kw)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=outer), base_url="http://t") as client:
        r = await client.post("/api/v1/chat/completions", json={"model": "fake-model"})
    assert r.status_code == 200
    assert len(telemetry.spans()) == 1
    assert sum(p.count for p in telemetry.points(sc.GEN_AI_SERVER_REQUEST_DURATION)) == 1
