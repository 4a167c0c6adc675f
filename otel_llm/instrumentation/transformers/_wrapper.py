"""The ``GenerationMixin.generate`` wrapper: one span per call, exact counts, per-token timing.

Span: ``text_completion {gen_ai.request.model}``, kind INTERNAL (the model runs
in this process; semconv allows INTERNAL for in-process inference).
``text_completion`` because ``generate()`` continues token sequences; chat
templating, if any, happened before the call and is invisible here.

Obligations (tested): our errors never reach the host (``report_error``), the
host's exceptions propagate unchanged and are recorded with ``error.type``;
the user's streamer / logits processors / stopping criteria are never
mutated or lost; nested ``generate()`` calls (a model whose own ``generate``
calls ``super().generate``) produce one span.
"""

from __future__ import annotations

import contextvars
from time import perf_counter_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import semconv as sc
from otel_llm._content import input_messages_json, output_messages_json
from otel_llm._gpu import current_gpu_uuids as gpu_uuids
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation._genai import (
    GenAIInstruments,
    TokenTimeline,
    metric_attributes,
    record_generation,
)
from otel_llm.instrumentation.transformers._hooks import TimingLogitsProcessor, TimingStreamer
from otel_llm.instrumentation.transformers._usage import (
    as_id_set,
    input_tokens_per_prompt,
    output_tokens_per_sequence,
)

_COMPONENT = "transformers.generate"
_IN_GENERATE: contextvars.ContextVar[bool] = contextvars.ContextVar("otel_llm_in_generate", default=False)
# Set by the pipeline wrapper (content capture only) so generate() can decode text.
PIPELINE_TOKENIZER: contextvars.ContextVar[Any] = contextvars.ContextVar("otel_llm_pipeline_tokenizer", default=None)

# generate(self, inputs, generation_config, logits_processor, stopping_criteria,
#          prefix_allowed_tokens_fn, synced_gpus, assistant_model, streamer, ...)
_POS_INPUTS, _POS_CONFIG, _POS_LOGITS, _POS_STREAMER = 0, 1, 2, 7


def model_name(model: Any) -> str:
    for obj, attr in ((model, "name_or_path"), (getattr(model, "config", None), "name_or_path"),
                      (getattr(model, "config", None), "_name_or_path")):
        value = getattr(obj, attr, None) if obj is not None else None
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


class _Params:
    """Generation parameters as ``generate()`` will resolve them: kwarg > GenerationConfig argument > model's."""

    __slots__ = ("arg_config", "kwargs", "model_config")

    def __init__(self, kwargs: dict[str, Any], arg_config: Any, model_config: Any) -> None:
        self.kwargs = kwargs
        self.arg_config = arg_config
        self.model_config = model_config

    def get(self, name: str) -> Any:
        value = self.kwargs.get(name)
        if value is None and self.arg_config is not None:
            value = getattr(self.arg_config, name, None)
        if value is None and self.model_config is not None:
            value = getattr(self.model_config, name, None)
        return value


