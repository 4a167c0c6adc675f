"""Which ``vllm:*`` Prometheus family becomes which OpenTelemetry metric.

Families are keyed by the name ``prometheus_client.parser`` gives them (a
counter's family name has no ``_total``). Three kinds of target:

* a semantic-convention name (``gen_ai.server.*``, token usage);
* an ``otel_llm.server.*`` name shared with our own instrumentors, so one
  dashboard serves vLLM, the reference server and transformers alike;
* everything else keeps its vLLM name under ``otel_llm.vllm.*`` (see
  :func:`fallback_name`), with its Prometheus type.

Where vLLM exposes the same quantity under two names across versions
(``gpu_cache_usage_perc`` / ``kv_cache_usage_perc``, the three TPOT
histograms), :data:`PREFERENCES` picks the first one present in a scrape so a
target is never fed twice; the others fall back to ``otel_llm.vllm.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from otel_llm import semconv as sc

__all__ = ["PREFERENCES", "TARGETS", "Target", "fallback_name", "label_attribute"]


@dataclass(frozen=True)
class Target:
    """An OTel metric to emit: name, unit, description, and fixed extra attributes."""

    name: str
    unit: str
    description: str
    extra: dict[str, Any] = field(default_factory=dict)


_S = "s"
TARGETS: dict[str, Target] = {
    "vllm:time_to_first_token_seconds": Target(
        sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, _S, "Time to generate first token for successful responses (from vLLM)."
    ),
    "vllm:e2e_request_latency_seconds": Target(
        sc.GEN_AI_SERVER_REQUEST_DURATION, _S, "Generative AI server request duration (from vLLM end-to-end latency)."
    ),
    # per-request TPOT (vLLM >= 0.11), then the older per-iteration histogram, then ITL
    "vllm:request_time_per_output_token_seconds": Target(
        sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, _S, "Time per output token after the first (from vLLM)."
    ),
    "vllm:time_per_output_token_seconds": Target(
        sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, _S, "Time per output token after the first (from vLLM)."
    ),
    "vllm:request_prompt_tokens": Target(
        sc.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "Input tokens per request (from vLLM).",
        {sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT},
    ),
    "vllm:request_generation_tokens": Target(
        sc.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "Output tokens per request (from vLLM).",
        {sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT},
    ),
    "vllm:inter_token_latency_seconds": Target(
        sc.OTEL_LLM_SERVER_TOKEN_GAP, _S, "Every inter-token gap (from vLLM inter-token latency)."
    ),
    "vllm:request_queue_time_seconds": Target(
        sc.OTEL_LLM_SERVER_QUEUE_DURATION, _S, "Time a request waited before its prefill began (from vLLM)."
    ),
    "vllm:request_prefill_time_seconds": Target(
        sc.OTEL_LLM_SERVER_PREFILL_DURATION, _S, "Time spent in prefill (from vLLM)."
    ),
    "vllm:request_decode_time_seconds": Target(
        sc.OTEL_LLM_SERVER_DECODE_DURATION, _S, "Time from the first to the last output token (from vLLM)."
    ),
    "vllm:num_requests_running": Target(
        sc.OTEL_LLM_SERVER_REQUESTS_RUNNING, "{request}", "Requests in model execution batches (from vLLM)."
    ),
    "vllm:num_requests_waiting": Target(
        sc.OTEL_LLM_SERVER_REQUESTS_WAITING, "{request}", "Requests waiting to be scheduled (from vLLM)."
    ),
    "vllm:kv_cache_usage_perc": Target(
        sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION, "1", "KV-cache usage, 0..1 (from vLLM)."
    ),
    "vllm:gpu_cache_usage_perc": Target(
        sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION, "1", "KV-cache usage, 0..1 (from vLLM, pre-0.10 name)."
    ),
    "vllm:num_preemptions": Target(
        sc.OTEL_LLM_SERVER_PREEMPTIONS, "{preemption}", "Cumulative preemptions in the engine (from vLLM)."
    ),
}

# Target name -> vLLM families in order of preference; the first present wins.
PREFERENCES: dict[str, tuple[str, ...]] = {
    sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: (
        "vllm:request_time_per_output_token_seconds",
        "vllm:time_per_output_token_seconds",
    ),
    sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION: ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
}

_UNITS = {"_seconds": "s", "_perc": "1", "_tokens": "{token}", "_bytes": "By"}


def fallback_name(family: str) -> Target:
    """``vllm:iteration_tokens_total`` -> ``otel_llm.vllm.iteration_tokens_total`` (unit guessed from the suffix)."""
    base = family.split(":", 1)[1] if ":" in family else family
    unit = "1"
    for suffix, u in _UNITS.items():
        if base.endswith(suffix):
            unit = u
            break
    return Target(sc.OTEL_LLM_VLLM_PREFIX + base, unit, f"vLLM {family} (bridged unchanged).")


def label_attribute(label: str) -> str:
    """Attribute key for a vLLM label: ``model_name`` -> ``gen_ai.request.model``, others namespaced."""
    if label == "model_name":
        return sc.GEN_AI_REQUEST_MODEL
    return sc.OTEL_LLM_VLLM_PREFIX + label
