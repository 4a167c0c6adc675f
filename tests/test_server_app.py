"""The reference server, for real: the tiny torch model behind uvicorn on a free loopback port, driven by httpx."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_llm import semconv as sc
from otel_llm.models import TINY_MODEL_NAME
from otel_llm.server import create_app, run_in_thread
from otel_llm.testing import Telemetry

CHAT = [{"role": "user", "content": "Tell me about tokens."}]


@pytest.fixture
def make_server(tiny_model):
    started = []

    def make(**kw):
        tel = Telemetry()
        model, tok = tiny_model
        app = create_app(model, tok, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider,
                         torch_threads=1, **kw)
        handle = run_in_thread(app)
        started.append((handle, tel))
        return handle, tel, app

    yield make
    for handle, tel in started:
        handle.stop()
        tel.shutdown()


def _server_spans(tel, n=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = [s for s in tel.spans() if s.kind.name == "SERVER"]
        if len(spans) >= n:
            return spans
        time.sleep(0.01)
    return [s for s in tel.spans() if s.kind.name == "SERVER"]


def _children(tel, parent):
    return {s.name: s for s in tel.spans() if s.parent is not None and s.parent.span_id == parent.context.span_id}


def _total_count(tel, name):
    return sum(p.count for p in tel.points(name))


def test_completion_json_with_stage_spans_and_one_metric_set(make_server):
    handle, tel, _ = make_server()
    r = httpx.post(handle.url + "/v1/completions", json={"model": TINY_MODEL_NAME, "prompt": "Once upon", "max_tokens": 12},
                   timeout=20)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == TINY_MODEL_NAME
    usage = body["usage"]
    assert usage["completion_tokens"] <= 12 and usage["prompt_tokens"] > 0
    assert body["choices"][0]["finish_reason"] in ("stop", "length")

    (span,) = _server_spans(tel)
    assert span.name == f"text_completion {TINY_MODEL_NAME}"
    assert span.attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == usage["completion_tokens"]
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == usage["prompt_tokens"]
    kids = _children(tel, span)
    assert set(kids) == {"queue", "prefill", "decode"}
    for stage, child in kids.items():
        assert child.attributes[sc.OTEL_LLM_STAGE] == stage
        assert child.context.trace_id == span.context.trace_id
    assert kids["queue"].end_time <= kids["prefill"].start_time + 1  # stages follow each other
    assert kids["prefill"].end_time == kids["decode"].start_time
    assert span.attributes[sc.OTEL_LLM_PREFILL_TIME] > 0
    assert _total_count(tel, sc.GEN_AI_SERVER_REQUEST_DURATION) == 1
    assert _total_count(tel, sc.OTEL_LLM_SERVER_QUEUE_DURATION) == 1


def test_streaming_chat_sse_format_and_token_timing(make_server):
    handle, tel, _ = make_server()
    events = []
    with httpx.stream("POST", handle.url + "/v1/chat/completions", timeout=20,
                      json={"model": TINY_MODEL_NAME, "messages": CHAT, "max_tokens": 16, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line:
                assert line.startswith("data: ")
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage = chunks[-1]["usage"]  # force_include_usage: exact counts even without stream_options
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish and finish[0] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text

    (span,) = _server_spans(tel)
    a = span.attributes
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == usage["completion_tokens"] and a[sc.OTEL_LLM_TOKEN_COUNT_SOURCE] == "usage"
    assert a[sc.OTEL_LLM_TTFT] > 0 and sc.ERROR_TYPE not in a
    assert _total_count(tel, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN) == 1


def test_concurrent_requests_queue_and_later_ones_wait(make_server):
    handle, tel, app = make_server(workers=1)
    app.state.faults.set(decode_delay_per_token_s=0.004)  # ~64 ms per request: queueing is visible

    async def burst():
        async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
            reqs = [client.post("/v1/completions", json={"prompt": f"p{i}", "max_tokens": 16, "temperature": 0})
                    for i in range(4)]
            return await asyncio.gather(*reqs)

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 4
    spans = _server_spans(tel, 4)
    waits = sorted(s.attributes[sc.OTEL_LLM_QUEUE_TIME] for s in spans)
    one_generation = min(s.attributes[sc.OTEL_LLM_DECODE_TIME] for s in spans)
    # one worker: the last request waited for (at least most of) three generations
    assert waits[-1] > 2 * one_generation
    assert waits[-1] > waits[0]


def test_client_disconnect_mid_stream_frees_the_worker(make_server):
    handle, tel, app = make_server(workers=1)
    app.state.faults.set(decode_delay_per_token_s=0.02)  # 200 tokens would take 4 s
    with httpx.stream("POST", handle.url + "/v1/completions", timeout=20,
                      json={"prompt": "long", "max_tokens": 200, "stream": True, "temperature": 0}) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 6:
                break
    t0 = time.monotonic()
    (span,) = _server_spans(tel)
    assert span.attributes[sc.OTEL_LLM_CLIENT_DISCONNECTED] is True
    assert span.attributes[sc.ERROR_TYPE] == "client_disconnected"
    deadline = time.monotonic() + 2
    while app.state.engine.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.engine.running == 0  # generation stopped at the next step, not after 200 tokens
    assert time.monotonic() - t0 < 2
    app.state.faults.reset()
    assert httpx.post(handle.url + "/v1/completions", json={"prompt": "next", "max_tokens": 4}, timeout=10).status_code == 200


def test_malformed_json_unknown_model_and_bad_params(make_server):
    handle, tel, _ = make_server()
    r = httpx.post(handle.url + "/v1/chat/completions", content=b'{"model": ', headers={"content-type": "application/json"})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and "not valid JSON" in err["message"]
    (span,) = _server_spans(tel)
    assert span.attributes[sc.ERROR_TYPE] == "400"
    assert span.status.status_code.name == "ERROR" and "not valid JSON" in span.status.description

    r = httpx.post(handle.url + "/v1/chat/completions", json={"model": "gpt-9", "messages": CHAT})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "temperature": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
    r = httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "max_tokens": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = httpx.post(handle.url + "/v1/chat/completions", json={"messages": "hi"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(handle.url + "/v1/completions", json={"prompt": [5] * 2040, "max_tokens": 64})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    statuses = sorted(s.attributes[sc.ERROR_TYPE] for s in _server_spans(tel, 6))
    assert statuses == ["400", "400", "400", "400", "400", "404"]


def test_full_queue_answers_429(make_server):
    handle, tel, app = make_server(workers=1, max_queue=1)
    app.state.faults.set(prefill_delay_s=0.3)
    engine = app.state.engine

    async def scenario():
        async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
            first = asyncio.create_task(client.post("/v1/completions", json={"prompt": "a", "max_tokens": 2}))
            while engine.running == 0:  # the worker is busy with the first request...
                await asyncio.sleep(0.005)
            # ...so of three more, one fits in the queue (size 1) and two are turned away
            rest = await asyncio.gather(*[client.post("/v1/completions", json={"prompt": "b", "max_tokens": 2})
                                          for _ in range(3)])
            return [await first, *rest]

    responses = asyncio.run(scenario())
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429]
    rejected = [r for r in responses if r.status_code == 429]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "queue_full" for r in rejected)
    assert sorted(s.attributes.get(sc.ERROR_TYPE, "ok") for s in _server_spans(tel, 4)) == ["429", "429", "ok", "ok"]


def test_metrics_endpoint_is_prometheus_text_with_genai_series(make_server):
    handle, _, _ = make_server()
    httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "max_tokens": 4, "stream": True}, timeout=20)
    time.sleep(0.05)
    r = httpx.get(handle.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    names = set(families)
    for expected in ("gen_ai_server_request_duration_seconds", "gen_ai_server_time_to_first_token_seconds",
                     "otel_llm_server_queue_duration_seconds", "otel_llm_server_requests_running",
                     "otel_llm_server_requests_waiting", "otel_llm_server_kv_cache_utilization"):
        assert any(n.startswith(expected) for n in names), (expected, sorted(names))
    ttft = next(f for n, f in families.items() if n.startswith("gen_ai_server_time_to_first_token"))
    assert ttft.type == "histogram"
    buckets = [s for s in ttft.samples if s.name.endswith("_bucket")]
    assert len(buckets) > 5  # LLM-sized buckets from otel-llm's Views, not one default bucket


def test_models_and_health(make_server):
    handle, _, _ = make_server()
    assert httpx.get(handle.url + "/v1/models").json()["data"][0]["id"] == TINY_MODEL_NAME
    assert httpx.get(handle.url + "/health").json()["status"] == "ok"


def test_traceparent_is_continued_through_the_server(make_server):
    handle, tel, _ = make_server()
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "max_tokens": 3},
               headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}, timeout=20)
    (span,) = _server_spans(tel)
    assert format(span.context.trace_id, "032x") == trace_id
    assert {format(s.context.trace_id, "032x") for s in tel.spans()} == {trace_id}


def test_seeded_sampling_is_reproducible_and_varies(make_server):
    handle, _, _ = make_server()

    def text(seed):
        body = {"prompt": "The cat", "max_tokens": 12, "temperature": 1.0, "seed": seed}
        return httpx.post(handle.url + "/v1/completions", json=body, timeout=20).json()["choices"][0]["text"]

    assert text(1) == text(1)
    assert len({text(s) for s in (1, 2, 3)}) > 1


def test_injected_faults_reach_spans_and_errors(make_server):
    handle, tel, app = make_server()
    app.state.faults.set(prefill_delay_s=0.2)
    httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "max_tokens": 3, "stream": True}, timeout=20)
    (span,) = _server_spans(tel)
    assert span.attributes[sc.OTEL_LLM_PREFILL_TIME] >= 0.2 and span.attributes[sc.OTEL_LLM_TTFT] >= 0.2
    tel.clear()
    app.state.faults.set(prefill_delay_s=0.0, fail_rate=1.0)
    r = httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "max_tokens": 3}, timeout=20)
    assert r.status_code == 500 and "InjectedFault" in r.json()["error"]["message"]
    (span,) = _server_spans(tel)
    assert span.attributes[sc.ERROR_TYPE] == "500" and span.status.status_code.name == "ERROR"
    with pytest.raises(ValueError):
        app.state.faults.set(fail_rate=2)


def test_transformers_instrumentor_adds_a_span_but_no_second_metric_set(make_server):
    from otel_llm.instrumentation.transformers import TransformersInstrumentor

    handle, tel, _ = make_server()
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
    try:
        httpx.post(handle.url + "/v1/completions", json={"prompt": "x", "max_tokens": 6, "stream": True}, timeout=20)
        (span,) = _server_spans(tel)
        deadline = time.monotonic() + 2
        while len(_children(tel, span)) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        kids = _children(tel, span)
    finally:
        inst.uninstrument()
    generate = [s for n, s in kids.items() if n not in ("queue", "prefill", "decode")]
    assert len(generate) == 1 and generate[0].attributes[sc.GEN_AI_PROVIDER_NAME] == sc.PROVIDER_TRANSFORMERS
    # exactly one set of gen_ai.server.* points for the request: the middleware's
    for name in (sc.GEN_AI_SERVER_REQUEST_DURATION, sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN):
        assert _total_count(tel, name) == 1, name


def test_two_servers_on_one_meter_provider_keep_their_own_series(tiny_model):
    tel = Telemetry()
    model, tok = tiny_model
    try:
        apps = [create_app(model, tok, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider)
                for _ in range(2)]
        kv = {p.attributes[sc.OTEL_LLM_SERVER_REPLICA]: p.value for p in tel.points(sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION)}
        assert kv == {"0": 0.0, "1": 0.0}  # both engines observed, not only the first registered
        assert [a.state.engine.replica for a in apps] == ["0", "1"]
    finally:
        tel.shutdown()
