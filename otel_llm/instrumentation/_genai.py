"""The GenAI recording core shared by every otel-llm instrumentor.

Three pieces, all cheap enough for the token hot path:

* :class:`GenAIInstruments` -- every GenAI server histogram/counter, created
  once per meter with semconv names, units, descriptions and explicit bucket
  advice (so even a MeterProvider without our Views gets LLM-sized buckets).
* :class:`TokenTimeline` -- one ``perf_counter_ns()`` appended per token (or
  per decode step); all statistics computed once, at the end, with a single
  sort (:meth:`TokenTimeline.summary`).
* :func:`record_generation` -- writes a finished call onto its span
  (semconv attributes + ``otel_llm.token_gap.*``) and records the metrics with
  low-cardinality attributes only (:func:`metric_attributes`).

Per-gap histogram points
------------------------
``otel_llm.server.token_gap`` counts every inter-token gap: the fleet-wide
gap distribution (p99 inter-token latency across all requests, as vLLM's
``inter_token_latency_seconds``) cannot be rebuilt from per-request
summaries. One SDK ``Histogram.record`` costs ~5-7 us, so recording 31 gaps
one by one would cost ~0.2 ms of CPU per 32-token call. Two paths, both
exact:

* given an SDK ``MeterProvider`` (``GenAIInstruments(meter,
  meter_provider=mp)``), every GenAI histogram is pre-aggregated in place
  (:mod:`otel_llm.instrumentation._histograms`) and a request's sorted gaps
  are binned at once (one ``bisect`` per bucket bound, ~3 us per request);
  readers collect them through a MetricProducer;
* otherwise (API proxy / no-op provider), the gap list is queued (one
  ``deque.append``) and recorded value by value by the SDK's own collection
  cycle: an observable-instrument callback drains the queue into the
  histogram just before the reader collects. Bounded: when no reader ever
  collects, the oldest gaps are dropped and counted (``otel_llm.dropped``).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from time import perf_counter_ns
from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Span, get_current_span

from otel_llm import environment_variables as ev
from otel_llm import semconv as sc
from otel_llm._env import env_bool, env_float
from otel_llm._gpu import current_gpu_uuids
from otel_llm._selftelemetry import report_dropped, report_error
from otel_llm._views import bucket_boundaries

__all__ = [
    "DEFAULT_STALL_THRESHOLD_MS",
    "GenAIInstruments",
    "TimelineSummary",
    "TokenTimeline",
    "metric_attributes",
    "metrics_are_callers",
    "metrics_recorded_by_caller",
    "record_generation",
    "stall_threshold_s",
    "stamp_gpu_uuids",
]

DEFAULT_STALL_THRESHOLD_MS = 250.0
_MAX_PENDING_GAPS = 262_144  # ~8 MiB of floats at most waiting for the next collection


def stall_threshold_s(arg_ms: float | None = None) -> float:
    """Gap (seconds) above which a gap is a stall. Argument (ms) > ``OTEL_LLM_STALL_THRESHOLD_MS`` > 250 ms."""
    ms = env_float(ev.OTEL_LLM_STALL_THRESHOLD_MS, arg_ms, DEFAULT_STALL_THRESHOLD_MS, minimum=0.0)
    assert ms is not None
    return ms / 1000.0


# ---------------------------------------------------------------------------
# instruments
# ---------------------------------------------------------------------------
_HISTOGRAMS: tuple[tuple[str, str, str, str], ...] = (
    ("request_duration", sc.GEN_AI_SERVER_REQUEST_DURATION, "s",
     "Generative AI server request duration such as time-to-last byte or last output token."),
    ("time_to_first_token", sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "s",
     "Time to generate first token for successful responses."),
    ("time_per_output_token", sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, "s",
     "Time per output token generated after the first token for successful responses."),
    ("token_usage", sc.GEN_AI_CLIENT_TOKEN_USAGE, "{token}", "Number of input and output tokens used."),
    ("token_gap", sc.OTEL_LLM_SERVER_TOKEN_GAP, "s",
     "Every inter-token gap: time between consecutive output tokens (decode steps) of one request."),
    ("queue_duration", sc.OTEL_LLM_SERVER_QUEUE_DURATION, "s", "Time a request waited before its prefill began."),
    ("prefill_duration", sc.OTEL_LLM_SERVER_PREFILL_DURATION, "s", "Time spent in prefill (prompt processing)."),
    ("decode_duration", sc.OTEL_LLM_SERVER_DECODE_DURATION, "s", "Time from the first to the last output token."),
    ("batch_size", sc.OTEL_LLM_SERVER_BATCH_SIZE, "{sequence}",
     "Sequences generated together in one call or engine step."),
)


class GenAIInstruments:
    """Every GenAI server instrument on one meter. Create once per instrumentor/meter, share freely.

    Histogram attributes (``request_duration``, ``time_to_first_token``, ...,
    ``batch_size``) all offer ``record(value, attributes, context)``. Given the
    SDK ``meter_provider`` behind ``meter`` (and unless ``preaggregate`` /
    ``OTEL_LLM_PREAGGREGATE`` is false) they are pre-aggregated in place and
    exported through a MetricProducer (:mod:`otel_llm.instrumentation._histograms`:
    ~1-2 us per value instead of ~6 us+); otherwise they are SDK instruments.
    Call :meth:`close` when the owner is uninstrumented.
    """

    def __init__(self, meter: Meter, *, meter_provider: Any = None, preaggregate: bool | None = None) -> None:
        self.stalls = meter.create_counter(
            sc.OTEL_LLM_SERVER_STALLS, unit="{gap}", description="Inter-token gaps longer than the stall threshold."
        )
        self._detach: Any = None
        self._before_collect: list[Any] = []
        self._usage_keys: dict[frozenset, tuple[frozenset, dict[str, Any], frozenset, dict[str, Any]]] = {}
        self.preaggregated = False
        self._exemplar_filter: Any = None
        self._trace_based = False
        if meter_provider is not None and env_bool(ev.OTEL_LLM_PREAGGREGATE, preaggregate, True):
            self.preaggregated = self._attach(meter, meter_provider)
        if not self.preaggregated:
            for attr, name, unit, description in _HISTOGRAMS:
                setattr(self, attr, meter.create_histogram(
                    name, unit=unit, description=description,
                    explicit_bucket_boundaries_advisory=list(bucket_boundaries(name) or ()) or None,
                ))
        self._pending: deque[tuple[Sequence[float], Mapping[str, Any], Context | None]] = deque()
        self._pending_n = 0
        self._lock = threading.Lock()
        if not self.preaggregated:
            # Drains deferred gap points at collection time; it never reports an observation of its own.
            meter.create_observable_up_down_counter(
                "otel_llm.internal.deferred_flush",
                callbacks=[self._flush_callback],
                unit="1",
                description="otel-llm internal: records deferred per-token gap points at collection (no data).",
            )

    def _attach(self, meter: Meter, meter_provider: Any) -> bool:
        try:
            from opentelemetry.sdk.metrics import MeterProvider, TraceBasedExemplarFilter
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope

            if not isinstance(meter_provider, MeterProvider):
                return False  # API proxy / no-op provider: SDK instruments (they follow a later real provider)
            from otel_llm.instrumentation._histograms import HistogramProducer, PreAggregatedHistogram
            from otel_llm.instrumentation.vllm._producer import attach_producer

            scope = getattr(meter, "_instrumentation_scope", None) or InstrumentationScope("otel_llm")
            exemplar_filter = getattr(getattr(meter_provider, "_sdk_config", None), "exemplar_filter", None)
            self._exemplar_filter = exemplar_filter
            self._trace_based = type(exemplar_filter) is TraceBasedExemplarFilter
            producer = HistogramProducer(scope, before=self._before_collect)
            for attr, name, unit, description in _HISTOGRAMS:
                hist = PreAggregatedHistogram(
                    name, unit, description, bucket_boundaries(name) or sc.BUCKETS_STAGE_S,
                    exemplar_filter=exemplar_filter if attr != "token_gap" else None,
                )
                producer.histograms.append(hist)
                setattr(self, attr, hist)
            self._detach = attach_producer(meter_provider, producer)
            return True
        except Exception as exc:  # fall back to SDK instruments
            report_error("genai.preaggregate", exc)
            return False

    def exemplar_ids(self, context: Context | None) -> tuple[int, int] | None:
        """``(span_id, trace_id)`` when the provider's exemplar filter samples ``context`` (decided once per request)."""
        flt = self._exemplar_filter
        if flt is None:
            return None
        if self._trace_based:  # the default filter: decided by the span's sampled flag, one lookup
            ctx = get_current_span(context).get_span_context()
            return (ctx.span_id, ctx.trace_id) if ctx.is_valid and ctx.trace_flags.sampled else None
        if not flt.should_sample(0.0, 0, None, context):
            return None
        ctx = get_current_span(context).get_span_context()
        return (ctx.span_id, ctx.trace_id) if ctx.is_valid else None

    def usage_keys(self, key: frozenset, metric_attrs: Mapping[str, Any]) -> tuple[
        frozenset, dict[str, Any], frozenset, dict[str, Any]
    ]:
        """``(input key, input attrs, output key, output attrs)`` of ``gen_ai.client.token.usage``, built once
        per metric-attribute set (bounded: past 1024 sets they are built per call)."""
        found = self._usage_keys.get(key)
        if found is None:
            in_attrs = {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT}
            out_attrs = {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT}
            found = (frozenset(in_attrs.items()), in_attrs, frozenset(out_attrs.items()), out_attrs)
            if len(self._usage_keys) < 1024:
                self._usage_keys[key] = found
        return found

    def before_collect(self, hook: Any) -> None:
        """Call ``hook()`` before each metric collection (a deferred-work flush), once per distinct hook."""
        if hook not in self._before_collect:
            self._before_collect.append(hook)

    # -- gap points ----------------------------------------------------------
    def record_gaps(
        self, ordered_s: Sequence[float], attributes: Mapping[str, Any], context: Context | None = None
    ) -> None:
        """Count every gap of one request (``ordered_s`` ascending) in ``otel_llm.server.token_gap``."""
        if self.preaggregated:
            self.token_gap.add_sorted(ordered_s, attributes)
        else:
            self.defer_gaps(ordered_s, attributes, context)

    def close(self) -> None:
        """Detach the pre-aggregated histograms from the MeterProvider (instrumentor uninstrument)."""
        detach, self._detach = self._detach, None
        if detach is not None:
            detach()

    def defer_gaps(self, gaps_s: Sequence[float], attributes: Mapping[str, Any], context: Context | None) -> None:
        """Queue per-gap points for ``token_gap`` (recorded at the next collection)."""
        n = len(gaps_s)
        if not n:
            return
        with self._lock:
            self._pending.append((gaps_s, attributes, context))
            self._pending_n += n
            dropped = 0
            while self._pending_n > _MAX_PENDING_GAPS and len(self._pending) > 1:
                old = self._pending.popleft()
                self._pending_n -= len(old[0])
                dropped += len(old[0])
        if dropped:
            report_dropped("token_gap", "queue_full", dropped)

    def flush_gaps(self) -> int:
        """Record every queued gap point now; returns how many were recorded."""
        with self._lock:
            items = list(self._pending)
            self._pending.clear()
            self._pending_n = 0
        record = self.token_gap.record
        n = 0
        for gaps, attrs, ctx in items:
            for g in gaps:
                record(g, attrs, ctx)
            n += len(gaps)
        return n

    def _flush_callback(self, options: CallbackOptions) -> list[Observation]:
        try:
            for hook in self._before_collect:
                hook()
            self.flush_gaps()
        except Exception as exc:  # never fail a collection
            report_error("genai.flush_gaps", exc)
        return []


