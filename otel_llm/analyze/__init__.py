"""``otel-llm analyze``: an OTLP receiver that runs the detectors and RCA and
forwards everything, unchanged, downstream (``otel_llm.analyze``).

* :class:`AnalyzeService` / :class:`AnalyzeConfig` -- the service and its settings.
* :class:`Intake`, :func:`http_app`, :func:`grpc_server` -- the receivers.
* :class:`Forwarder` -- bounded, retried byte-for-byte forwarding.
* :class:`Pipeline` -- the bounded analysis queue and worker.
* :func:`decode_traces`, :func:`spans_from_request`, :func:`spans_from_json`,
  :func:`read_otlp_json_lines` -- OTLP (protobuf / JSON) to ``SpanRecord`` s.
* :class:`ConsoleSink`, :class:`JsonlSink` -- default incident sinks.
"""

from ._forward import Forwarder, Payload
from ._otlp import (
    OtlpDecodeError,
    decode_metrics,
    decode_traces,
    read_otlp_json_lines,
    records_to_json,
    spans_from_json,
    spans_from_request,
)
from ._pipeline import Pipeline
from ._receiver import Intake, grpc_server, http_app
from ._service import AnalyzeConfig, AnalyzeService
from ._sinks import ConsoleSink, JsonlSink, format_incident

__all__ = [
    "AnalyzeConfig", "AnalyzeService", "ConsoleSink", "Forwarder", "Intake", "JsonlSink", "OtlpDecodeError",
    "Payload", "Pipeline", "decode_metrics", "decode_traces", "format_incident", "grpc_server", "http_app",
    "read_otlp_json_lines", "records_to_json", "spans_from_json", "spans_from_request",
]
