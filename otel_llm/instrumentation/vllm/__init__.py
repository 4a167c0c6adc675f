"""vLLM: a metrics bridge (always) and per-request spans (when vLLM runs in this process).

* :class:`VLLMMetricsBridge` scrapes a vLLM ``/metrics`` endpoint and
  re-emits its ``vllm:*`` series as OpenTelemetry metrics: semantic-convention
  names where they map (``gen_ai.server.time_to_first_token`` ...),
  ``otel_llm.server.*`` for queue / prefill / decode / running / waiting /
  KV cache / preemptions, ``otel_llm.vllm.*`` for the rest. Histograms keep
  vLLM's buckets; counters stay monotonic across vLLM restarts.
* :class:`VLLMInstrumentor` builds a span per request, with queue / prefill /
  decode children, from vLLM's own engine timestamps.
"""

from otel_llm.instrumentation.vllm._bridge import (
    DEFAULT_SCRAPE_INTERVAL_S,
    DEFAULT_VLLM_METRICS_URL,
    VLLMMetricsBridge,
)
from otel_llm.instrumentation.vllm._instrumentor import VLLMInstrumentor
from otel_llm.instrumentation.vllm._producer import MetricProducer, attach_producer
from otel_llm.instrumentation.vllm._spans import build_request_span

__all__ = [
    "DEFAULT_SCRAPE_INTERVAL_S",
    "DEFAULT_VLLM_METRICS_URL",
    "MetricProducer",
    "VLLMInstrumentor",
    "VLLMMetricsBridge",
    "attach_producer",
    "build_request_span",
]
