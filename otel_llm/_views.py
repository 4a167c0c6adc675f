"""Histogram Views with bucket boundaries suited to LLM latencies and token counts.

The SDK's default buckets (0 .. 10000) are useless for seconds-scale
latencies; these are the semantic conventions' advisory boundaries, plus
finer ones for our own per-token and stage timings.
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

from otel_llm import semconv as sc

_BUCKETS: dict[str, tuple[float, ...]] = {
    sc.GEN_AI_SERVER_REQUEST_DURATION: sc.BUCKETS_DURATION_S,
    sc.GEN_AI_CLIENT_OPERATION_DURATION: sc.BUCKETS_DURATION_S,
    sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: sc.BUCKETS_TTFT_S,
    sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: sc.BUCKETS_TPOT_S,
    sc.GEN_AI_CLIENT_TOKEN_USAGE: sc.BUCKETS_TOKENS,
    sc.OTEL_LLM_SERVER_TOKEN_GAP: sc.BUCKETS_GAP_S,
    sc.OTEL_LLM_SERVER_QUEUE_DURATION: sc.BUCKETS_STAGE_S,
    sc.OTEL_LLM_SERVER_PREFILL_DURATION: sc.BUCKETS_STAGE_S,
    sc.OTEL_LLM_SERVER_DECODE_DURATION: sc.BUCKETS_STAGE_S,
    sc.OTEL_LLM_SERVER_BATCH_SIZE: (1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
}


def bucket_boundaries(name: str) -> tuple[float, ...] | None:
    return _BUCKETS.get(name)


def default_views() -> list[View]:
    return [
        View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(boundaries=list(bounds)))
        for name, bounds in _BUCKETS.items()
    ]
