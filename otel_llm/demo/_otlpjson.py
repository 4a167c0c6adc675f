"""SDK spans -> OTLP/JSON lines (the OpenTelemetry Collector file-exporter format).

Each line is one ``ExportTraceServiceRequest`` encoded with the official
encoders (``opentelemetry.exporter.otlp.proto.common``) and protobuf's JSON
mapping, then fixed up where OTLP/JSON departs from the proto3 JSON mapping:
trace and span ids are **hex** strings (not base64), enums are integers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex(b64: str) -> str:
    return base64.b64decode(b64).hex() if b64 else ""


def _fix_ids(obj: dict[str, Any]) -> None:
    for rs in obj.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for k in _ID_KEYS:
                    if k in span:
                        span[k] = _hex(span[k])
                for link in span.get("links", []):
                    for k in ("traceId", "spanId"):
                        if k in link:
                            link[k] = _hex(link[k])


def encode_request(spans: Sequence[Any]) -> dict[str, Any]:
    """One ExportTraceServiceRequest (as an OTLP/JSON dict) for ``spans`` (SDK ReadableSpans)."""
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    msg = encode_spans(list(spans))
    obj = json_format.MessageToDict(msg, use_integers_for_enums=True)
    _fix_ids(obj)
    return obj


def otlp_json_lines(spans: Iterable[Any], *, batch: int = 256) -> Iterator[str]:
    """Yield one JSON line per batch of spans."""
    buf: list[Any] = []
    for s in spans:
        buf.append(s)
        if len(buf) >= batch:
            yield json.dumps(encode_request(buf), separators=(",", ":"))
            buf = []
    if buf:
        yield json.dumps(encode_request(buf), separators=(",", ":"))


def write_otlp_json(path: Path, spans: Iterable[Any], *, batch: int = 256) -> int:
    """Write ``spans`` to ``path`` in the file-exporter format; returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for line in otlp_json_lines(spans, batch=batch):
            fh.write(line + "\n")
            n += 1
    return n
