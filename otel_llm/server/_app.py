"""``create_app()``: the reference OpenAI-compatible server (Starlette).

Routes: ``POST /v1/completions`` and ``/v1/chat/completions`` (JSON, or SSE
with ``"stream": true`` -- ``data: {...}`` events then ``data: [DONE]``),
``GET /v1/models``, ``/health``, ``/metrics`` (Prometheus text).

Who records what -- exactly one set of ``gen_ai.server.*`` points per request:

* the :class:`~otel_llm.instrumentation.openai_server.OpenAIServerMiddleware`
  (the SERVER span) owns ``gen_ai.server.request.duration``,
  ``time_to_first_token``, ``time_per_output_token``, token usage and the
  per-gap histogram, measured where the client sees them (queueing included,
  as vLLM measures TTFT from arrival);
* the generation engine owns the stage view: ``queue`` / ``prefill`` /
  ``decode`` child spans and ``otel_llm.server.*`` histograms, running /
  waiting counters and the simulated KV-cache gauge;
* a ``TransformersInstrumentor`` active in the process adds its ``generate()``
  span under the SERVER span, but records no metrics for these requests
  (:func:`~otel_llm.instrumentation._genai.metrics_recorded_by_caller`).

Errors follow OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``:
400 malformed JSON / bad parameters (the SERVER span is marked ERROR with the
reason), 404 unknown model, 429 queue full (``Retry-After``), 503 shutting
down, 500 generation failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from otel_llm import __version__
from otel_llm import semconv as sc
from otel_llm.instrumentation._genai import GenAIInstruments
from otel_llm.server._engine import EngineStopped, GenerationEngine, GenerationJob, QueueFull
from otel_llm.server._faults import SlowdownController
from otel_llm.server._prometheus import PrometheusEndpoint

__all__ = ["DEFAULT_MAX_TOKENS", "create_app"]

DEFAULT_MAX_TOKENS = 16
_MAX_BODY = 1 << 20


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None,
                 etype: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.param, self.status, self.code, self.etype = param, status, code, etype


def _error(status: int, message: str, etype: str, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": etype, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _mark_span(message: str) -> None:
    """The app decides the request failed: the current (SERVER) span gets ERROR with the reason."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_status(Status(StatusCode.ERROR, message))


def _number(req: dict, key: str, default: float, lo: float, hi: float, *, lo_open: bool = False) -> float:
    value = req.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadRequest(f"'{key}' must be a number, got {type(value).__name__}", key)
    if value > hi or value < lo or (lo_open and value == lo):
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise _BadRequest(f"'{key}' must be within {bound}, got {value}", key)
    return float(value)