# ---------------------------------------------------------------------------
# timeline
# ---------------------------------------------------------------------------
class TimelineSummary:
    """Statistics of one generation's token arrival times (seconds)."""

    __slots__ = (
        "gap_max", "gap_p50", "gap_p90", "gap_p99", "gaps", "sorted_gaps", "stall_threshold", "stalls", "tokens",
        "tpot", "ttft",
    )

    def __init__(
        self,
        tokens: int,
        ttft: float | None,
        tpot: float | None,
        gaps: list[float],
        gap_p50: float | None,
        gap_p90: float | None,
        gap_p99: float | None,
        gap_max: float | None,
        stalls: int,
        stall_threshold: float,
        sorted_gaps: list[float] | None = None,
    ) -> None:
        self.sorted_gaps = sorted_gaps if sorted_gaps is not None else sorted(gaps)
        self.tokens = tokens
        self.ttft = ttft
        self.tpot = tpot
        self.gaps = gaps
        self.gap_p50 = gap_p50
        self.gap_p90 = gap_p90
        self.gap_p99 = gap_p99
        self.gap_max = gap_max
        self.stalls = stalls
        self.stall_threshold = stall_threshold

    def __repr__(self) -> str:
        return (
            f"TimelineSummary(tokens={self.tokens}, ttft={self.ttft}, tpot={self.tpot}, p50={self.gap_p50}, "
            f"p90={self.gap_p90}, p99={self.gap_p99}, max={self.gap_max}, stalls={self.stalls})"
        )


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method) of pre-sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