class _Call:
    """State of one instrumented ``generate()`` call."""

    __slots__ = (
        "args", "ctx", "enc_dec", "hook", "input_ids", "kwargs", "max_new", "model", "params", "request_model",
        "span", "start_ns", "streaming", "timeline", "token",
    )

    def __init__(self, owner: GenerateWrapper, model: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.args = args
        self.kwargs = kwargs
        arg_config = args[_POS_CONFIG] if len(args) > _POS_CONFIG else kwargs.get("generation_config")
        self.params = _Params(kwargs, arg_config, getattr(model, "generation_config", None))
        self.input_ids = args[_POS_INPUTS] if args else kwargs.get("inputs", kwargs.get("input_ids"))
        self.request_model = model_name(model)
        self.enc_dec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
        self.ctx: Any = None
        self.timeline = TokenTimeline()
        self.start_ns = self.timeline.start_ns
        self.token: Any = None

        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_TEXT_COMPLETION,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_TRANSFORMERS,
            sc.GEN_AI_REQUEST_MODEL: self.request_model,
        }
        max_new = self.max_new = self.max_new_tokens()
        if max_new is not None:
            attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_new
        if self.params.get("do_sample"):
            for name, key in (("temperature", sc.GEN_AI_REQUEST_TEMPERATURE), ("top_p", sc.GEN_AI_REQUEST_TOP_P),
                              ("top_k", sc.GEN_AI_REQUEST_TOP_K)):
                value = self.params.get(name)
                if value is not None:
                    attrs[key] = value
        n_return = self.params.get("num_return_sequences")
        if n_return and n_return > 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = int(n_return)
        stops = kwargs.get("stop_strings")
        if stops:
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stops] if isinstance(stops, str) else list(stops)

        # the per-step hook
        user_streamer = args[_POS_STREAMER] if len(args) > _POS_STREAMER else kwargs.get("streamer")
        self.streaming = user_streamer is not None
        attrs[sc.GEN_AI_REQUEST_STREAM] = self.streaming
        self.hook: Any = None
        if self.streaming or self._streamer_allowed():
            self.hook = TimingStreamer(self.timeline, user_streamer)
            if len(args) > _POS_STREAMER:
                args = (*args[:_POS_STREAMER], self.hook, *args[_POS_STREAMER + 1 :])
            else:
                kwargs["streamer"] = self.hook
        elif not self._custom_path():
            from transformers import LogitsProcessorList

            self.hook = TimingLogitsProcessor(self.timeline)
            user_list = args[_POS_LOGITS] if len(args) > _POS_LOGITS else kwargs.get("logits_processor")
            merged = LogitsProcessorList(list(user_list or ()) + [self.hook])  # a copy: the user's list is untouched
            if len(args) > _POS_LOGITS:
                args = (*args[:_POS_LOGITS], merged, *args[_POS_LOGITS + 1 :])
            else:
                kwargs["logits_processor"] = merged
        self.args = args
        gpus = gpu_uuids()
        if gpus:
            attrs[sc.OTEL_LLM_GPU_UUIDS] = list(gpus)

        self.span = owner.tracer.start_span(
            f"{sc.OPERATION_TEXT_COMPLETION} {self.request_model}", kind=SpanKind.INTERNAL, attributes=attrs
        )

    def _custom_path(self) -> bool:
        return self.kwargs.get("custom_generate") is not None or self.kwargs.get("cache_implementation") == "paged"

    def _streamer_allowed(self) -> bool:
        if self._custom_path():
            return False
        beams = self.params.get("num_beams")
        return beams is None or int(beams) == 1

    def max_new_tokens(self) -> int | None:
        value = self.params.get("max_new_tokens")
        if value is not None:
            return int(value)
        max_length = self.kwargs.get("max_length")
        if max_length is None and self.params.arg_config is not None:
            max_length = getattr(self.params.arg_config, "max_length", None)
        if max_length is not None and self.input_ids is not None and not self._encoder_decoder():
            return max(int(max_length) - int(self.input_ids.shape[-1]), 0)
        return max_length

    def _encoder_decoder(self) -> bool:
        return self.enc_dec

    # -- end of call -----------------------------------------------------------
    def finish(self, owner: GenerateWrapper, result: Any, error: BaseException | None) -> None:
        end_ns = perf_counter_ns()
        span = self.span
        error_type = type(error).__qualname__ if error is not None else None
        input_total = output_total = None
        summary = None
        span_attrs: dict[str, Any] = {}
        try:
            steps = None
            if error is None:
                input_total, output_total, steps = self._usage(owner, result, span_attrs)
            if not getattr(self.hook, "failed", False):
                summary = self.timeline.summary(owner.stall_threshold_s, tokens=steps)
        except Exception as exc:  # ours
            report_error(_COMPONENT, exc)
        if error is not None:
            span_attrs[sc.ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.record_exception(error)
        attrs = metric_attributes(
            sc.OPERATION_TEXT_COMPLETION, sc.PROVIDER_TRANSFORMERS, self.request_model,
            self.request_model if error is None else None, error_type,
        )
        try:
            record_generation(
                span, owner.instruments, attrs, duration_s=(end_ns - self.start_ns) / 1e9, summary=summary,
                input_tokens=input_total, output_tokens=output_total,
                context=self.ctx if self.ctx is not None else trace.set_span_in_context(span),
                span_attributes=span_attrs,
            )
        except Exception as exc:
            report_error(_COMPONENT, exc)
        span.end()

    def _usage(
        self, owner: GenerateWrapper, result: Any, span_attrs: dict[str, Any]
    ) -> tuple[int | None, int | None, int | None]:
        sequences = getattr(result, "sequences", result)
        if not hasattr(sequences, "shape") or len(sequences.shape) != 2:
            return None, None, None
        eos = as_id_set(self.params.get("eos_token_id"))
        pad_ids = as_id_set(self.params.get("pad_token_id"))
        pad = min(pad_ids) if pad_ids else None
        mask = self.kwargs.get("attention_mask")
        ids = self.input_ids
        if ids is None and mask is None and "inputs_embeds" in self.kwargs:
            emb = self.kwargs["inputs_embeds"]
            per_prompt = [int(emb.shape[1])] * int(emb.shape[0])
        else:
            per_prompt = input_tokens_per_prompt(ids, mask, pad, eos)
        if self._encoder_decoder():
            dec = self.kwargs.get("decoder_input_ids")
            offset = int(dec.shape[-1]) if dec is not None else 1
        elif ids is not None and hasattr(ids, "shape"):
            offset = int(ids.shape[-1])
        else:
            offset = 0  # inputs_embeds only: generate() returns new tokens only
        generated = [row[offset:] for row in sequences.tolist()]  # one tolist, no tensor ops
        steps = max(int(sequences.shape[-1]) - offset, 0)
        per_seq, reasons = output_tokens_per_sequence(generated, eos, pad, self.max_new)
        batch = len(per_prompt)
        span_attrs[sc.GEN_AI_RESPONSE_MODEL] = self.request_model
        span_attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        span_attrs[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE] = per_prompt
        span_attrs[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE] = per_seq
        span_attrs[sc.OTEL_LLM_BATCH_SIZE] = batch
        if batch:
            attrs, key = owner.batch_attributes(self.request_model)
            hist = owner.instruments.batch_size
            if owner.instruments.preaggregated:  # cached key; no exemplar (a batch size points at no one request)
                hist.record_prepared(batch, key, attrs, None)
            else:
                hist.record(batch, attrs)
        if owner.capture_content:
            self._content(ids, mask, generated, per_seq, reasons)
        return sum(per_prompt), sum(per_seq), steps

    def _content(self, ids: Any, mask: Any, generated: list[list[int]], per_seq: list[int], reasons: list[str]) -> None:
        tokenizer = (
            self.kwargs.get("tokenizer")
            or getattr(getattr(self.hook, "_inner", None), "tokenizer", None)
            or PIPELINE_TOKENIZER.get()
            or getattr(self.model, "_otel_llm_tokenizer", None)
        )
        if tokenizer is None or ids is None:
            return
        prompts = []
        for i, row in enumerate(ids.tolist()):
            if mask is not None:
                row = [t for t, m in zip(row, mask[i].tolist(), strict=False) if m]
            prompts.append(tokenizer.decode(row, skip_special_tokens=True))
        inp, cut_in = input_messages_json([("user", p) for p in prompts])
        texts = [tokenizer.decode(row[:n], skip_special_tokens=True)
                 for row, n in zip(generated, per_seq, strict=False)]
        out, cut_out = output_messages_json(texts, reasons)
        self.span.set_attributes({sc.GEN_AI_INPUT_MESSAGES: inp, sc.GEN_AI_OUTPUT_MESSAGES: out})
        if cut_in or cut_out:
            self.span.set_attribute(sc.OTEL_LLM_CONTENT_TRUNCATED, True)


class GenerateWrapper:
    """wrapt wrapper for ``GenerationMixin.generate``; config bound once at ``instrument()``."""

    def __init__(
        self, tracer: trace.Tracer, instruments: GenAIInstruments, *, capture_content: bool, stall_threshold_s: float
    ) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.capture_content = capture_content
        self.stall_threshold_s = stall_threshold_s
        self._batch_attrs: dict[str, tuple[dict[str, Any], frozenset]] = {}

    def batch_attributes(self, request_model: str) -> tuple[dict[str, Any], frozenset]:
        """The ``batch_size`` metric attributes of one model and their key, built once per model name."""
        found = self._batch_attrs.get(request_model)
        if found is None:
            attrs = {sc.GEN_AI_OPERATION_NAME: sc.OPERATION_TEXT_COMPLETION,
                     sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_TRANSFORMERS, sc.GEN_AI_REQUEST_MODEL: request_model}
            found = (attrs, frozenset(attrs.items()))
            if len(self._batch_attrs) < 256:  # bounded: one entry per model name
                self._batch_attrs[request_model] = found
        return found

    def __call__(self, wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        if _IN_GENERATE.get() or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        try:
            call = _Call(self, instance, args, dict(kwargs))
        except Exception as exc:
            report_error(_COMPONENT, exc)
            return wrapped(*args, **kwargs)
        busy = _IN_GENERATE.set(True)
        call.ctx = trace.set_span_in_context(call.span)
        ctx_token = otel_context.attach(call.ctx)
        try:
            result = wrapped(*call.args, **call.kwargs)
        except BaseException as exc:
            self._end(call, None, exc, ctx_token, busy)
            raise
        self._end(call, result, None, ctx_token, busy)
        return result

    def _end(self, call: _Call, result: Any, error: BaseException | None, ctx_token: Any, busy: Any) -> None:
        try:
            otel_context.detach(ctx_token)
            _IN_GENERATE.reset(busy)
        except Exception as exc:
            report_error(_COMPONENT, exc)
        try:
            call.finish(self, result, error)
        except Exception as exc:
            report_error(_COMPONENT, exc)
            try:
                call.span.end()
            except Exception:
                pass


def pipeline_forward_wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
    """Make the pipeline's tokenizer visible to generate() (only installed when content capture is on)."""
    token = PIPELINE_TOKENIZER.set(getattr(instance, "tokenizer", None))
    try:
        return wrapped(*args, **kwargs)
    finally:
        PIPELINE_TOKENIZER.reset(token)
