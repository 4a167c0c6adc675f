"""``VLLMInstrumentor``: per-request spans from vLLM's engine timestamps.

Patches ``vllm.v1.metrics.stats.IterationStats.update_from_finished_request``
(called once per finished request with its ``RequestStateStats``) and builds
the span after vLLM's own bookkeeping ran (see :mod:`._spans`). Metrics are
NOT recorded here: vLLM already aggregates them on its ``/metrics`` endpoint,
and :class:`~otel_llm.instrumentation.vllm.VLLMMetricsBridge` re-emits those,
so nothing is counted twice.

When ``vllm`` is not installed, ``instrument()`` logs one line and does
nothing (under ``opentelemetry-instrument`` it is skipped silently, as every
instrumentor whose library is absent).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Collection
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_llm import __version__
from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation.vllm._spans import build_request_span

__all__ = ["VLLMInstrumentor"]

_logger = logging.getLogger(__name__)
_MODULE = "vllm.v1.metrics.stats"
_TARGET = "IterationStats.update_from_finished_request"
_NAMES = ("finish_reason", "num_prompt_tokens", "max_tokens_param", "req_stats")


def _bind(args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(_NAMES, args, strict=False))
    bound.update(kwargs)
    return bound


class VLLMInstrumentor(BaseInstrumentor):
    """Spans for requests served by vLLM's V1 engine (``vllm >= 0.10``).

    ``instrument(tracer_provider=None, model_name=None)``: ``model_name`` sets
    ``gen_ai.request.model`` (the engine hook does not see the request's model).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("vllm >= 0.10",)

    def instrument(self, **kwargs: Any):
        if importlib.util.find_spec("vllm") is None and not kwargs.get("raise_exception_on_conflict"):
            _logger.warning(
                "vllm is not installed: VLLMInstrumentor does nothing "
                "(VLLMMetricsBridge still bridges a remote vLLM's /metrics)"
            )
            return None
        return super().instrument(**kwargs)

    def _instrument(self, **kwargs: Any) -> None:
        import wrapt

        tracer = trace.get_tracer(
            "otel_llm.vllm", __version__, tracer_provider=kwargs.get("tracer_provider"), schema_url=sc.SCHEMA_URL
        )
        model = kwargs.get("model_name")

        def wrapper(wrapped, instance, args, kw):
            result = wrapped(*args, **kw)
            try:
                b = _bind(args, kw)
                stats = b.get("req_stats")
                if stats is not None:
                    build_request_span(
                        tracer,
                        stats,
                        finished_at=float(instance.iteration_timestamp),
                        finish_reason=b.get("finish_reason"),
                        num_prompt_tokens=b.get("num_prompt_tokens"),
                        max_tokens=b.get("max_tokens_param"),
                        model=model,
                    )
            except Exception as exc:  # never break vLLM's bookkeeping
                report_error("vllm.request_span", exc)
            return result

        wrapt.wrap_function_wrapper(_MODULE, _TARGET, wrapper)

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        stats = importlib.import_module(_MODULE)
        unwrap(stats.IterationStats, "update_from_finished_request")
