"""One receiving core for both transports, and the two thin shells.

:class:`Intake` does everything that does not depend on the transport:
authentication, size limits, decompression, decoding, admission (both queues
must have room, else the client is told to retry later) and hand-off to the
analysis pipeline and the forwarder. It answers an :class:`Outcome` that the
HTTP shell (:func:`http_app`, Starlette) and the gRPC shell
(:func:`grpc_server`) map to their own status codes:

=================  ===========  ==================
outcome            HTTP         gRPC
=================  ===========  ==================
ok                 200          OK
unauthenticated    401          UNAUTHENTICATED
too_large          413          RESOURCE_EXHAUSTED
malformed          400          INVALID_ARGUMENT
unsupported type   415          (n/a)
overloaded         503 + Retry-After  UNAVAILABLE
=================  ===========  ==================
"""

from __future__ import annotations

import hmac
import logging
import zlib
from collections import Counter
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from otel_llm._selftelemetry import report_dropped

from ._forward import Forwarder, Payload
from ._otlp import OtlpDecodeError, count_spans, decode_metrics, decode_traces
from ._pipeline import Pipeline

_logger = logging.getLogger(__name__)
_COMPONENT = "analyze.receiver"
RETRY_AFTER_S = 1

OK, UNAUTHENTICATED, TOO_LARGE, MALFORMED, UNSUPPORTED, OVERLOADED = (
    "ok", "unauthenticated", "too_large", "malformed", "unsupported", "overloaded")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    message: str = ""
    rejected: int = 0
    """Items dropped from an accepted request (partial success)."""


class Intake:
    """Transport-independent receiving. Thread-safe (the pipeline and forwarder are)."""

    def __init__(self, pipeline: Pipeline, forwarder: Forwarder | None = None, *, token: str | None = None,
                 max_request_bytes: int = 8 * 1024 * 1024) -> None:
        if max_request_bytes < 1024:
            raise ValueError("max_request_bytes must be at least 1024")
        self.pipeline = pipeline
        self.forwarder = forwarder
        self._token = token.encode() if token else None
        self.max_request_bytes = max_request_bytes
        self.stats: Counter[str] = Counter()

    def authorized(self, authorization: str | None) -> bool:
        if self._token is None:
            return True
        if not authorization or not authorization.startswith(("Bearer ", "bearer ")):
            return False
        return hmac.compare_digest(authorization[7:].strip().encode(), self._token)

    def overloaded(self, incoming: int = 0) -> bool:
        """True (and counted) when the analysis or forwarding queue has no room."""
        fwd = self.forwarder
        if self.pipeline.full() or (fwd is not None and fwd.full(incoming)):
            self.stats["overloaded"] += 1
            report_dropped(_COMPONENT, "overloaded", 1)
            return True
        return False

    def decompress(self, body: bytes, encoding: str | None) -> bytes | Outcome:
        enc = (encoding or "identity").strip().lower()
        if enc in ("", "identity"):
            return body
        if enc not in ("gzip", "deflate"):
            return Outcome(UNSUPPORTED, f"unsupported Content-Encoding {encoding!r}; use gzip or none")
        d = zlib.decompressobj(wbits=47 if enc == "gzip" else 15)  # 47: gzip or zlib header, auto-detected
        try:
            out = d.decompress(body, self.max_request_bytes + 1)
        except zlib.error as exc:
            return Outcome(MALFORMED, f"body is not valid {enc}: {exc}")
        if len(out) > self.max_request_bytes or d.unconsumed_tail:
            return Outcome(TOO_LARGE, f"decompressed body exceeds the {self.max_request_bytes}-byte limit")
        if not d.eof:
            return Outcome(MALFORMED, f"truncated {enc} body")
        return out

    def accept(self, signal: str, raw: bytes, decoded_body: bytes, *, json_payload: bool,
               content_type: str, content_encoding: str | None) -> Outcome:
        """Decode, admit, queue for analysis and forwarding."""
        self.stats[f"{signal}_requests"] += 1
        if self.overloaded(len(raw)):  # before decoding: a refusal must cost almost nothing
            return Outcome(OVERLOADED, "analysis queue full; retry later")
        try:
            request = decode_traces(decoded_body, json_payload) if signal == "traces" else \
                decode_metrics(decoded_body, json_payload)
        except OtlpDecodeError as exc:
            self.stats["malformed"] += 1
            return Outcome(MALFORMED, str(exc))
        spans = count_spans(request) if signal == "traces" else 0
        fwd = self.forwarder
        if self.pipeline.full(spans) or (fwd is not None and fwd.full(len(raw))):
            self.stats["overloaded"] += 1
            report_dropped(_COMPONENT, "overloaded", spans or 1)
            return Outcome(OVERLOADED, "analysis queue full; retry later")
        if fwd is not None:
            message = None
            if fwd.grpc and (json_payload or decoded_body is not raw):
                # gRPC carries protobuf, uncompressed at this layer: the same message, re-encoded
                # only when it arrived as JSON.
                message = request.SerializeToString() if json_payload else decoded_body
            fwd.submit(Payload(signal, raw, content_type, content_encoding, message))
        if not self.pipeline.submit(signal, request, spans):
            return Outcome(OVERLOADED, "analysis queue full; retry later")
        self.stats[f"{signal}_accepted"] += spans or 1
        return Outcome(OK)


