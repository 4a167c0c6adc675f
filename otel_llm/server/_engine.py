"""The reference server's scheduler: a bounded queue and generation worker thread(s).

Request handlers (asyncio) build a :class:`GenerationJob` and :meth:`GenerationEngine.submit`
it; a worker thread takes it from the queue, runs the model's ``generate()``
with a per-token streamer, and pushes events back to the handler's event loop
(``("token", text, n_tokens)``, ``("done", finish_reason, usage)`` or
``("error", exception)``).

Telemetry recorded here (the middleware owns ``gen_ai.server.*``; see
:mod:`otel_llm.server._app`):

* child spans of the request's SERVER span: ``queue`` (submit -> a worker
  takes it), ``prefill`` (taken -> first token), ``decode`` (first -> last
  token), each with ``otel_llm.stage``; their durations also go on the request
  span (``otel_llm.queue.duration`` ...);
* histograms ``otel_llm.server.queue.duration`` / ``prefill.duration`` /
  ``decode.duration``; up-down counters ``otel_llm.server.requests.waiting`` /
  ``running``; the gauge ``otel_llm.server.kv_cache.utilization`` --
  SIMULATED: tokens held by in-flight requests (prompt + generated so far)
  divided by ``kv_capacity_tokens``, because a CPU ``generate()`` has no paged
  KV-cache to measure.

A job whose client went away is cancelled (``GenerationJob.cancel()``): still
queued, it is skipped; generating, a stopping criterion ends ``generate()`` at
the next step, so the worker is free within one decode step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer

from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation._genai import GenAIInstruments, metrics_recorded_by_caller
from otel_llm.server._faults import SlowdownController

__all__ = ["EngineStopped", "GenerationEngine", "GenerationJob", "QueueFull"]


class QueueFull(Exception):
    """The bounded queue is full (HTTP 429)."""


class EngineStopped(Exception):
    """The engine is shutting down (HTTP 503)."""


@dataclass
class GenerationJob:
    """One request's generation: inputs, sampling parameters, and the way back to its handler."""

    input_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    loop: asyncio.AbstractEventLoop
    span: Span
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    enqueued_ns: int = field(default_factory=time.time_ns)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()

    def push(self, item: tuple) -> None:
        """Thread-safe: hand an event to the handler's loop (dropped when that loop is gone)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # loop closed: nobody is listening any more
            self.cancel()


def _cancel_criterion(job: GenerationJob):
    """A ``StoppingCriteria`` that ends ``generate()`` at the next step once the job is cancelled."""
    import torch
    from transformers import StoppingCriteria

    class _Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), job.cancelled.is_set(), dtype=torch.bool)

    return _Cancelled()


class _Streamer:
    """Per-token callback of ``generate()``: stage spans, fault delays, text deltas to the handler."""

    def __init__(self, engine: GenerationEngine, job: GenerationJob, attrs: dict[str, Any], prefill_start_ns: int) -> None:
        self.engine = engine
        self.job = job
        self.attrs = attrs
        self.prefill_start_ns = prefill_start_ns
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.prompt_seen = False
        self.ids: list[int] = []
        self.text = ""
        self.pending = 0  # tokens generated but not yet sent (an incomplete UTF-8 sequence, a special token)
        self.eos = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        now = time.time_ns()
        engine = self.engine
        token = int(value.reshape(-1)[0])
        if self.first_ns is None:
            self.first_ns = now
            engine._stage_span(self.job, sc.STAGE_PREFILL, self.prefill_start_ns, now)
            engine.instruments.prefill_duration.record((now - self.prefill_start_ns) / 1e9, self.attrs)
        self.last_ns = now
        self.ids.append(token)
        engine._kv_add(1)
        self.pending += 1
        if token in engine.eos_ids:
            self.eos = True
        text = engine.tokenizer.decode(self.ids, skip_special_tokens=True)
        if not text.endswith("\ufffd") and len(text) > len(self.text):
            self.job.push(("token", text[len(self.text):], self.pending))
            self.text = text
            self.pending = 0
        delay = engine.faults.decode_delay_per_token_s
        if delay:
            time.sleep(delay)

    def end(self) -> None:
        pass


class _KVObserver:
    """One observable gauge per meter for every engine on it (the SDK keeps only the first callback
    registered under a name, so several replicas in one process must share it)."""

    def __init__(self, meter) -> None:
        self._engines: weakref.WeakSet[GenerationEngine] = weakref.WeakSet()
        self._count = itertools.count()
        meter.create_observable_gauge(
            sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION,
            callbacks=[self._observe],
            unit="1",
            description="SIMULATED KV-cache use: tokens held by in-flight requests / configured capacity.",
        )

    def next_replica(self) -> str:
        return str(next(self._count))

    def add(self, engine: GenerationEngine) -> None:
        self._engines.add(engine)

    def _observe(self, options):
        from opentelemetry.metrics import Observation

        return [Observation(e.kv_utilization(), e._attrs) for e in list(self._engines) if not e._stop.is_set()]


_observers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_observers_lock = threading.Lock()


def _kv_observer(meter) -> _KVObserver:
    with _observers_lock:
        obs = _observers.get(meter)
        if obs is None:
            obs = _observers[meter] = _KVObserver(meter)
        return obs


class GenerationEngine:
    """Bounded queue + ``workers`` generation threads around one model (see the module docstring)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        model_name: str,
        tracer: Tracer,
        instruments: GenAIInstruments,
        meter,
        max_queue: int = 64,
        workers: int = 1,
        kv_capacity_tokens: int = 8192,
        faults: SlowdownController | None = None,
        replica: str | None = None,
    ) -> None:
        if max_queue < 1 or workers < 1 or kv_capacity_tokens < 1:
            raise ValueError("max_queue, workers and kv_capacity_tokens must be >= 1")
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.tracer = tracer
        self.instruments = instruments
        self.faults = faults or SlowdownController()
        self.max_queue = max_queue
        self.workers = workers
        self.kv_capacity_tokens = kv_capacity_tokens
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self._queue: queue.Queue[GenerationJob] = queue.Queue(maxsize=max_queue)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._kv_tokens = 0
        self.running = 0
        self.completed = 0
        self.replica = _kv_observer(meter).next_replica() if replica is None else replica
        self._attrs = {sc.GEN_AI_REQUEST_MODEL: model_name, sc.OTEL_LLM_SERVER_REPLICA: self.replica}
        self._waiting = meter.create_up_down_counter(
            sc.OTEL_LLM_SERVER_REQUESTS_WAITING, unit="{request}", description="Requests queued for a generation worker."
        )
        self._running = meter.create_up_down_counter(
            sc.OTEL_LLM_SERVER_REQUESTS_RUNNING, unit="{request}", description="Requests a worker is generating."
        )
        _kv_observer(meter).add(self)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), 0)

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._threads or self._stop.is_set():
                return
            for i in range(self.workers):
                t = threading.Thread(target=self._work, name=f"otel-llm-generate-{i}", daemon=True)
                t.start()
                self._threads.append(t)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop taking jobs, fail queued ones with :class:`EngineStopped`, join the workers. Idempotent."""
        self._stop.set()
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            self._waiting.add(-1, self._attrs)
            job.push(("error", EngineStopped("the server is shutting down")))
        for t in self._threads:
            t.join(timeout_s)
        self._threads.clear()

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    @property
    def alive(self) -> bool:
        return not self._stop.is_set() and (not self._threads or all(t.is_alive() for t in self._threads))

    # -- submission (event-loop side) ---------------------------------------
    def submit(self, job: GenerationJob) -> None:
        if self._stop.is_set():
            raise EngineStopped("the server is shutting down")
        self.start()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting; retry later") from None
        self._waiting.add(1, self._attrs)

    # -- worker side ------------------------------------------------------------
    def _kv_add(self, n: int) -> None:
        with self._lock:
            self._kv_tokens += n

    def kv_utilization(self) -> float:
        with self._lock:
            used = self._kv_tokens
        return min(1.0, used / self.kv_capacity_tokens)

    def _stage_span(self, job: GenerationJob, stage: str, start_ns: int, end_ns: int) -> None:
        try:
            span = self.tracer.start_span(
                stage, context=trace.set_span_in_context(job.span), kind=SpanKind.INTERNAL,
                attributes={sc.OTEL_LLM_STAGE: stage}, start_time=start_ns,
            )
            span.end(end_time=end_ns)
            attr = {sc.STAGE_QUEUE: sc.OTEL_LLM_QUEUE_TIME, sc.STAGE_PREFILL: sc.OTEL_LLM_PREFILL_TIME,
                    sc.STAGE_DECODE: sc.OTEL_LLM_DECODE_TIME}[stage]
            job.span.set_attribute(attr, (end_ns - start_ns) / 1e9)
        except Exception as exc:
            report_error("server.stage_span", exc)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            self._waiting.add(-1, self._attrs)
            taken = time.time_ns()
            self._stage_span(job, sc.STAGE_QUEUE, job.enqueued_ns, taken)
            self.instruments.queue_duration.record((taken - job.enqueued_ns) / 1e9, self._attrs)
            if job.cancelled.is_set():  # its client left while it waited
                continue
            self._running.add(1, self._attrs)
            with self._lock:
                self.running += 1
            held = len(job.input_ids)
            self._kv_add(held)
            streamer = None
            try:
                streamer = _Streamer(self, job, self._attrs, taken)
                self._generate(job, streamer)
            except Exception as exc:  # the model's failure (or an injected fault): the handler answers 500
                job.push(("error", exc))
            finally:
                generated = len(streamer.ids) if streamer is not None else 0
                self._kv_add(-(held + generated))
                self._running.add(-1, self._attrs)
                with self._lock:
                    self.running -= 1
                    self.completed += 1

    def _generate(self, job: GenerationJob, streamer: _Streamer) -> None:
        import torch

        faults = self.faults
        token = otel_context.attach(trace.set_span_in_context(job.span))
        try:
            with metrics_recorded_by_caller():  # an instrumented generate() adds its span, not a 2nd metric set
                if faults.prefill_delay_s:
                    time.sleep(faults.prefill_delay_s)
                if faults.should_fail():
                    from otel_llm.server._faults import InjectedFault

                    raise InjectedFault("injected failure (app.state.faults.fail_rate)")
                ids = torch.tensor([job.input_ids], dtype=torch.long)
                sample = job.temperature > 0
                kwargs: dict[str, Any] = {"do_sample": sample}
                if sample:
                    kwargs.update(temperature=job.temperature, top_p=job.top_p, top_k=0)
                rng = torch.random.fork_rng(devices=[]) if sample else contextlib.nullcontext()
                with rng, torch.inference_mode():
                    if sample:
                        torch.manual_seed(job.seed)  # responses vary by seed, reproducibly
                    self.model.generate(
                        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=job.max_new_tokens,
                        min_new_tokens=0, streamer=streamer, stopping_criteria=[_cancel_criterion(job)],
                        pad_token_id=self._pad_id, **kwargs,
                    )
        finally:
            otel_context.detach(token)
        if streamer.first_ns is not None and streamer.last_ns is not None:
            self._stage_span(job, sc.STAGE_DECODE, streamer.first_ns, streamer.last_ns)
            self.instruments.decode_duration.record((streamer.last_ns - streamer.first_ns) / 1e9, self._attrs)
        n_out = len(streamer.ids)
        if job.cancelled.is_set():
            reason = "cancelled"
        elif streamer.eos:
            reason = "stop"
        else:
            reason = "length" if n_out >= job.max_new_tokens else "stop"
        if streamer.pending:  # flush tokens that produced no visible text (EOS, a trailing partial sequence)
            job.push(("token", "", streamer.pending))
        job.push(("done", reason, {"prompt_tokens": len(job.input_ids), "completion_tokens": n_out,
                                   "total_tokens": len(job.input_ids) + n_out}))
