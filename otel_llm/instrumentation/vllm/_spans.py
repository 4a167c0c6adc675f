"""Per-request spans rebuilt from vLLM's own request timestamps.

vLLM (V1 engine, ``vllm/v1/metrics/stats.py``) keeps, per request, a
``RequestStateStats`` with:

* ``arrival_time`` -- wall clock (``time.time()``) in the API-server process;
* ``queued_ts``, ``scheduled_ts``, ``first_token_ts``, ``last_token_ts`` --
  ``time.monotonic()`` in the *engine-core* process (another process: its
  monotonic clock has its own origin);
* ``num_generation_tokens``, ``first_token_latency`` (arrival -> first token,
  seconds).

When the request finishes, ``IterationStats.update_from_finished_request``
runs with the iteration's wall-clock ``iteration_timestamp``. The engine
timestamps are mapped to wall clock by anchoring ``last_token_ts`` at that
moment (the frontend receives the last token in the iteration that finishes
the request), so the children keep vLLM's exact intervals: queue =
queued -> scheduled, prefill = scheduled -> first token, decode = first ->
last token -- the same intervals vLLM's histograms observe.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from otel_llm import semconv as sc
from otel_llm.instrumentation._genai import stamp_gpu_uuids

__all__ = ["build_request_span", "finish_reason_text"]

_ERROR_REASONS = {"abort", "error"}


def finish_reason_text(reason: Any) -> str:
    """``FinishReason.STOP`` / ``"stop"`` / ``0``-style enum -> ``"stop"``."""
    text = str(reason)
    if "." in text:
        text = text.rsplit(".", 1)[1]
    name = getattr(reason, "name", None)
    if text.isdigit() and name:
        text = name
    return text.lower()


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def build_request_span(
    tracer: Tracer,
    stats: Any,
    *,
    finished_at: float,
    finish_reason: Any = None,
    num_prompt_tokens: int | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    response_id: str | None = None,
    model: str | None = None,
    context: Context | None = None,
) -> None:
    """Emit one ``vllm.request`` span (+ queue / prefill / decode children) for a finished request.

    ``stats`` is vLLM's ``RequestStateStats`` (or anything with the same
    attributes); ``finished_at`` is the wall-clock time the request finished
    (``IterationStats.iteration_timestamp``). Spans are created with explicit
    start/end times, so calling this after the fact costs no latency.
    """
    arrival = float(getattr(stats, "arrival_time", 0.0) or 0.0) or finished_at
    queued = float(getattr(stats, "queued_ts", 0.0) or 0.0)
    scheduled = float(getattr(stats, "scheduled_ts", 0.0) or 0.0)
    first = float(getattr(stats, "first_token_ts", 0.0) or 0.0)
    last = float(getattr(stats, "last_token_ts", 0.0) or 0.0)
    n_out = int(getattr(stats, "num_generation_tokens", 0) or 0)
    ttft = float(getattr(stats, "first_token_latency", 0.0) or 0.0)
    reason = finish_reason_text(finish_reason) if finish_reason is not None else None

    start_wall = min(arrival, finished_at)
    offset = finished_at - last if last > 0 else None  # engine monotonic -> wall clock

    def wall(ts: float) -> float | None:
        if offset is None or ts <= 0:
            return None
        return max(start_wall, ts + offset)

    attrs: dict[str, Any] = {sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_VLLM}
    if model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
        attrs[sc.GEN_AI_RESPONSE_MODEL] = model
    if num_prompt_tokens is not None:
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = int(num_prompt_tokens)
    attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = n_out
    if max_tokens is not None:
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = int(max_tokens)
    if temperature is not None:
        attrs[sc.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
    if top_p is not None:
        attrs[sc.GEN_AI_REQUEST_TOP_P] = float(top_p)
    if response_id:
        attrs[sc.GEN_AI_RESPONSE_ID] = str(response_id)
    if reason:
        attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [reason]
    if ttft > 0:
        attrs[sc.OTEL_LLM_TTFT] = ttft
    stages = []
    q0, q1, f0, f1 = wall(queued), wall(scheduled), wall(first), wall(last)
    if q0 is not None and q1 is not None and q1 >= q0:
        attrs[sc.OTEL_LLM_QUEUE_TIME] = scheduled - queued
        stages.append((sc.STAGE_QUEUE, q0, q1))
    if q1 is not None and f0 is not None and f0 >= q1:
        attrs[sc.OTEL_LLM_PREFILL_TIME] = first - scheduled
        stages.append((sc.STAGE_PREFILL, q1, f0))
    if f0 is not None and f1 is not None and f1 >= f0:
        attrs[sc.OTEL_LLM_DECODE_TIME] = last - first
        stages.append((sc.STAGE_DECODE, f0, f1))
        if n_out > 1:
            attrs[sc.OTEL_LLM_TPOT] = (last - first) / (n_out - 1)

    name = f"vllm.request {model}" if model else "vllm.request"
    span = tracer.start_span(name, context=context, kind=SpanKind.INTERNAL, attributes=attrs, start_time=_ns(start_wall))
    stamp_gpu_uuids(span)
    if reason in _ERROR_REASONS:
        span.set_attribute(sc.ERROR_TYPE, reason)
        span.set_status(Status(StatusCode.ERROR, f"request finished with reason {reason}"))
    from opentelemetry import trace

    parent = trace.set_span_in_context(span)
    for stage, t0, t1 in stages:
        child = tracer.start_span(
            stage, context=parent, kind=SpanKind.INTERNAL, attributes={sc.OTEL_LLM_STAGE: stage}, start_time=_ns(t0)
        )
        child.end(end_time=_ns(t1))
    span.end(end_time=_ns(max(finished_at, start_wall)))