# --------------------------------------------------------------------------- HTTP
_HTTP_STATUS = {OK: 200, UNAUTHENTICATED: 401, TOO_LARGE: 413, MALFORMED: 400, UNSUPPORTED: 415, OVERLOADED: 503}
_GRPC_CODE = {UNAUTHENTICATED: 16, TOO_LARGE: 8, MALFORMED: 3, UNSUPPORTED: 3, OVERLOADED: 14}


def _status_body(outcome: Outcome, json_payload: bool) -> bytes:
    from google.protobuf import json_format
    from google.rpc import status_pb2

    status = status_pb2.Status(code=_GRPC_CODE.get(outcome.status, 2), message=outcome.message)
    return json_format.MessageToJson(status).encode() if json_payload else status.SerializeToString()


def http_app(intake: Intake):
    """The OTLP/HTTP receiver (``POST /v1/traces``, ``POST /v1/metrics``; ``GET /healthz``) and
    the on-demand endpoints (``GET /v1/rca``, ``GET /v1/incidents``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    responses = {
        "traces": trace_service_pb2.ExportTraceServiceResponse,
        "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    }

    def reply(outcome: Outcome, signal: str, json_payload: bool) -> Response:
        media = "application/json" if json_payload else "application/x-protobuf"
        headers = {}
        if outcome.status == OK:
            from google.protobuf import json_format

            msg = responses[signal]()
            body = json_format.MessageToJson(msg).encode() if json_payload else msg.SerializeToString()
        else:
            body = _status_body(outcome, json_payload)
            if outcome.status == OVERLOADED:
                headers["Retry-After"] = str(RETRY_AFTER_S)
            if outcome.status == UNAUTHENTICATED:
                headers["WWW-Authenticate"] = 'Bearer realm="otel-llm analyze"'
        return Response(body, status_code=_HTTP_STATUS[outcome.status], media_type=media, headers=headers)

    async def export(request: Request) -> Response:
        signal = request.url.path.rsplit("/", 1)[-1]
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        json_payload = ctype == "application/json"
        if not intake.authorized(request.headers.get("authorization")):
            intake.stats["unauthenticated"] += 1
            return reply(Outcome(UNAUTHENTICATED, "missing or wrong bearer token"), signal, json_payload)
        if ctype not in ("application/x-protobuf", "application/protobuf", "application/json"):
            return reply(Outcome(UNSUPPORTED, f"unsupported Content-Type {ctype!r}; use application/x-protobuf "
                                              "or application/json"), signal, False)
        if intake.overloaded():
            # Refuse before reading the body: under overload a refusal must cost next to nothing.
            return reply(Outcome(OVERLOADED, "analysis queue full; retry later"), signal, json_payload)
        limit = intake.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            intake.stats["too_large"] += 1
            return reply(Outcome(TOO_LARGE, f"body of {declared} bytes exceeds the {limit}-byte limit"),
                         signal, json_payload)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                intake.stats["too_large"] += 1
                return reply(Outcome(TOO_LARGE, f"body exceeds the {limit}-byte limit"), signal, json_payload)
            chunks.append(chunk)
        raw = b"".join(chunks)
        encoding = request.headers.get("content-encoding")
        body = intake.decompress(raw, encoding)
        if isinstance(body, Outcome):
            if body.status == TOO_LARGE:
                intake.stats["too_large"] += 1
            return reply(body, signal, json_payload)
        return reply(intake.accept(signal, raw, body, json_payload=json_payload, content_type=ctype,
                                   content_encoding=encoding), signal, json_payload)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def on_demand(request: Request) -> Response:
        """``GET /v1/rca?last=300`` or ``?start=<unix s>&end=<unix s>``: rank now, over the traces
        still in memory; ``GET /v1/incidents``: the open and recently closed incidents."""
        import asyncio
        import json
        import time

        from starlette.responses import JSONResponse

        if not intake.authorized(request.headers.get("authorization")):
            intake.stats["unauthenticated"] += 1
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="otel-llm analyze"'})
        rca = intake.pipeline.rca
        if request.url.path.endswith("/incidents"):
            def listing():
                incidents = list(rca.closed) + ([rca.incident] if rca.incident is not None else [])
                return [i.to_dict() for i in incidents[-20:]]
        else:
            q = request.query_params
            try:
                now = time.time()
                end = float(q.get("end", now))
                start = float(q["start"]) if "start" in q else end - float(q.get("last", 300))
                if not start < end:
                    raise ValueError("start must be before end")
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": f"bad window: {exc}; use ?last=SECONDS or ?start=&end= "
                                              "(unix seconds)"}, status_code=400)

            def listing():
                return {"start": start, "end": end,
                        "candidates": [c.to_dict() for c in rca.analyze(start, end)]}
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(intake.pipeline.call(listing)), 30)
        except Exception as exc:
            return JSONResponse({"error": f"analysis failed: {type(exc).__name__}: {exc}"}, status_code=503)
        return Response(json.dumps(result, default=str), media_type="application/json")

    return Starlette(routes=[
        Route("/v1/traces", export, methods=["POST"]),
        Route("/v1/metrics", export, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/rca", on_demand, methods=["GET"]),
        Route("/v1/incidents", on_demand, methods=["GET"]),
    ])


# --------------------------------------------------------------------------- gRPC
def grpc_server(intake: Intake, address: str, *, tls: tuple[bytes, bytes] | None = None, max_workers: int = 4) -> Any:
    """The OTLP/gRPC receiver (TraceService/Export, MetricsService/Export), bound but not started.

    Requests arrive as raw bytes (no deserializer) so they are forwarded
    unchanged; the service names come from the opentelemetry-proto descriptors.
    Returns ``(server, port)``.
    """
    import grpc

    def handler(signal: str, response_cls):
        def export(raw: bytes, context: grpc.ServicerContext):
            metadata = dict(context.invocation_metadata() or ())
            if not intake.authorized(metadata.get("authorization")):
                intake.stats["unauthenticated"] += 1
                context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            if len(raw) > intake.max_request_bytes:
                intake.stats["too_large"] += 1
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"message exceeds the {intake.max_request_bytes}-byte limit")
            outcome = intake.accept(signal, raw, raw, json_payload=False, content_type="application/x-protobuf",
                                    content_encoding=None)
            if outcome.status == OVERLOADED:
                context.abort(grpc.StatusCode.UNAVAILABLE, outcome.message)
            if outcome.status != OK:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, outcome.message)
            return response_cls()

        return grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=None, response_serializer=lambda m: m.SerializeToString())

    trace_service = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
    metrics_service = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otel-llm-grpc"),
        options=[("grpc.max_receive_message_length", intake.max_request_bytes),
                 ("grpc.max_send_message_length", 4 * 1024 * 1024)],
        maximum_concurrent_rpcs=max_workers * 16,
    )
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler(trace_service, {
            "Export": handler("traces", trace_service_pb2.ExportTraceServiceResponse)}),
        grpc.method_handlers_generic_handler(metrics_service, {
            "Export": handler("metrics", metrics_service_pb2.ExportMetricsServiceResponse)}),
    ))
    if tls is not None:
        port = server.add_secure_port(address, grpc.ssl_server_credentials([(tls[1], tls[0])]))
    else:
        port = server.add_insecure_port(address)
    if not port:
        raise OSError(f"cannot bind the OTLP/gRPC receiver to {address}")
    return server, port
