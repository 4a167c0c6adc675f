"""One feature row per finished request span.

Columns (:data:`FEATURES`), all floats, NaN when the span or GPU lacks them:

=================  ==========================================================
``duration``       span duration, s
``ttft``           ``otel_llm.response.time_to_first_token`` (or semconv's
                   ``gen_ai.response.time_to_first_chunk``), s
``tpot``           ``otel_llm.response.time_per_output_token`` (mean), s
``gap_p99``        ``otel_llm.token_gap.p99``, s
``gap_max``        ``otel_llm.token_gap.max``, s
``input_tokens``   ``gen_ai.usage.input_tokens``
``output_tokens``  ``gen_ai.usage.output_tokens``
``queue_time``     ``otel_llm.queue.duration``, s
``gpu_sm_active``  serving GPU's SM activity (DCGM 1002, ratio)
``gpu_util``       GPU utilisation (DCGM 203, %)
``gpu_mem_used``   framebuffer used (DCGM 252, MiB)
``gpu_power``      power draw (DCGM 155, W)
``gpu_temp``       GPU temperature (DCGM 150, C)
``gpu_throttle``   1 when a slowdown clock-event reason is active (DCGM 112)
=================  ==========================================================

GPU columns come from ``gpu_state(uuid, t) -> GpuSample | None``, a callable
the caller injects (e.g. ``GpuStateStore.at``), looked up at the span's end for
the first UUID in ``otel_llm.gpu.uuids``. With several GPUs the worst value is
kept (max, min for nothing here: every column is "higher = busier").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from otel_llm.processors._spans import KIND_SERVER, SpanRecord

from otel_llm import semconv

FEATURES: tuple[str, ...] = (
    "duration", "ttft", "tpot", "gap_p99", "gap_max", "input_tokens", "output_tokens", "queue_time",
    "gpu_sm_active", "gpu_util", "gpu_mem_used", "gpu_power", "gpu_temp", "gpu_throttle",
)
SPAN_FEATURES = FEATURES[:8]
GPU_FEATURES = FEATURES[8:]

# DCGM numeric field ids (stable across DCGM renames; see collectors._fields.F).
_GPU_FIELDS: Mapping[str, int] = {
    "gpu_sm_active": 1002, "gpu_util": 203, "gpu_mem_used": 252, "gpu_power": 155, "gpu_temp": 150,
}
_CLOCKS_EVENT_REASONS = 112
# sw_power_cap | hw_slowdown | sw_thermal | hw_thermal | hw_power_brake
_SLOWDOWN_BITS = 0x4 | 0x8 | 0x20 | 0x40 | 0x80

GpuStateFn = Callable[[str, float], Any]

#: Span attributes naming the model a request served (first present wins).
MODEL_ATTRIBUTES = (semconv.GEN_AI_REQUEST_MODEL, semconv.GEN_AI_RESPONSE_MODEL)


def is_request_span(span: SpanRecord) -> bool:
    """A finished LLM request: a GenAI span that is not a stage child (queue/prefill/decode)."""
    a = span.attributes
    if semconv.OTEL_LLM_STAGE in a:
        return False
    if semconv.GEN_AI_OPERATION_NAME not in a:
        return False
    return span.kind == KIND_SERVER or semconv.OTEL_LLM_TTFT in a or semconv.GEN_AI_USAGE_OUTPUT_TOKENS in a


def _num(a: Mapping[str, Any], *names: str) -> float:
    for n in names:
        v = a.get(n)
        if v is None or isinstance(v, bool):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            return f
    return math.nan


def gpu_features(sample: Any) -> dict[str, float]:
    """GPU columns from one ``GpuSample`` (fields keyed by DCGM id)."""
    fields = getattr(sample, "fields", None) or {}
    out = {}
    for name, fid in _GPU_FIELDS.items():
        v = fields.get(fid)
        out[name] = float(v) if v is not None else math.nan
    mask = fields.get(_CLOCKS_EVENT_REASONS)
    out["gpu_throttle"] = math.nan if mask is None else float(bool(int(mask) & _SLOWDOWN_BITS))
    return out


def request_features(span: SpanRecord, gpu_state: GpuStateFn | None = None) -> dict[str, float]:
    """The feature row of one request span (every column of :data:`FEATURES`, NaN when absent)."""
    a = span.attributes
    row = {
        "duration": max(span.duration, 0.0),
        "ttft": _num(a, semconv.OTEL_LLM_TTFT, semconv.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        "tpot": _num(a, semconv.OTEL_LLM_TPOT),
        "gap_p99": _num(a, semconv.OTEL_LLM_GAP_P99),
        "gap_max": _num(a, semconv.OTEL_LLM_GAP_MAX),
        "input_tokens": _num(a, semconv.GEN_AI_USAGE_INPUT_TOKENS),
        "output_tokens": _num(a, semconv.GEN_AI_USAGE_OUTPUT_TOKENS),
        "queue_time": _num(a, semconv.OTEL_LLM_QUEUE_TIME),
    }
    for name in GPU_FEATURES:
        row[name] = math.nan
    if gpu_state is not None:
        uuids = a.get(semconv.OTEL_LLM_GPU_UUIDS) or ()
        if isinstance(uuids, str):
            uuids = [u for u in uuids.split(",") if u]
        for uuid in uuids:
            sample = gpu_state(str(uuid), span.end)
            if sample is None:
                continue
            for k, v in gpu_features(sample).items():
                if not math.isnan(v) and (math.isnan(row[k]) or v > row[k]):
                    row[k] = v
    return row


def request_series_attributes(span: SpanRecord) -> dict[str, str]:
    """Low-cardinality attributes of the request rate series: service and model."""
    out = {"service.name": span.service}
    for name in MODEL_ATTRIBUTES:
        v = span.attributes.get(name)
        if v:
            out[semconv.GEN_AI_REQUEST_MODEL] = str(v)
            break
    return out


__all__ = ["FEATURES", "GPU_FEATURES", "SPAN_FEATURES", "gpu_features", "is_request_span", "request_features",
           "request_series_attributes"]
