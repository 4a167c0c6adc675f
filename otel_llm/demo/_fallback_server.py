"""FALLBACK ONLY: a minimal OpenAI-compatible streaming server for the demo.

Used only when the reference server (``otel_llm.server``) is not importable.
It serves the real tiny model, one worker thread per (simulated) GPU, routes
each request to the least-loaded healthy GPU, applies the GPU's slowdown factor
to every decode step, and emits a SERVER span with queue / prefill / decode
children and the GenAI attributes by hand (no instrumentor).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from typing import Any

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import semconv
from otel_llm._gpu import current_gpu_uuids, use_gpus

_BASE_TOKEN_S = 0.004  # simulated accelerator time per decode step


class FallbackLLMServer:
    def __init__(self, model: Any, tokenizer: Any, gpus: Any, tracer_provider: Any, meter_provider: Any,
                 *, model_name: str) -> None:
        self.model, self.tokenizer, self.gpus = model, tokenizer, gpus
        self.model_name = model_name
        self.tracer = tracer_provider.get_tracer("otel_llm.demo.fallback_server")
        meter = meter_provider.get_meter("otel_llm.demo.fallback_server")
        self._ttft = meter.create_histogram(semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, unit="s")
        self._dur = meter.create_histogram(semconv.GEN_AI_SERVER_REQUEST_DURATION, unit="s")
        self._queues: dict[str, queue.Queue] = {}
        self._load: dict[str, int] = {}
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._stop = threading.Event()
        for u in gpus.uuids:
            q: queue.Queue = queue.Queue(maxsize=512)
            self._queues[u] = q
            self._load[u] = 0
            threading.Thread(target=self._worker, args=(u, q), daemon=True, name=f"demo-gpu-{u[:12]}").start()

    def close(self) -> None:
        self._stop.set()
        for q in self._queues.values():
            q.put(None)

    def _pick(self) -> str | None:
        with self._lock:
            alive = [u for u in self._queues if not self.gpus.is_lost(u)]
            if not alive:
                return None
            u = min(alive, key=lambda g: self._load[g])
            self._load[u] += 1
            return u

    def _worker(self, gpu: str, q: queue.Queue) -> None:
        import torch

        while not self._stop.is_set():
            job = q.get()
            if job is None:
                return
            ids, max_tokens, emit, t_enq = job
            try:
                emit(("start", time.perf_counter() - t_enq))
                past, nxt = None, ids
                with torch.no_grad():
                    for _ in range(max_tokens):
                        if self.gpus.is_lost(gpu):
                            raise RuntimeError("GPU lost (XID 79: fallen off the bus)")
                        t = time.perf_counter()
                        with self._model_lock:
                            out = self.model(input_ids=nxt, past_key_values=past, use_cache=True)
                        past = out.past_key_values
                        nxt = out.logits[:, -1:].argmax(-1)
                        step = time.perf_counter() - t
                        factor = self.gpus.slowdown_factor(gpu)
                        extra = _BASE_TOKEN_S * factor + step * (factor - 1.0)
                        time.sleep(extra)
                        self.gpus.add_busy(gpu, step + extra)
                        tok = int(nxt[0, 0])
                        emit(("token", self.tokenizer.decode([tok])))
                        if tok == self.tokenizer.eos_token_id:
                            break
                emit(("done", None))
            except Exception as exc:
                emit(("error", exc))
            finally:
                with self._lock:
                    self._load[gpu] -= 1

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def chat(request):
            ctx = propagate.extract(dict(request.headers))
            try:
                body = await request.json()
                messages = body["messages"]
                max_tokens = int(body.get("max_tokens") or 16)
            except (ValueError, KeyError, TypeError):
                return JSONResponse({"error": {"message": "expected a JSON body with messages"}}, status_code=400)
            gpu = self._pick()
            if gpu is None:
                return JSONResponse({"error": {"message": "no healthy GPU"}}, status_code=503)
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = self.tokenizer(text, return_tensors="pt").input_ids
            span = self.tracer.start_span(f"chat {self.model_name}", context=ctx, kind=SpanKind.SERVER)
            with use_gpus([gpu]):
                span.set_attribute(semconv.OTEL_LLM_GPU_UUIDS, list(current_gpu_uuids()))
            span.set_attributes({
                semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_CHAT,
                semconv.GEN_AI_PROVIDER_NAME: semconv.PROVIDER_TRANSFORMERS,
                semconv.GEN_AI_REQUEST_MODEL: self.model_name,
                semconv.GEN_AI_REQUEST_MAX_TOKENS: max_tokens,
                semconv.GEN_AI_USAGE_INPUT_TOKENS: int(ids.shape[1]),
            })
            loop = asyncio.get_running_loop()
            aq: asyncio.Queue = asyncio.Queue()

            def emit(item: Any) -> None:
                loop.call_soon_threadsafe(aq.put_nowait, (time.perf_counter(), item))

            t0 = time.perf_counter()
            self._queues[gpu].put((ids, max_tokens, emit, t0))
            return StreamingResponse(self._stream(span, aq, t0, gpu), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    async def _stream(self, span: Any, aq: asyncio.Queue, t0: float, gpu: str):
        rid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        n = 0
        first: float | None = None
        t_start = t0
        queue_s = 0.0
        error: BaseException | None = None
        try:
            while True:
                t, (kind, val) = await aq.get()
                if kind == "start":
                    queue_s, t_start = val, t
                elif kind == "token":
                    if first is None:
                        first = t
                    n += 1
                    chunk = {"id": rid, "object": "chat.completion.chunk", "model": self.model_name,
                             "choices": [{"index": 0, "delta": {"content": val}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                elif kind == "error":
                    error = val
                    yield f"data: {json.dumps({'error': {'message': str(val)}})}\n\n"
                    break
                else:
                    break
            yield "data: [DONE]\n\n"
        finally:
            end = time.perf_counter()
            wall = time.time()
            to_ns = lambda pc: int((wall - (end - pc)) * 1e9)  # noqa: E731
            for name, a, b, stage in (("queue", t0, t_start, semconv.STAGE_QUEUE),
                                      ("prefill", t_start, first or end, semconv.STAGE_PREFILL),
                                      ("decode", first or end, end, semconv.STAGE_DECODE)):
                from opentelemetry import trace

                child = self.tracer.start_span(name, context=trace.set_span_in_context(span), start_time=to_ns(a),
                                               attributes={semconv.OTEL_LLM_STAGE: stage,
                                                           semconv.OTEL_LLM_GPU_UUIDS: [gpu]})
                child.end(end_time=to_ns(b))
            attrs = {semconv.GEN_AI_REQUEST_MODEL: self.model_name}
            span.set_attribute(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, n)
            span.set_attribute(semconv.GEN_AI_RESPONSE_ID, rid)
            span.set_attribute(semconv.OTEL_LLM_QUEUE_TIME, queue_s)
            if first is not None:
                span.set_attribute(semconv.OTEL_LLM_TTFT, first - t0)
                self._ttft.record(first - t0, attrs)
                if n > 1:
                    span.set_attribute(semconv.OTEL_LLM_TPOT, (end - first) / (n - 1))
            if error is not None:
                span.set_attribute(semconv.ERROR_TYPE, type(error).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(error)))
            self._dur.record(end - t0, attrs)
            span.end()