class TokenTimeline:
    """Token arrival times of one generation, as ``perf_counter_ns`` integers.

    Hot path: ``timeline.mark()`` (or ``timeline.append(perf_counter_ns())``)
    once per emitted token or decode step -- one list append, ~0.1 us.
    Everything else happens once in :meth:`summary`.
    """

    __slots__ = ("append", "start_ns", "times")

    def __init__(self, start_ns: int | None = None) -> None:
        self.start_ns = perf_counter_ns() if start_ns is None else start_ns
        self.times: list[int] = []
        self.append = self.times.append

    def mark(self) -> None:
        self.times.append(perf_counter_ns())

    def __len__(self) -> int:
        return len(self.times)

    def summary(self, stall_threshold: float, tokens: int | None = None) -> TimelineSummary:
        """Statistics over the first ``tokens`` marks (all when None).

        ``ttft`` = first mark - start; ``tpot`` = (last - first) / (n - 1);
        gaps are consecutive differences (n - 1 of them); percentiles use
        linear interpolation; ``stalls`` counts gaps > ``stall_threshold`` s.
        """
        times = self.times if tokens is None or tokens >= len(self.times) else self.times[: max(tokens, 0)]
        n = len(times)
        if n == 0:
            return TimelineSummary(0, None, None, [], None, None, None, None, 0, stall_threshold)
        ttft = (times[0] - self.start_ns) / 1e9
        if n == 1:
            return TimelineSummary(1, ttft, None, [], None, None, None, None, 0, stall_threshold)
        gaps = [(b - a) / 1e9 for a, b in zip(times, times[1:], strict=False)]
        ordered = sorted(gaps)
        stalls = 0
        if ordered[-1] > stall_threshold:
            # count from the top of the sorted list: usually zero or a handful
            for g in reversed(ordered):
                if g > stall_threshold:
                    stalls += 1
                else:
                    break
        return TimelineSummary(
            n,
            ttft,
            (times[-1] - times[0]) / 1e9 / (n - 1),
            gaps,
            _quantile(ordered, 0.50),
            _quantile(ordered, 0.90),
            _quantile(ordered, 0.99),
            ordered[-1],
            stalls,
            stall_threshold,
            ordered,
        )


