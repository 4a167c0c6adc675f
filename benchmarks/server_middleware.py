"""Overhead of the OpenAI-server middleware, measured side by side (bare and instrumented alternate).

1. In-process ASGI, no network, no model: an app streaming 32 SSE chunks (one token each, then a
   finish chunk, a usage chunk and [DONE]) and a non-streamed JSON app. Isolates the middleware.
2. End to end: a streamed 32-token request to the reference server (tiny model) over loopback,
   ``create_app(instrument=False)`` vs ``instrument=True``; dominated by the model and HTTP.

Run: ``.venv/bin/python benchmarks/server_middleware.py [--n 3000] [--e2e 60]``.
Telemetry goes to in-memory providers (the SDK's own cost of a span and a few histogram records
is part of what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

CHUNKS = 32


def _events(chunks: int = CHUNKS) -> list[bytes]:
    out = []
    for i in range(chunks):
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": f" tok{i}"}, "finish_reason": None}]}
        out.append(b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n")
    out.append(b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
               b'"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n')
    out.append(b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
               b'"usage":{"prompt_tokens":7,"completion_tokens":%d,"total_tokens":%d}}\n\n' % (chunks, chunks + 7))
    out.append(b"data: [DONE]\n\n")
    return out


EVENTS = _events()
LONG_EVENTS = _events(256)
JSON_BODY = json.dumps({"id": "c", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "x" * 200}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 32, "total_tokens": 39}}).encode()


def _sse(events):
    async def sse_app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for e in events:
            await send({"type": "http.response.body", "body": e, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return sse_app


sse_app = _sse(EVENTS)


async def json_app(scope, receive, send):
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": JSON_BODY, "more_body": False})


def _asgi(n: int) -> None:
    from otel_llm.instrumentation.openai_server import OpenAIServerMiddleware
    from otel_llm.testing import Telemetry

    tel = Telemetry()
    request = json.dumps({"model": "m", "stream": True, "max_tokens": 32, "messages": [
        {"role": "user", "content": "hello"}]}).encode()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [
        (b"content-type", b"application/json")], "server": ("127.0.0.1", 8000)}

    async def receive():
        return {"type": "http.request", "body": request, "more_body": False}

    async def send(message):
        pass

    async def run():
        added = {}
        for label, app in (("stream, 32 chunks", sse_app), ("stream, 256 chunks", _sse(LONG_EVENTS)),
                           ("json", json_app)):
            wrapped = OpenAIServerMiddleware(app, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
            bare, inst = [], []
            for i in range(n + 200):
                for target, sink in ((app, bare), (wrapped, inst)) if i % 2 else ((wrapped, inst), (app, bare)):
                    t0 = time.perf_counter_ns()
                    await target(dict(scope), receive, send)
                    sink.append(time.perf_counter_ns() - t0)
                if i % 200 == 0:
                    tel.clear()
                    tel.metric_reader.collect()  # drains the deferred per-gap points, as an exporter would
            bare, inst = bare[200:], inst[200:]
            b, s = statistics.median(bare), statistics.median(inst)
            added[label] = s - b
            print(f"ASGI {label:18s} bare {b / 1e3:8.1f} us  instrumented {s / 1e3:8.1f} us  "
                  f"added {(s - b) / 1e3:7.1f} us per request  (median of {len(bare)})")
        per_chunk = (added["stream, 256 chunks"] - added["stream, 32 chunks"]) / (256 - 32)
        fixed = added["stream, 32 chunks"] - 32 * per_chunk
        print(f"ASGI streamed: {fixed / 1e3:.1f} us per request + {per_chunk / 1e3:.2f} us per chunk "
              "(slope between the 32- and 256-chunk streams)")

    asyncio.run(run())
    tel.shutdown()


def _e2e(n: int) -> None:
    import httpx

    from otel_llm.models import build_tiny_model
    from otel_llm.server import create_app, run_in_thread
    from otel_llm.testing import Telemetry

    tel = Telemetry()
    model, tok = build_tiny_model()
    servers = {
        inst: run_in_thread(create_app(model, tok, instrument=inst, torch_threads=1,
                                       tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider))
        for inst in (False, True)
    }
    body = {"prompt": "Once upon a time", "max_tokens": 32, "temperature": 0, "stream": True}
    times: dict[bool, list[float]] = {False: [], True: []}
    try:
        with httpx.Client(timeout=30) as client:
            for i in range(n + 5):
                for inst in ((False, True) if i % 2 else (True, False)):
                    t0 = time.perf_counter()
                    with client.stream("POST", servers[inst].url + "/v1/completions", json=body) as r:
                        for _ in r.iter_bytes():
                            pass
                    if i >= 5:
                        times[inst].append(time.perf_counter() - t0)
                tel.clear()
    finally:
        for s in servers.values():
            s.stop()
        tel.shutdown()
    b, s = statistics.median(times[False]), statistics.median(times[True])
    print(f"E2E  streamed 32-token request  bare {b * 1e3:7.2f} ms  instrumented {s * 1e3:7.2f} ms  "
          f"added {(s - b) * 1e3:+.2f} ms ({(s / b - 1) * 100:+.1f}%)  (median of {len(times[False])}; "
          "includes the model, so noisy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="ASGI iterations per variant")
    parser.add_argument("--e2e", type=int, default=60, help="end-to-end requests per variant (0 = skip)")
    args = parser.parse_args()
    _asgi(args.n)
    if args.e2e:
        _e2e(args.e2e)


if __name__ == "__main__":
    main()