class _Server:
    def __init__(self, model, tokenizer, *, model_name: str, max_tokens_limit: int, force_include_usage: bool,
                 engine: GenerationEngine, seed: int, prometheus: PrometheusEndpoint) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.max_tokens_limit = max_tokens_limit
        self.force_include_usage = force_include_usage
        self.engine = engine
        self.prometheus = prometheus
        self._seeds = itertools.count(seed)
        self.created = int(time.time())
        self.context_length = getattr(getattr(model, "config", None), "max_position_embeddings", None)

    # -- parsing ------------------------------------------------------------
    async def _json(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise _BadRequest(f"request body is larger than {_MAX_BODY} bytes")
        try:
            req = json.loads(body)
        except ValueError as exc:
            raise _BadRequest(f"request body is not valid JSON ({exc}); send a JSON object") from None
        if not isinstance(req, dict):
            raise _BadRequest("request body must be a JSON object")
        return req

    def _params(self, req: dict[str, Any]) -> dict[str, Any]:
        model = req.get("model", self.model_name)
        if not isinstance(model, str):
            raise _BadRequest("'model' must be a string", "model")
        if model != self.model_name:
            raise _BadRequest(f"The model '{model}' does not exist; this server serves '{self.model_name}'",
                              "model", 404, "model_not_found", "not_found_error")
        max_tokens = req.get("max_completion_tokens", req.get("max_tokens", DEFAULT_MAX_TOKENS))
        if max_tokens is None:
            max_tokens = DEFAULT_MAX_TOKENS
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= self.max_tokens_limit:
            raise _BadRequest(f"'max_tokens' must be an integer within [1, {self.max_tokens_limit}], got {max_tokens!r}",
                              "max_tokens")
        n = req.get("n", 1)
        if n not in (1, None):
            raise _BadRequest("only n=1 is supported by the reference server", "n")
        seed = req.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise _BadRequest("'seed' must be an integer", "seed")
        stream = req.get("stream", False)
        if not isinstance(stream, bool):
            raise _BadRequest("'stream' must be a boolean", "stream")
        opts = req.get("stream_options") or {}
        if not isinstance(opts, dict):
            raise _BadRequest("'stream_options' must be an object", "stream_options")
        return {
            "max_tokens": max_tokens,
            "temperature": _number(req, "temperature", 1.0, 0.0, 2.0),
            "top_p": _number(req, "top_p", 1.0, 0.0, 1.0, lo_open=True),
            "seed": seed if seed is not None else next(self._seeds),
            "stream": stream,
            "include_usage": bool(opts.get("include_usage")) or self.force_include_usage,
        }

    def _chat_ids(self, req: dict[str, Any]) -> list[int]:
        messages = req.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _BadRequest("'messages' must be a non-empty array of {role, content} objects", "messages")
        clean = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise _BadRequest(f"messages[{i}] must be an object with a string 'role'", "messages")
            content = m.get("content", "")
            if isinstance(content, list):  # content parts: keep the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            if not isinstance(content, str):
                raise _BadRequest(f"messages[{i}].content must be a string or an array of text parts", "messages")
            clean.append({"role": m["role"], "content": content})
        if getattr(self.tokenizer, "chat_template", None):
            enc = self.tokenizer.apply_chat_template(clean, add_generation_prompt=True, tokenize=True)
            ids = enc["input_ids"] if hasattr(enc, "keys") else enc
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in clean) + "assistant: "
            ids = self.tokenizer(text)["input_ids"]
        return list(ids)

    def _completion_ids(self, req: dict[str, Any]) -> list[int]:
        prompt = req.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str):
            ids = self.tokenizer(prompt)["input_ids"]
            if not ids and self.tokenizer.bos_token_id is not None:
                ids = [self.tokenizer.bos_token_id]
            return list(ids)
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            vocab = len(self.tokenizer)
            if any(t < 0 or t >= vocab for t in prompt):
                raise _BadRequest(f"token ids in 'prompt' must be within [0, {vocab})", "prompt")
            return list(prompt)
        raise _BadRequest("'prompt' must be a string, a one-string array, or an array of token ids", "prompt")

    # -- endpoints ------------------------------------------------------------
    async def chat(self, request: Request) -> Response:
        return await self._serve(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, chat=False)

    async def _serve(self, request: Request, *, chat: bool) -> Response:
        try:
            req = await self._json(request)
            params = self._params(req)
            ids = self._chat_ids(req) if chat else self._completion_ids(req)
            limit = self.context_length
            if limit and len(ids) + params["max_tokens"] > limit:
                raise _BadRequest(
                    f"the prompt ({len(ids)} tokens) plus max_tokens ({params['max_tokens']}) exceeds the model's "
                    f"context length ({limit}); shorten the prompt or lower max_tokens",
                    "messages" if chat else "prompt", code="context_length_exceeded",
                )
        except _BadRequest as exc:
            _mark_span(str(exc))
            return _error(exc.status, str(exc), exc.etype, exc.param, exc.code)
        job = GenerationJob(
            input_ids=ids, max_new_tokens=params["max_tokens"], temperature=params["temperature"],
            top_p=params["top_p"], seed=params["seed"], loop=asyncio.get_running_loop(),
            span=trace.get_current_span(),
        )
        try:
            self.engine.submit(job)
        except QueueFull as exc:
            _mark_span(str(exc))
            return _error(429, str(exc), "rate_limit_error", code="queue_full", headers={"Retry-After": "1"})
        except EngineStopped as exc:
            return _error(503, str(exc), "server_error", code="shutting_down")
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        if params["stream"]:
            return StreamingResponse(self._sse(job, rid, chat, params["include_usage"]), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await self._whole(job, rid, chat)

    async def _whole(self, job: GenerationJob, rid: str, chat: bool) -> Response:
        parts: list[str] = []
        try:
            while True:
                kind, *rest = await job.events.get()
                if kind == "token":
                    parts.append(rest[0])
                elif kind == "error":
                    return self._failure(rest[0])
                else:
                    reason, usage = rest
                    break
        finally:
            job.cancel()  # no-op when done; frees the worker when this handler is cancelled
        text = "".join(parts)
        choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return JSONResponse({
            "id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": self.model_name, "choices": [choice], "usage": usage,
        })

    def _failure(self, exc: BaseException) -> Response:
        if isinstance(exc, EngineStopped):
            return _error(503, str(exc), "server_error", code="shutting_down")
        _mark_span(f"generation failed: {type(exc).__name__}: {exc}")
        return _error(500, f"generation failed: {type(exc).__name__}: {exc}", "server_error")

    async def _sse(self, job: GenerationJob, rid: str, chat: bool, include_usage: bool):
        created = int(time.time())
        obj = "chat.completion.chunk" if chat else "text_completion"
        base = {"id": rid, "object": obj, "created": created, "model": self.model_name}

        def event(choices: list, usage: dict | None = None) -> bytes:
            body = dict(base, choices=choices)
            if usage is not None:
                body["usage"] = usage
            return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

        try:
            if chat:
                yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            while True:
                kind, *rest = await job.events.get()
                if kind == "token":
                    if not rest[0]:
                        continue
                    delta = {"index": 0, "delta": {"content": rest[0]}, "finish_reason": None} if chat else \
                        {"index": 0, "text": rest[0], "finish_reason": None, "logprobs": None}
                    yield event([delta])
                elif kind == "error":
                    exc = rest[0]
                    _mark_span(f"generation failed: {type(exc).__name__}: {exc}")
                    err = {"error": {"message": f"generation failed: {type(exc).__name__}: {exc}",
                                     "type": "server_error", "param": None, "code": None}}
                    yield b"data: " + json.dumps(err).encode() + b"\n\n"
                    break
                else:
                    reason, usage = rest
                    last = {"index": 0, "delta": {}, "finish_reason": reason} if chat else \
                        {"index": 0, "text": "", "finish_reason": reason, "logprobs": None}
                    yield event([last])
                    if include_usage:
                        yield event([], usage)
                    break
            yield b"data: [DONE]\n\n"
        finally:
            job.cancel()  # client gone mid-stream: the worker stops at its next step

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": self.created, "owned_by": "otel-llm"}]})

    async def health(self, request: Request) -> Response:
        if not self.engine.alive:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok", "model": self.model_name, "waiting": self.engine.waiting,
                             "running": self.engine.running})

    async def metrics(self, request: Request) -> Response:
        body, content_type = self.prometheus.render()
        return Response(body, media_type=content_type)


