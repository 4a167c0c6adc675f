"""OpenTelemetry instrumentation for Hugging Face ``transformers`` generation.

``TransformersInstrumentor().instrument()`` wraps ``GenerationMixin.generate``
(every ``model.generate()`` and every text-generation ``pipeline`` call):

* one INTERNAL span ``text_completion {model}`` per call with the GenAI
  request attributes, exact ``gen_ai.usage.input_tokens`` /
  ``gen_ai.usage.output_tokens`` from the tensors (per sequence in
  ``otel_llm.usage.*_per_sequence``), ``gen_ai.response.finish_reasons``;
* time to first token and every inter-token gap, measured by a per-step
  hook (streamer or logits processor), summarised on the span
  (``otel_llm.token_gap.p50/p90/p99/max/stalls``) and recorded as metrics
  (``gen_ai.server.*``, ``otel_llm.server.token_gap``, ``otel_llm.server.stalls``);
* prompts / completions only when
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` opts in, redacted and
  capped (:mod:`otel_llm._content`); the text needs a tokenizer: a pipeline's,
  the ``tokenizer=`` generate kwarg, the streamer's, or :func:`attach_tokenizer`.

``instrument()`` options: ``tracer_provider``, ``meter_provider``,
``capture_content`` (bool), ``stall_threshold_ms`` (float), ``defer_finish`` (bool, default
``OTEL_LLM_DEFER_FINISH`` or true: finish each call -- counts, summary, span end, metrics -- on a
worker thread when the tracer provider exports through batch processors; see
:mod:`otel_llm.instrumentation._finisher`). Wrapping happens
when ``transformers.generation.utils`` is imported (immediately if it already
is), so instrumenting early costs no import.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import wrapt
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_llm import __version__, semconv
from otel_llm import environment_variables as ev
from otel_llm._content import capture_content
from otel_llm._env import env_bool
from otel_llm.instrumentation._genai import GenAIInstruments, stall_threshold_s
from otel_llm.instrumentation.transformers.package import _instruments

__all__ = ["TransformersInstrumentor", "attach_tokenizer"]

_GENERATION_MODULE = "transformers.generation.utils"
_PIPELINE_MODULE = "transformers.pipelines.base"


def attach_tokenizer(model: Any, tokenizer: Any) -> None:
    """Let content capture decode ``model.generate()`` ids with ``tokenizer`` (no effect when capture is off)."""
    model._otel_llm_tokenizer = tokenizer


class TransformersInstrumentor(BaseInstrumentor):
    """Spans, token counts and per-token timing for ``transformers`` ``generate()``."""

    # BaseInstrumentor is a singleton whose __init__ runs on every TransformersInstrumentor()
    # call: state lives in class defaults and is only set in _instrument/_uninstrument.
    _epoch = 0  # post-import hooks from an earlier instrument() compare it and stand down
    _wrapped: tuple[tuple[Any, str], ...] = ()
    _instruments: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        tracer = trace.get_tracer(
            __name__, __version__, tracer_provider=kwargs.get("tracer_provider"), schema_url=semconv.SCHEMA_URL
        )
        meter = metrics.get_meter(
            __name__, __version__, meter_provider=kwargs.get("meter_provider"), schema_url=semconv.SCHEMA_URL
        )
        from otel_llm.instrumentation.transformers._wrapper import GenerateWrapper, pipeline_forward_wrapper

        capture = capture_content(kwargs.get("capture_content"))
        instruments = GenAIInstruments(meter, meter_provider=kwargs.get("meter_provider") or metrics.get_meter_provider())
        self._instruments = instruments
        wrapper = GenerateWrapper(
            tracer,
            instruments,
            capture_content=capture,
            stall_threshold_s=stall_threshold_s(kwargs.get("stall_threshold_ms")),
            defer_finish=env_bool(ev.OTEL_LLM_DEFER_FINISH, kwargs.get("defer_finish"), True),
        )
        self._epoch += 1
        epoch = self._epoch

        def on_generation(module: Any) -> None:
            if epoch != self._epoch:
                return
            wrapt.wrap_function_wrapper(module, "GenerationMixin.generate", wrapper)
            self._wrapped += ((module.GenerationMixin, "generate"),)

        def on_pipeline(module: Any) -> None:
            if epoch != self._epoch:
                return
            wrapt.wrap_function_wrapper(module, "Pipeline.forward", pipeline_forward_wrapper)
            self._wrapped += ((module.Pipeline, "forward"),)

        wrapt.register_post_import_hook(on_generation, _GENERATION_MODULE)
        if capture:
            wrapt.register_post_import_hook(on_pipeline, _PIPELINE_MODULE)

    def _uninstrument(self, **kwargs: Any) -> None:
        self._epoch += 1
        wrapped, self._wrapped = self._wrapped, ()
        for owner, name in reversed(wrapped):
            unwrap(owner, name)
        instruments, self._instruments = self._instruments, None
        if instruments is not None:
            from otel_llm.instrumentation._finisher import FINISHER

            FINISHER.flush(5.0)  # calls still queued record into these instruments before they detach
            instruments.close()
