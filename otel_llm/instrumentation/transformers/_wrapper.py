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

End of a successful call: :meth:`_Call.capture` (request path) stamps the end
and copies what the counts read out of the tensors; :meth:`_Call.complete`
(counts, summary, attributes, metrics, ``span.end(end_time=...)``) then runs
on :data:`~otel_llm.instrumentation._finisher.FINISHER` when the span's
provider exports through batch processors, else inline. Failed calls always
finish inline.
"""

from __future__ import annotations

import contextvars
import functools
import weakref
from time import perf_counter_ns, time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_llm import semconv as sc
from otel_llm._content import input_messages_json, output_messages_json
from otel_llm._gpu import current_gpu_uuids as gpu_uuids
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation._finisher import FINISHER, DeferPolicy, flush_before_collect
from otel_llm.instrumentation._genai import (
    GenAIInstruments,
    TokenTimeline,
    metric_attributes,
    metrics_are_callers,
    record_generation,
)
from otel_llm.instrumentation.transformers._hooks import TimingLogitsProcessor, TimingStreamer
from otel_llm.instrumentation.transformers._usage import (
    SMALL,
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
_FINISH_KWARGS = ("eos_token_id", "pad_token_id", "tokenizer")


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


class _ModelInfo:
    """What is constant per model object: its name, span name, start attributes and metric keys."""

    __slots__ = ("batch_attrs", "batch_key", "enc_dec", "ok_attrs", "request_model", "span_name", "start_attrs")

    def __init__(self, model: Any) -> None:
        name = self.request_model = model_name(model)
        self.enc_dec = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
        self.span_name = f"{sc.OPERATION_TEXT_COMPLETION} {name}"
        self.start_attrs = {
            sc.GEN_AI_OPERATION_NAME: sc.OPERATION_TEXT_COMPLETION,
            sc.GEN_AI_PROVIDER_NAME: sc.PROVIDER_TRANSFORMERS,
            sc.GEN_AI_REQUEST_MODEL: name,
        }
        self.batch_attrs = dict(self.start_attrs)
        self.batch_key = frozenset(self.batch_attrs.items())
        self.ok_attrs = metric_attributes(sc.OPERATION_TEXT_COMPLETION, sc.PROVIDER_TRANSFORMERS, name, name, None)


class _Usage:
    """Plain-Python copy of what the token counts read, taken before ``generate()`` returns to the caller
    (so a caller that reuses its tensors cannot change the counts of a call finished later)."""

    __slots__ = ("ids_rows", "prompt_counts", "mask_rows", "offset", "prompt_shape", "rows", "steps")

    def __init__(self) -> None:
        self.rows: list[list[int]] = []
        self.steps = 0
        self.offset = 0
        self.mask_rows: list[list[int]] | None = None
        self.prompt_counts: list[int] | None = None
        self.ids_rows: list[list[int]] | None = None
        self.prompt_shape: tuple[int, int] | None = None  # (batch, length) when only a shape is known


def _rows(t: Any) -> list[list[int]]:
    rows = t.tolist()
    return rows if not rows or isinstance(rows[0], list) else [rows]


class _Call:
    """State of one instrumented ``generate()`` call."""

    __slots__ = (
        "args", "ctx", "end_ns", "end_wall_ns", "hook", "info", "input_ids", "kwargs", "max_new", "model", "params",
        "span", "span_only", "start_ns", "streaming", "timeline", "usage",
    )

    def __init__(self, owner: GenerateWrapper, model: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        self.model = model
        self.args = args
        self.kwargs = kwargs
        info = self.info = owner.model_info(model)
        arg_config = args[_POS_CONFIG] if len(args) > _POS_CONFIG else kwargs.get("generation_config")
        self.params = _Params(kwargs, arg_config, getattr(model, "generation_config", None))
        self.input_ids = args[_POS_INPUTS] if args else kwargs.get("inputs", kwargs.get("input_ids"))
        self.ctx: Any = None
        self.usage: _Usage | None = None
        self.span_only = False
        self.end_ns = self.end_wall_ns = 0
        self.timeline = TokenTimeline()
        self.start_ns = self.timeline.start_ns

        attrs = dict(info.start_attrs)
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

        self.span = owner.tracer.start_span(info.span_name, kind=SpanKind.INTERNAL, attributes=attrs)
        # TTFT and duration count from here, like the span: our own set-up (first-call imports, GPU
        # discovery) must not make the first token look later than the span's end
        self.timeline.start_ns = self.start_ns = perf_counter_ns()

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
        if max_length is not None and self.input_ids is not None and not self.info.enc_dec:
            return max(int(max_length) - int(self.input_ids.shape[-1]), 0)
        return max_length

    # -- end of call: on the request path ---------------------------------------
    def capture(self, owner: GenerateWrapper, result: Any) -> None:
        """Copy what the counts need out of the tensors (one ``tolist`` each); no counting here."""
        self.span_only = metrics_are_callers()
        sequences = getattr(result, "sequences", result)
        shape = getattr(sequences, "shape", None)
        if shape is None or len(shape) != 2:
            return
        u = _Usage()
        kwargs = self.kwargs
        mask = kwargs.get("attention_mask")
        ids = self.input_ids
        if mask is not None:
            if mask.numel() <= SMALL:
                u.mask_rows = _rows(mask)
            else:
                counts = mask.sum(-1).tolist()
                u.prompt_counts = counts if isinstance(counts, list) else [counts]
        elif ids is None and "inputs_embeds" in kwargs:
            emb = kwargs["inputs_embeds"]
            u.prompt_shape = (int(emb.shape[0]), int(emb.shape[1]))
        if ids is not None and (mask is None or owner.capture_content):
            if ids.numel() <= SMALL or owner.capture_content:
                u.ids_rows = _rows(ids)
            else:  # large and unmasked: count on the tensor now
                eos, pad = self.eos_pad()
                u.prompt_counts = input_tokens_per_prompt(ids, None, pad, eos)
        if self.info.enc_dec:
            dec = kwargs.get("decoder_input_ids")
            u.offset = int(dec.shape[-1]) if dec is not None else 1
        elif ids is not None and hasattr(ids, "shape"):
            u.offset = int(ids.shape[-1])
        # else inputs_embeds only: generate() returns new tokens only (offset 0)
        u.rows = sequences.tolist()
        u.steps = max(int(shape[-1]) - u.offset, 0)
        self.usage = u
        # a queued call keeps only what finishing reads: not the caller's tensors (caches, embeddings)
        slim = {k: kwargs[k] for k in _FINISH_KWARGS if k in kwargs}
        self.kwargs = self.params.kwargs = slim
        self.args = ()
        self.input_ids = None

    def eos_pad(self) -> tuple[frozenset[int], int | None]:
        eos = as_id_set(self.params.get("eos_token_id"))
        pad_ids = as_id_set(self.params.get("pad_token_id"))
        return eos, (min(pad_ids) if pad_ids else None)

    # -- end of call: on the finisher (or inline) ----------------------------------
    def complete(self, owner: GenerateWrapper, error: BaseException | None) -> None:
        """Counts, summary, span attributes, metrics, ``span.end(end_time)``: everything ``capture`` enabled."""
        span = self.span
        try:
            self._complete(owner, error)
        except Exception as exc:  # ours
            report_error(_COMPONENT, exc)
        span.end(end_time=self.end_wall_ns)

    def _complete(self, owner: GenerateWrapper, error: BaseException | None) -> None:
        span = self.span
        error_type = type(error).__qualname__ if error is not None else None
        input_total = output_total = None
        summary = None
        span_attrs: dict[str, Any] = {}
        try:
            steps = None
            if error is None and self.usage is not None:
                input_total, output_total, steps = self._count(owner, self.usage, span_attrs)
            if not getattr(self.hook, "failed", False):
                summary = self.timeline.summary(owner.stall_threshold_s, tokens=steps)
        except Exception as exc:  # ours
            report_error(_COMPONENT, exc)
        if error is not None:
            span_attrs[sc.ERROR_TYPE] = error_type
            span.set_status(Status(StatusCode.ERROR, str(error)))
            span.record_exception(error)
            attrs = metric_attributes(
                sc.OPERATION_TEXT_COMPLETION, sc.PROVIDER_TRANSFORMERS, self.info.request_model, None, error_type
            )
        else:
            attrs = self.info.ok_attrs
        record_generation(
            span, owner.instruments, attrs, duration_s=(self.end_ns - self.start_ns) / 1e9, summary=summary,
            input_tokens=input_total, output_tokens=output_total, context=self.ctx, span_attributes=span_attrs,
            record_metrics=not self.span_only,
        )

    def _count(self, owner: GenerateWrapper, u: _Usage, span_attrs: dict[str, Any]) -> tuple[int, int, int]:
        eos, pad = self.eos_pad()
        if u.mask_rows is not None:
            per_prompt = [len(row) - row.count(0) for row in u.mask_rows]
        elif u.prompt_counts is not None:
            per_prompt = [int(c) for c in u.prompt_counts]
        elif u.prompt_shape is not None:
            per_prompt = [u.prompt_shape[1]] * u.prompt_shape[0]
        elif u.ids_rows is not None:
            if pad is not None and pad not in eos:  # generate() infers its mask exactly so
                per_prompt = [len(row) - row.count(pad) for row in u.ids_rows]
            else:
                per_prompt = [len(row) for row in u.ids_rows]
        else:
            per_prompt = []
        offset = u.offset
        generated = [row[offset:] for row in u.rows] if offset else u.rows
        per_seq, reasons = output_tokens_per_sequence(generated, eos, pad, self.max_new)
        batch = len(per_prompt)
        request_model = self.info.request_model
        span_attrs[sc.GEN_AI_RESPONSE_MODEL] = request_model
        span_attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
        span_attrs[sc.OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE] = per_prompt
        span_attrs[sc.OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE] = per_seq
        span_attrs[sc.OTEL_LLM_BATCH_SIZE] = batch
        if batch and not self.span_only:
            hist = owner.instruments.batch_size
            if owner.instruments.preaggregated:  # cached key; no exemplar (a batch size points at no one request)
                hist.record_prepared(batch, self.info.batch_key, self.info.batch_attrs, None)
            else:
                hist.record(batch, self.info.batch_attrs)
        if owner.capture_content:
            self._content(u, generated, per_seq, reasons)
        return sum(per_prompt), sum(per_seq), u.steps

    def _content(self, u: _Usage, generated: list[list[int]], per_seq: list[int], reasons: list[str]) -> None:
        tokenizer = (
            self.kwargs.get("tokenizer")
            or getattr(getattr(self.hook, "_inner", None), "tokenizer", None)
            or PIPELINE_TOKENIZER.get()
            or getattr(self.model, "_otel_llm_tokenizer", None)
        )
        if tokenizer is None or u.ids_rows is None:
            return
        prompts = []
        for i, row in enumerate(u.ids_rows):
            if u.mask_rows is not None:
                row = [t for t, m in zip(row, u.mask_rows[i], strict=False) if m]
            prompts.append(tokenizer.decode(row, skip_special_tokens=True))
        inp, cut_in = input_messages_json([("user", p) for p in prompts])
        texts = [tokenizer.decode(row[:n], skip_special_tokens=True)
                 for row, n in zip(generated, per_seq, strict=False)]
        out, cut_out = output_messages_json(texts, reasons)
        self.span.set_attributes({sc.GEN_AI_INPUT_MESSAGES: inp, sc.GEN_AI_OUTPUT_MESSAGES: out})
        if cut_in or cut_out:
            self.span.set_attribute(sc.OTEL_LLM_CONTENT_TRUNCATED, True)


class GenerateWrapper:
    """wrapt wrapper for ``GenerationMixin.generate``; config bound once at ``instrument()``.

    ``defer_finish``: finish successful calls on :data:`~otel_llm.instrumentation._finisher.FINISHER`
    when the span's provider exports asynchronously (see :mod:`otel_llm.instrumentation._finisher`).
    """

    def __init__(
        self, tracer: trace.Tracer, instruments: GenAIInstruments, *, capture_content: bool, stall_threshold_s: float,
        defer_finish: bool = False,
    ) -> None:
        self.tracer = tracer
        self.instruments = instruments
        self.capture_content = capture_content
        self.stall_threshold_s = stall_threshold_s
        self.defer = DeferPolicy(defer_finish)
        self._models: weakref.WeakKeyDictionary[Any, _ModelInfo] = weakref.WeakKeyDictionary()
        if defer_finish:
            instruments.before_collect(flush_before_collect)

    def model_info(self, model: Any) -> _ModelInfo:
        """Per-model constants, built once per model object (weakly held)."""
        try:
            info = self._models.get(model)
            if info is None:
                info = self._models[model] = _ModelInfo(model)
            return info
        except TypeError:  # not weak-referenceable
            return _ModelInfo(model)

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
        call.end_ns = perf_counter_ns()
        call.end_wall_ns = time_ns()
        try:
            otel_context.detach(ctx_token)
            _IN_GENERATE.reset(busy)
        except Exception as exc:
            report_error(_COMPONENT, exc)
        try:
            if error is None:
                call.capture(self, result)
                if self.defer.allows(call.span):
                    FINISHER.submit(functools.partial(call.complete, self, None))
                    return
            else:
                call.span_only = metrics_are_callers()
            call.complete(self, error)  # errors finish inline: the traceback is recorded as raised
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
