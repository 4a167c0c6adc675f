"""Incremental, allocation-light reading of OpenAI-style SSE streams as they pass.

The middleware never buffers or delays a chunk: it hands each ``body`` bytes
object to :meth:`SSEScanner.feed` *after* forwarding it, and the scanner
keeps only the unfinished tail of the last event. Per event it does a few
``bytes.find`` calls; it runs ``json.loads`` only on the rare events that
matter (the first one, for the response model and id; those with a non-null
``finish_reason`` or ``usage``) -- or on every event when content capture is
on, because the text is then needed.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SSEScanner", "nonempty_field", "non_null_field"]

_DATA = b"data:"
_DONE = b"[DONE]"
_FR_NULL = b'"finish_reason":null'
_FR_NULL_SP = b'"finish_reason": null'
_CONTENT_KEYS = (b'"content"', b'"text"', b'"tool_calls"', b'"reasoning_content"', b'"function_call"')


def _value_start(event: bytes, key: bytes) -> int:
    """Index of the first byte of ``key``'s JSON value in ``event``, or -1."""
    i = event.find(key)
    if i < 0:
        return -1
    i += len(key)
    n = len(event)
    while i < n and event[i] in b" \t:":
        i += 1
    return i


def non_null_field(event: bytes, key: bytes) -> bool:
    """True when ``key`` is present with a value other than ``null``."""
    i = _value_start(event, key)
    return i >= 0 and i < len(event) and not event.startswith(b"null", i)


def nonempty_field(event: bytes) -> bool:
    """True when a delta carries output: non-empty text/content, or tool / function calls."""
    # fast path, compact JSON (vLLM, SGLang, ours): `"content":"x` / `"text":"x`
    for compact in (b'"content":"', b'"text":"'):
        i = event.find(compact)
        if i >= 0:
            j = i + len(compact)
            if j < len(event) and event[j] != 0x22:
                return True
    for key in _CONTENT_KEYS:
        i = _value_start(event, key)
        if i < 0 or i >= len(event):
            continue
        c = event[i]
        if c == 0x22:  # '"': a string value; non-empty unless the next byte closes it
            if i + 1 < len(event) and event[i + 1] != 0x22:
                return True
        elif c in b"[{" and not event.startswith(b"[]", i):
            return True
    return False


class SSEScanner:
    """Parse ``data:`` events incrementally; remember what the span and metrics need.

    ``on_token(n)`` is called once per event that carries output (with the
    number of such events in this body message, so the caller can stamp them
    with one timestamp).
    """

    __slots__ = (
        "_tail", "capture", "chunks", "content_chunks", "done", "finish_reasons", "first", "response_id",
        "response_model", "texts", "usage",
    )

    def __init__(self, capture: bool = False) -> None:
        self._tail = b""
        self.capture = capture
        self.chunks = 0
        self.content_chunks = 0
        self.done = False
        self.first = True
        self.finish_reasons: dict[int, str] = {}
        self.usage: dict[str, Any] | None = None
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.texts: dict[int, list[str]] = {}

    def feed(self, data: bytes) -> int:
        """Consume one body message; return how many output-carrying events completed in it."""
        hold = b""
        if b"\r" in data or self._tail.endswith(b"\r"):
            # CRLF line ends: normalise, keeping a trailing CR back in case its LF is in the next message
            buf = self._tail + data
            if buf.endswith(b"\r"):
                buf, hold = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n")
        elif not self._tail:
            end = data.find(b"\n\n")
            if end == len(data) - 2:  # fast path: exactly one whole event (what servers send per chunk)
                return self._event(data[:end]) if end else 0
            buf = data
        else:
            buf = self._tail + data
        start = 0
        tokens = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            event = buf[start:end]
            start = end + 2
            if event:
                tokens += self._event(event)
        self._tail = (buf[start:] if start < len(buf) else b"") + hold
        if len(self._tail) > 1 << 20:  # a malformed stream must not grow memory without bound
            self._tail = b""
        return tokens

    def _event(self, event: bytes) -> int:
        if event.startswith(b"data: ") and b"\n" not in event:
            payload = event[6:]
        else:
            parts = [ln[5:].lstrip(b" ") for ln in event.split(b"\n") if ln.startswith(_DATA)]
            if not parts:
                return 0  # comment / event: / id: lines only
            payload = b"\n".join(parts)
        if payload == _DONE:
            self.done = True
            return 0
        self.chunks += 1
        has_output = nonempty_field(payload)
        if has_output:
            self.content_chunks += 1
        if self.first or self.capture:
            self._parse(payload)
        else:
            # the common chunk says "finish_reason":null and has no usage: two finds, no JSON parsing
            i = payload.find(b'"finish_reason"')
            finished = (i >= 0 and not payload.startswith(_FR_NULL, i) and not payload.startswith(_FR_NULL_SP, i)
                        and non_null_field(payload, b'"finish_reason"'))
            if finished or (b'"usage"' in payload and non_null_field(payload, b'"usage"')):
                self._parse(payload)
        return 1 if has_output else 0

    def _parse(self, payload: bytes) -> None:
        try:
            obj = json.loads(payload)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        if self.first:
            self.first = False
            model = obj.get("model")
            self.response_model = model if isinstance(model, str) else None
            rid = obj.get("id")
            self.response_id = rid if isinstance(rid, str) else None
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            idx = choice.get("index", 0)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                self.finish_reasons[idx] = reason
            if self.capture:
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str) and text:
                    self.texts.setdefault(idx, []).append(text)