# ---------------------------------------------------------------------------
# writing a finished call
# ---------------------------------------------------------------------------
def metric_attributes(
    operation: str,
    provider: str,
    request_model: str | None,
    response_model: str | None = None,
    error_type: str | None = None,
    server_address: str | None = None,
    server_port: int | None = None,
) -> dict[str, Any]:
    """The ONLY attributes GenAI metrics carry: operation, provider, models, error.type, server address/port."""
    attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation, sc.GEN_AI_PROVIDER_NAME: provider}
    if request_model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = request_model
    if response_model:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
    if error_type:
        attrs[sc.ERROR_TYPE] = error_type
    if server_address:
        attrs[sc.SERVER_ADDRESS] = server_address
    if server_port:
        attrs[sc.SERVER_PORT] = server_port
    return attrs


_SPAN_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("otel_llm_genai_span_only", default=False)


@contextlib.contextmanager
def metrics_recorded_by_caller() -> Iterator[None]:
    """Inside this block :func:`record_generation` annotates spans but records no metrics.

    For a layer that owns a request's ``gen_ai.server.*`` points (the
    OpenAI-server middleware of the reference server) while an inner
    instrumentor (transformers ``generate()``) still adds its span: each
    request then yields exactly one set of GenAI metric points.
    """
    token = _SPAN_ONLY.set(True)
    try:
        yield
    finally:
        _SPAN_ONLY.reset(token)


def metrics_are_callers() -> bool:
    """True inside :func:`metrics_recorded_by_caller` (read it on the request's thread, before deferring)."""
    return _SPAN_ONLY.get()


