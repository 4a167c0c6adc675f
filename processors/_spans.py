"""One span shape for every processor, whether spans come from the SDK in-process
or from OTLP (``otel-llm analyze``).

Times are unix seconds (float). Ids are lowercase hex (trace 32, span 16).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT, KIND_PRODUCER, KIND_CONSUMER = (
    "internal", "server", "client", "producer", "consumer",
)


@dataclass(frozen=True)
class SpanRecord:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    service: str
    start: float
    end: float
    kind: str = KIND_INTERNAL
    error: bool = False
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.end - self.start


# OTLP proto SpanKind numbers (SPAN_KIND_UNSPECIFIED=0, INTERNAL=1, SERVER=2, ...).
_KINDS = {0: KIND_INTERNAL, 1: KIND_INTERNAL, 2: KIND_SERVER, 3: KIND_CLIENT, 4: KIND_PRODUCER, 5: KIND_CONSUMER}
# The SDK's ``opentelemetry.trace.SpanKind`` enum numbers differently (INTERNAL=0, SERVER=1, ...): map by name.
_SDK_KINDS = {"INTERNAL": KIND_INTERNAL, "SERVER": KIND_SERVER, "CLIENT": KIND_CLIENT,
              "PRODUCER": KIND_PRODUCER, "CONSUMER": KIND_CONSUMER}


def from_readable_span(span: Any) -> SpanRecord:
    """Convert an SDK ``ReadableSpan`` (what a SpanProcessor's on_end receives)."""
    from opentelemetry.trace import StatusCode

    ctx = span.context
    parent = span.parent
    resource = dict(span.resource.attributes) if span.resource is not None else {}
    kind_name = getattr(span.kind, "name", "INTERNAL")
    return SpanRecord(
        trace_id=format(ctx.trace_id, "032x"),
        span_id=format(ctx.span_id, "016x"),
        parent_id=format(parent.span_id, "016x") if parent is not None else None,
        name=span.name,
        service=str(resource.get("service.name", "unknown_service")),
        start=(span.start_time or 0) / 1e9,
        end=(span.end_time or span.start_time or 0) / 1e9,
        kind=_SDK_KINDS.get(kind_name, KIND_INTERNAL),
        error=span.status.status_code is StatusCode.ERROR,
        attributes=dict(span.attributes or {}),
        resource=resource,
    )
