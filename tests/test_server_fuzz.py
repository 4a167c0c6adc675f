"""Reliability: the reference server (with the middleware on) under random and malformed input.

Property-based, bounded, loopback only. Whatever arrives, the server answers with a 2xx or a 4xx
(never a 5xx from our code), every request span ends, and it keeps serving real requests after.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_llm.testing import Telemetry

PATHS = ["/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health"]

_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20)
_json = st.recursive(_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                                                       max_size=4), max_leaves=12)
# Bodies shaped like requests, with every field free to be of the wrong type or out of range.
_request_like = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["otel-llm-tiny", "", "nope"]) | _scalars,
        "prompt": st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=3) | _scalars,
        "messages": st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "x"]) | _scalars,
                                                    "content": st.text(max_size=30) | _scalars}), max_size=3)
        | _scalars,
        "max_tokens": st.integers(-5, 6) | _scalars,
        "temperature": st.floats(-1, 3) | _scalars,
        "top_p": st.floats(-1, 2) | _scalars,
        "stream": st.booleans() | _scalars,
        "n": st.integers(-1, 3) | _scalars,
        "seed": st.integers(-(2**70), 2**70) | _scalars,
    },
)
_body = (
    _request_like.map(lambda d: json.dumps(d, allow_nan=True).encode())
    | _json.map(lambda v: json.dumps(v, allow_nan=True).encode())
    | st.binary(max_size=200)
)


@pytest.fixture(scope="module")
def server(tiny_model):
    from otel_llm.server import create_app, run_in_thread

    tel = Telemetry()
    model, tok = tiny_model
    app = create_app(model, tok, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider,
                     torch_threads=1)
    handle = run_in_thread(app)
    try:
        yield handle, tel
    finally:
        handle.stop()
        tel.shutdown()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), body=_body,
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]))
def test_random_input_never_yields_a_server_error(server, path, body, content_type):
    handle, _ = server
    headers = {"content-type": content_type} if content_type else {}
    with httpx.Client(timeout=30) as client:
        r = client.post(handle.url + path, content=body, headers=headers)
        # Streams are read to the end: a 200 stream must close cleanly too.
        assert r.status_code < 500 or r.status_code == 503, (path, body[:80], r.status_code, r.text[:200])
        if r.status_code >= 400 and path in ("/v1/completions", "/v1/chat/completions"):
            err = r.json()
            assert "error" in err and err["error"].get("message"), r.text[:200]


def test_server_still_serves_and_every_span_ended_after_the_fuzz(server):
    handle, tel = server
    with httpx.Client(timeout=30) as client:
        r = client.post(handle.url + "/v1/chat/completions",
                        json={"model": "otel-llm-tiny", "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": 4})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    spans = tel.spans()
    assert spans, "requests produced spans"
    assert all(s.end_time is not None for s in spans)
