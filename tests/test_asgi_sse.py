"""The incremental SSE scanner: same answer however the stream is cut into body messages."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm.instrumentation.openai_server._sse import SSEScanner, non_null_field, nonempty_field


def _stream(pretty: bool, crlf: bool) -> bytes:
    dumps = (lambda o: json.dumps(o)) if pretty else (lambda o: json.dumps(o, separators=(",", ":")))
    base = {"id": "x", "object": "chat.completion.chunk", "model": "m"}
    events = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    events += [dict(base, choices=[{"index": 0, "delta": {"content": t}, "finish_reason": None}]) for t in
               ["Hel", 'lo "quoted"', "", "naïve ☃", "\n\n", "end"]]
    events.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [{"id": "t"}]}, "finish_reason": None}]))
    events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]))
    events.append(dict(base, choices=[], usage={"prompt_tokens": 4, "completion_tokens": 9}))
    nl = b"\r\n" if crlf else b"\n"
    body = b": keep-alive" + nl + nl  # an SSE comment: not an event
    for e in events:
        body += b"data: " + dumps(e).encode() + nl + nl
    return body + b"data: [DONE]" + nl + nl


def _scan(parts, capture=False):
    s = SSEScanner(capture=capture)
    tokens = sum(s.feed(p) for p in parts)
    return s, tokens


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=12), pretty=st.booleans(), crlf=st.booleans())
def test_any_split_gives_the_same_reading(cuts, pretty, crlf):
    data = _stream(pretty, crlf)
    whole, whole_tokens = _scan([data], capture=True)
    points = sorted({c % len(data) for c in cuts} - {0})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    split, split_tokens = _scan(parts, capture=True)
    assert split_tokens == whole_tokens == 6  # 5 non-empty contents + 1 tool call; role-only/empty/finish are not
    assert (split.chunks, split.content_chunks) == (whole.chunks, whole.content_chunks) == (10, 6)
    assert split.finish_reasons == whole.finish_reasons == {0: "tool_calls"}
    assert split.usage == whole.usage == {"prompt_tokens": 4, "completion_tokens": 9}
    assert split.done and split.response_model == "m"
    assert "".join(split.texts[0]) == 'Hello "quoted"naïve ☃\n\nend'


def test_field_probes():
    assert nonempty_field(b'{"delta":{"content":"a"}}') and nonempty_field(b'{"delta": {"content": "a"}}')
    assert not nonempty_field(b'{"delta":{"content":""}}') and not nonempty_field(b'{"delta":{"role":"assistant"}}')
    assert nonempty_field(b'{"text":"x"}') and not nonempty_field(b'{"text": ""}')
    assert not nonempty_field(b'{"delta":{"tool_calls":[]}}')
    assert non_null_field(b'{"finish_reason": "stop"}', b'"finish_reason"')
    assert not non_null_field(b'{"finish_reason":null}', b'"finish_reason"')
    assert not non_null_field(b'{"usage": null}', b'"usage"') and non_null_field(b'{"usage":{}}', b'"usage"')


def test_unbounded_garbage_does_not_grow_memory():
    s = SSEScanner()
    for _ in range(40):
        s.feed(b"x" * 65536)  # no event separator, ever
    assert len(s._tail) <= 1 << 20