def create_app(
    model=None,
    tokenizer=None,
    *,
    model_name: str | None = None,
    instrument: bool = True,
    max_queue: int | None = None,
    workers: int = 1,
    kv_capacity_tokens: int = 8192,
    max_tokens_limit: int = 512,
    force_include_usage: bool = True,
    seed: int = 0,
    faults: SlowdownController | None = None,
    tracer_provider=None,
    meter_provider=None,
    capture_content: bool | None = None,
    torch_threads: int | None = None,
    replica: str | None = None,
) -> Starlette:
    """Build the reference server around ``(model, tokenizer)`` (default: the seeded tiny model, built offline).

    * ``model_name`` -- the id clients must send (default: the tiny model's name or ``model.name_or_path``);
    * ``instrument`` -- add the OpenAI-server middleware (SERVER spans, ``gen_ai.server.*``);
    * ``max_queue`` (``OTEL_LLM_SERVER_MAX_QUEUE``, default 64) -- waiting requests before 429;
      ``workers`` -- generation threads (1 keeps seeded sampling reproducible);
    * ``kv_capacity_tokens`` -- denominator of the simulated KV-cache gauge;
    * ``force_include_usage`` -- always end a stream with a ``usage`` chunk (as vLLM's
      ``--enable-force-include-usage``), so token counts are exact without ``stream_options``;
    * ``seed`` -- base of per-request sampling seeds (a request's own ``seed`` wins);
    * ``faults`` -- a :class:`SlowdownController` (also at ``app.state.faults``);
    * ``tracer_provider`` / ``meter_provider`` -- default: the global ones. ``/metrics``
      exposes the meter provider's metrics through a Prometheus reader added to it;
    * ``torch_threads`` -- ``torch.set_num_threads`` for the process (process-wide!). A tiny
      model is ~40x faster with 1 thread than with an oversubscribed pool on a busy host;
    * ``replica`` -- ``otel_llm.server.replica`` on the engine's metrics, telling apart several
      servers on one meter provider (default ``"0"``, ``"1"``... in creation order).
    """
    from otel_llm import environment_variables as ev
    from otel_llm._env import env_int

    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    if model is None:
        from otel_llm.models import TINY_MODEL_NAME, build_tiny_model

        model, tokenizer = build_tiny_model(seed=seed)
        model_name = model_name or TINY_MODEL_NAME
    elif tokenizer is None:
        raise ValueError("pass the tokenizer together with the model")
    model_name = model_name or getattr(model, "name_or_path", None) or "model"
    queue_size = env_int(ev.OTEL_LLM_SERVER_MAX_QUEUE, max_queue, 64, minimum=1)
    assert queue_size is not None
    prometheus = PrometheusEndpoint(meter_provider)
    provider = prometheus.meter_provider
    meter = metrics.get_meter("otel_llm.server", __version__, meter_provider=provider, schema_url=sc.SCHEMA_URL)
    tracer = trace.get_tracer("otel_llm.server", __version__, tracer_provider=tracer_provider, schema_url=sc.SCHEMA_URL)
    faults = faults or SlowdownController(seed=seed)
    engine = GenerationEngine(
        model, tokenizer, model_name=model_name, tracer=tracer, instruments=GenAIInstruments(meter), meter=meter,
        max_queue=queue_size, workers=workers, kv_capacity_tokens=kv_capacity_tokens, faults=faults,
        replica=replica,
    )
    server = _Server(model, tokenizer, model_name=model_name, max_tokens_limit=max_tokens_limit,
                     force_include_usage=force_include_usage, engine=engine, seed=seed, prometheus=prometheus)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        engine.start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat, methods=["POST"]),
            Route("/v1/completions", server.completions, methods=["POST"]),
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/health", server.health, methods=["GET"]),
            Route("/metrics", server.metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    if instrument:
        from otel_llm.instrumentation.openai_server import OpenAIServerInstrumentor

        OpenAIServerInstrumentor.instrument_app(
            app, tracer_provider=tracer_provider, meter_provider=provider, provider_name=sc.PROVIDER_TRANSFORMERS,
            capture_content=capture_content,
        )
    app.state.engine = engine
    app.state.faults = faults
    app.state.model_name = model_name
    app.state.meter_provider = provider
    app.state.prometheus = prometheus
    return app
