"""``VLLMInstrumentor``: per-request spans from vLLM's engine timestamps.

Hooks (vLLM V1 engine, ``vllm/v1/engine/output_processor.py``):

* ``OutputProcessor.add_request`` runs in the request's own task (under the
  HTTP handler, so under the OpenAI-server middleware's SERVER span when it is
  on): the current OpenTelemetry context is remembered on the request state;
* ``OutputProcessor._update_stats_from_finished(req_state, finish_reason,
  iteration_stats)`` runs once per finished request: after vLLM's own
  bookkeeping, a ``vllm.request`` span with queue / prefill / decode children
  is built from ``req_state.stats`` (see :mod:`._spans`), parented by the
  remembered context, else by the request's ``trace_headers`` (W3C).

vLLM versions without ``_update_stats_from_finished`` fall back to wrapping
``IterationStats.update_from_finished_request`` (no parent, no request id).
vLLM computes these stats only with stats logging on (its default); with
``--disable-log-stats`` there is nothing to build a span from.

Metrics are NOT recorded here: vLLM aggregates them on its ``/metrics``
endpoint and :class:`~otel_llm.instrumentation.vllm.VLLMMetricsBridge`
re-emits those, so nothing is counted twice.

When ``vllm`` is not installed, ``instrument()`` logs one line and does
nothing (under ``opentelemetry-instrument`` it is skipped silently, as every
instrumentor whose library is absent).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Collection
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_llm import __version__
from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation.vllm._spans import build_request_span

__all__ = ["VLLMInstrumentor"]

_logger = logging.getLogger(__name__)
_OUTPUT_MODULE = "vllm.v1.engine.output_processor"
_STATS_MODULE = "vllm.v1.metrics.stats"
_CTX_ATTR = "_otel_llm_context"
_NAMES = ("finish_reason", "num_prompt_tokens", "max_tokens_param", "req_stats")


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


class VLLMInstrumentor(BaseInstrumentor):
    """Spans for requests served by vLLM's V1 engine (``vllm >= 0.10``).

    ``instrument(tracer_provider=None, model_name=None)``: ``model_name`` sets
    ``gen_ai.request.model`` (the engine hooks do not see the request's model name).
    """

    _patched: list[tuple[Any, str]]

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
        self._patched = []
        output = importlib.import_module(_OUTPUT_MODULE)
        processor = getattr(output, "OutputProcessor", None)
        if processor is not None and hasattr(processor, "_update_stats_from_finished"):

            def add_request(wrapped, instance, args, kw):
                result = wrapped(*args, **kw)
                try:
                    request = _arg(args, kw, 0, "request")
                    state = instance.request_states.get(request.request_id)
                    if state is not None and trace.get_current_span().get_span_context().is_valid:
                        setattr(state, _CTX_ATTR, otel_context.get_current())
                except Exception as exc:
                    report_error("vllm.add_request", exc)
                return result

            def finished(wrapped, instance, args, kw):
                result = wrapped(*args, **kw)
                try:
                    state = _arg(args, kw, 0, "req_state")
                    iteration = _arg(args, kw, 2, "iteration_stats")
                    stats = getattr(state, "stats", None)
                    if stats is not None and iteration is not None:
                        parent = getattr(state, _CTX_ATTR, None)
                        headers = getattr(state, "trace_headers", None)
                        if parent is None and headers:
                            parent = propagate.extract(dict(headers))
                        build_request_span(
                            tracer, stats, finished_at=float(iteration.iteration_timestamp),
                            finish_reason=_arg(args, kw, 1, "finish_reason"),
                            num_prompt_tokens=getattr(state, "prompt_len", None),
                            max_tokens=getattr(state, "max_tokens_param", None),
                            temperature=getattr(state, "temperature", None),
                            top_p=getattr(state, "top_p", None),
                            response_id=getattr(state, "external_req_id", None),
                            model=model, context=parent,
                        )
                except Exception as exc:  # never break vLLM's bookkeeping
                    report_error("vllm.request_span", exc)
                return result

            wrapt.wrap_function_wrapper(processor, "add_request", add_request)
            wrapt.wrap_function_wrapper(processor, "_update_stats_from_finished", finished)
            self._patched += [(processor, "add_request"), (processor, "_update_stats_from_finished")]
            return

        stats_module = importlib.import_module(_STATS_MODULE)

        def legacy(wrapped, instance, args, kw):
            result = wrapped(*args, **kw)
            try:
                b = dict(zip(_NAMES, args, strict=False))
                b.update(kw)
                stats = b.get("req_stats")
                if stats is not None:
                    build_request_span(
                        tracer, stats, finished_at=float(instance.iteration_timestamp),
                        finish_reason=b.get("finish_reason"), num_prompt_tokens=b.get("num_prompt_tokens"),
                        max_tokens=b.get("max_tokens_param"), model=model,
                    )
            except Exception as exc:  # never break vLLM's bookkeeping
                report_error("vllm.request_span", exc)
            return result

        wrapt.wrap_function_wrapper(stats_module.IterationStats, "update_from_finished_request", legacy)
        self._patched.append((stats_module.IterationStats, "update_from_finished_request"))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_patched", []):
            unwrap(owner, name)
        self._patched = []