def record_generation(
    span: Span | None,
    instruments: GenAIInstruments,
    metric_attrs: Mapping[str, Any],
    *,
    duration_s: float,
    summary: TimelineSummary | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    context: Context | None = None,
    span_attributes: Mapping[str, Any] | None = None,
    record_metrics: bool | None = None,
) -> None:
    """Write one finished generation onto ``span`` and into the metrics.

    Span (one ``set_attributes`` call, merged with ``span_attributes``):
    ``gen_ai.usage.*`` (when known), ``otel_llm.response.time_to_first_token``,
    ``otel_llm.response.time_per_output_token``, ``otel_llm.token_gap.{p50,p90,p99,max,stalls,
    stall_threshold}``. Metrics: request duration always; TTFT / TPOT only when
    ``error.type`` is absent (semconv: "for successful responses"); token usage
    by ``gen_ai.token.type``; every gap (see module docstring); stalls.
    ``metric_attrs`` must come from :func:`metric_attributes` (low cardinality).
    ``context`` is the span's context, for exemplars. ``record_metrics``: None = unless inside
    :func:`metrics_recorded_by_caller` (pass the value read on the request's thread when calling elsewhere).
    """
    ok = sc.ERROR_TYPE not in metric_attrs
    timed = summary is not None and summary.ttft is not None
    if span is not None and span.is_recording():
        attrs: dict[str, Any] = dict(span_attributes) if span_attributes else {}
        if input_tokens is not None:
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
        if output_tokens is not None:
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        if timed:
            attrs[sc.OTEL_LLM_TTFT] = summary.ttft
            if summary.tpot is not None:
                attrs[sc.OTEL_LLM_TPOT] = summary.tpot
                attrs[sc.OTEL_LLM_GAP_P50] = summary.gap_p50
                attrs[sc.OTEL_LLM_GAP_P90] = summary.gap_p90
                attrs[sc.OTEL_LLM_GAP_P99] = summary.gap_p99
                attrs[sc.OTEL_LLM_GAP_MAX] = summary.gap_max
                attrs[sc.OTEL_LLM_GAP_STALLS] = summary.stalls
                attrs[sc.OTEL_LLM_STALL_THRESHOLD] = summary.stall_threshold
        span.set_attributes(attrs)

    if record_metrics is None:
        record_metrics = not _SPAN_ONLY.get()
    if not record_metrics:
        return
    if instruments.preaggregated:
        # one attribute key and one exemplar decision for the whole request; usage keys cached per attribute set
        ex = instruments.exemplar_ids(context)
        key = frozenset(metric_attrs.items())
        instruments.request_duration.record_prepared(duration_s, key, metric_attrs, ex)
        if timed and ok:
            instruments.time_to_first_token.record_prepared(summary.ttft, key, metric_attrs, ex)
            if summary.tpot is not None:
                instruments.time_per_output_token.record_prepared(summary.tpot, key, metric_attrs, ex)
        if input_tokens is not None or output_tokens is not None:
            in_key, in_attrs, out_key, out_attrs = instruments.usage_keys(key, metric_attrs)
            if input_tokens is not None:
                instruments.token_usage.record_prepared(input_tokens, in_key, in_attrs, ex)
            if output_tokens is not None:
                instruments.token_usage.record_prepared(output_tokens, out_key, out_attrs, ex)
    else:
        in_attrs = {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_INPUT} if input_tokens is not None else None
        out_attrs = (
            {**metric_attrs, sc.GEN_AI_TOKEN_TYPE: sc.TOKEN_TYPE_OUTPUT} if output_tokens is not None else None
        )
        instruments.request_duration.record(duration_s, metric_attrs, context)
        if timed and ok:
            instruments.time_to_first_token.record(summary.ttft, metric_attrs, context)
            if summary.tpot is not None:
                instruments.time_per_output_token.record(summary.tpot, metric_attrs, context)
        if in_attrs is not None:
            instruments.token_usage.record(input_tokens, in_attrs, context)
        if out_attrs is not None:
            instruments.token_usage.record(output_tokens, out_attrs, context)
    if timed:
        if summary.gaps:
            instruments.record_gaps(summary.sorted_gaps, metric_attrs, context)
        if summary.stalls:
            instruments.stalls.add(summary.stalls, metric_attrs, context)


def stamp_gpu_uuids(span: Span | None) -> None:
    """Set ``otel_llm.gpu.uuids`` from :func:`otel_llm._gpu.current_gpu_uuids` (nothing on CPU-only hosts)."""
    if span is None:
        return
    try:
        uuids = current_gpu_uuids()
        if uuids:
            span.set_attribute(sc.OTEL_LLM_GPU_UUIDS, list(uuids))
    except Exception as exc:
        report_error("genai.gpu_uuids", exc)
