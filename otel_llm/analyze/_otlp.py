"""OTLP payloads to :class:`SpanRecord` s: protobuf and JSON, with clear errors.

* :func:`decode_traces` / :func:`decode_metrics` -- a request body (after
  Content-Encoding) to the opentelemetry-proto message; protobuf via
  ``ParseFromString``, JSON via ``google.protobuf.json_format`` after
  rewriting OTLP/JSON's deviations from the proto3 JSON mapping: trace and
  span ids are *hex* strings (not base64). Unknown JSON fields are ignored, as
  the OTLP specification requires of receivers. Anything malformed raises
  :class:`OtlpDecodeError` with a message that says what is wrong.
* :func:`spans_from_request` -- a decoded ``ExportTraceServiceRequest`` to
  ``SpanRecord`` s.
* :func:`spans_from_json` -- a fast path straight from OTLP/JSON (the
  Collector file-exporter format) to ``SpanRecord`` s, used to read recorded
  traces offline; tests check it agrees with the json_format path.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_llm.processors._spans import (
    KIND_CLIENT,
    KIND_CONSUMER,
    KIND_INTERNAL,
    KIND_PRODUCER,
    KIND_SERVER,
    SpanRecord,
)

_KINDS = {0: KIND_INTERNAL, 1: KIND_INTERNAL, 2: KIND_SERVER, 3: KIND_CLIENT, 4: KIND_PRODUCER, 5: KIND_CONSUMER}
_KIND_NAMES = {
    "SPAN_KIND_UNSPECIFIED": KIND_INTERNAL, "SPAN_KIND_INTERNAL": KIND_INTERNAL, "SPAN_KIND_SERVER": KIND_SERVER,
    "SPAN_KIND_CLIENT": KIND_CLIENT, "SPAN_KIND_PRODUCER": KIND_PRODUCER, "SPAN_KIND_CONSUMER": KIND_CONSUMER,
}
_STATUS_ERROR = 2
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpDecodeError(ValueError):
    """The payload is not a valid OTLP message; the message says why."""


# --------------------------------------------------------------------------- decoding
def decode_traces(body: bytes, json_payload: bool = False) -> ExportTraceServiceRequest:
    return _decode(ExportTraceServiceRequest, body, json_payload)


def decode_metrics(body: bytes, json_payload: bool = False) -> ExportMetricsServiceRequest:
    return _decode(ExportMetricsServiceRequest, body, json_payload)


def _decode(cls, body: bytes, json_payload: bool):
    msg = cls()
    if not json_payload:
        try:
            msg.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise OtlpDecodeError(f"invalid protobuf {cls.__name__}: {exc}") from None
        return msg
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpDecodeError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise OtlpDecodeError("invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise OtlpDecodeError(f"OTLP/JSON body must be an object, got {type(data).__name__}")
    try:
        _hex_ids_to_base64(data)
        json_format.ParseDict(data, msg, ignore_unknown_fields=True)
    except OtlpDecodeError:
        raise
    except (json_format.ParseError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise OtlpDecodeError(f"JSON is not a valid {cls.__name__}: {str(exc)[:300]}") from None
    return msg


def _hex_ids_to_base64(node: Any, depth: int = 0) -> None:
    """OTLP/JSON encodes trace/span ids as hex; proto3 JSON expects base64 bytes."""
    if depth > 64:
        raise OtlpDecodeError("invalid OTLP/JSON: nested too deeply")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = _hex_to_b64(key, value)
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item, depth + 1)


def _hex_to_b64(key: str, value: str) -> str:
    if not value:
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpDecodeError(f"{key} {value[:40]!r} is not hex (OTLP/JSON ids are hex strings, not base64)") from None
    expected = 16 if key.startswith("trace") else 8
    if len(raw) != expected:
        raise OtlpDecodeError(f"{key} {value[:40]!r} must be {expected * 2} hex digits")
    return base64.b64encode(raw).decode()


# --------------------------------------------------------------------------- protobuf -> records
def _any_value(v) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(_any_value(x) for x in v.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def _attributes(kvs) -> dict[str, Any]:
    out = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which is None:
            continue
        if which == "array_value" or which == "kvlist_value":
            out[kv.key] = _any_value(v)
        else:
            out[kv.key] = getattr(v, which)
    return out


def spans_from_request(request: ExportTraceServiceRequest) -> list[SpanRecord]:
    """Every span of a decoded request. Spans without a valid trace or span id are skipped
    (the caller counts ``len(request spans) - len(result)``)."""
    out: list[SpanRecord] = []
    append = out.append
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))
        for ss in rs.scope_spans:
            for sp in ss.spans:
                tid, sid = sp.trace_id, sp.span_id
                if len(tid) != 16 or len(sid) != 8:
                    continue
                parent = sp.parent_span_id
                append(SpanRecord(
                    tid.hex(), sid.hex(), parent.hex() if len(parent) == 8 else None, sp.name, service,
                    sp.start_time_unix_nano / 1e9, sp.end_time_unix_nano / 1e9,
                    _KINDS.get(sp.kind, KIND_INTERNAL), sp.status.code == _STATUS_ERROR,
                    _attributes(sp.attributes), resource,
                ))
    return out


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


# --------------------------------------------------------------------------- JSON fast path
def _json_value(v: Mapping[str, Any]) -> Any:
    for key, value in v.items():
        if key in ("stringValue", "string_value", "boolValue", "bool_value", "doubleValue", "double_value"):
            return value
        if key in ("intValue", "int_value"):
            return int(value)
        if key in ("arrayValue", "array_value"):
            return tuple(_json_value(x) for x in (value or {}).get("values", ()) or ())
        if key in ("kvlistValue", "kvlist_value"):
            return {kv["key"]: _json_value(kv.get("value") or {}) for kv in (value or {}).get("values", ()) or ()}
        if key in ("bytesValue", "bytes_value"):
            return base64.b64decode(value)
    return None


def _json_attributes(kvs: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    out = {}
    for kv in kvs or ():
        value = _json_value(kv.get("value") or {})
        if value is not None:
            out[kv["key"]] = value
    return out


_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def _json_id(value: Any, n: int) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if (_HEX32 if n == 16 else _HEX16).fullmatch(value):
        return value.lower()
    try:  # tolerate proto3-JSON (base64) ids written by generic tools
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == n else None


def spans_from_json(data: Mapping[str, Any]) -> list[SpanRecord]:
    """One OTLP/JSON ``ExportTraceServiceRequest`` object to records (invalid spans skipped).

    Accepts the OTLP/JSON spelling (lowerCamelCase, hex ids, integer enums) and tolerates
    proto field names, enum names and base64 ids that generic tools sometimes write."""
    out: list[SpanRecord] = []
    append = out.append
    attributes = _json_attributes
    ids: dict[Any, str | None] = {}

    def norm(value: Any, n: int) -> str | None:
        got = ids.get(value, "")
        if got == "":
            got = ids[value] = _json_id(value, n) if isinstance(value, str) else None
        return got

    for rs in data.get("resourceSpans") or data.get("resource_spans") or ():
        resource = attributes((rs.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name", "unknown_service"))
        for ss in rs.get("scopeSpans") or rs.get("scope_spans") or rs.get("instrumentationLibrarySpans") or ():
            for sp in ss.get("spans") or ():
                if "traceId" in sp:
                    tid, sid, pid = sp["traceId"], sp.get("spanId"), sp.get("parentSpanId")
                    start, end = sp.get("startTimeUnixNano", 0), sp.get("endTimeUnixNano", 0)
                else:
                    tid, sid, pid = sp.get("trace_id"), sp.get("span_id"), sp.get("parent_span_id")
                    start, end = sp.get("start_time_unix_nano", 0), sp.get("end_time_unix_nano", 0)
                tid = norm(tid, 16)
                sid = _json_id(sid, 8)
                if tid is None or sid is None:
                    continue
                kind = sp.get("kind", 0)
                kind = _KIND_NAMES.get(kind, KIND_INTERNAL) if isinstance(kind, str) else _KINDS.get(kind, KIND_INTERNAL)
                status = sp.get("status")
                code = status.get("code", 0) if status else 0
                append(SpanRecord(
                    tid, sid, norm(pid, 8) if pid else None, sp.get("name", ""), service,
                    int(start) / 1e9, int(end) / 1e9, kind, code == 2 or code == "STATUS_CODE_ERROR",
                    attributes(sp.get("attributes")), resource,
                ))
    return out


def read_otlp_json_lines(lines: Iterable[str | bytes]) -> Iterator[SpanRecord]:
    """Spans from a Collector file-exporter file: one ExportTraceServiceRequest JSON per line.
    Blank lines are skipped; a malformed line raises :class:`OtlpDecodeError` naming its number."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise TypeError(f"expected an object, got {type(data).__name__}")
            yield from spans_from_json(data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise OtlpDecodeError(f"line {number}: not an OTLP/JSON ExportTraceServiceRequest ({exc})") from None


def records_to_json(spans: Iterable[SpanRecord]) -> dict[str, Any]:
    """SpanRecords to one OTLP/JSON ExportTraceServiceRequest object (hex ids), grouped by service."""
    by_service: dict[str, list[dict[str, Any]]] = {}
    kinds = {v: k for k, v in _KINDS.items() if k}
    for s in spans:
        by_service.setdefault(s.service, []).append({
            "traceId": s.trace_id, "spanId": s.span_id, **({"parentSpanId": s.parent_id} if s.parent_id else {}),
            "name": s.name, "kind": kinds.get(s.kind, 1),
            "startTimeUnixNano": str(int(round(s.start * 1e9))), "endTimeUnixNano": str(int(round(s.end * 1e9))),
            "attributes": [{"key": k, "value": _to_any(v)} for k, v in s.attributes.items()],
            **({"status": {"code": 2}} if s.error else {}),
        })
    return {"resourceSpans": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
         "scopeSpans": [{"scope": {"name": "otel_llm.synthetic"}, "spans": group}]}
        for svc, group in by_service.items()
    ]}


def _to_any(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_to_any(x) for x in v]}}
    return {"stringValue": str(v)}
