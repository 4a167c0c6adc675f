"""Replay a real LLM request trace against a server, scaled to the tiny model.

A trace is any CSV with ``TIMESTAMP,ContextTokens,GeneratedTokens`` columns (the
Azure LLM inference trace layout). :func:`plan_workload` turns it into a list of
:class:`WorkloadRequest` in *replay* time:

* arrivals are time-compressed by ``speedup`` (inter-arrival gaps divided by it),
  so the arrival pattern and its burstiness are kept, only faster;
* when the compressed mean rate is above ``max_rate`` the arrivals are thinned
  uniformly at random (independent thinning keeps the shape of the rate curve
  and the relative size of bursts);
* prompt and output lengths are multiplied by a scale and capped, so the
  distribution keeps its shape (median, skew) at sizes the tiny model serves;
* the trace wraps around when the replay outlasts it.

:func:`replay` sends the plan with an async httpx client, open-loop at the
planned times, at most ``concurrency`` requests in flight; arrivals that find
``max_pending`` requests already waiting are dropped and counted.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REQUIRED_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")

_WORDS = ["the", "gpu", "serves", "a", "model", "that", "streams", "tokens", "while", "the", "scheduler", "batches", "requests", "and", "the", "cache", "holds", "keys", "values", "for", "every", "layer", "of", "attention", "so", "latency", "depends", "on", "queue", "prefill", "decode"]


@dataclass(frozen=True)
class TraceRow:
    offset: float
    """Seconds since the first row of the trace."""
    context_tokens: int
    generated_tokens: int


@dataclass(frozen=True)
class WorkloadSpec:
    """How a trace is turned into a replay plan. Validated at construction."""

    speedup: float = 4.0
    max_rate: float | None = 3.0
    """Upper bound on the mean request rate after compression (req/s); None disables thinning."""
    prompt_scale: float = 1 / 32
    output_scale: float = 1 / 8
    prompt_cap: int = 128
    output_cap: int = 32
    min_prompt_tokens: int = 4
    min_output_tokens: int = 2
    retrieval_fraction: float = 0.3
    """Share of requests that first call the retrieval service (picked at random, seeded)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.speedup > 0 and math.isfinite(self.speedup)):
            raise ValueError(f"speedup must be a positive number, got {self.speedup!r}")
        if self.max_rate is not None and not self.max_rate > 0:
            raise ValueError(f"max_rate must be > 0 req/s (or None), got {self.max_rate!r}")
        for name in ("prompt_scale", "output_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.retrieval_fraction <= 1.0:
            raise ValueError(f"retrieval_fraction must be in [0, 1], got {self.retrieval_fraction!r}")
        if self.prompt_cap < self.min_prompt_tokens or self.output_cap < self.min_output_tokens:
            raise ValueError("caps must be at least the minimum token counts")


@dataclass(frozen=True)
class WorkloadRequest:
    at: float
    """Seconds after the replay start when the request is sent."""
    prompt_tokens: int
    max_tokens: int
    retrieval: bool = False
    source_context_tokens: int = 0
    source_generated_tokens: int = 0
    index: int = 0


def _parse_timestamp(text: str) -> float:
    text = text.strip()
    try:
        return float(text)  # unix seconds are accepted too
    except ValueError:
        pass
    # Azure's fraction has 7 digits (100 ns ticks); fromisoformat on 3.10 takes at most 6.
    if "." in text:
        head, frac = text.rsplit(".", 1)
        text = f"{head}.{frac[:6].ljust(6, '0')}"
    return datetime.fromisoformat(text).timestamp()


def read_trace(path: str | Path) -> list[TraceRow]:
    """Read a trace CSV. Raises ``ValueError`` naming the file and line on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"workload file {str(path)!r} does not exist")
    rows: list[TraceRow] = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"workload {path.name}: missing column(s) {', '.join(missing)}; "
                f"expected a CSV with header {','.join(REQUIRED_COLUMNS)} (got {reader.fieldnames})"
            )
        first: float | None = None
        for lineno, rec in enumerate(reader, start=2):
            try:
                ts = _parse_timestamp(rec["TIMESTAMP"])
                ctx, gen = int(float(rec["ContextTokens"])), int(float(rec["GeneratedTokens"]))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"workload {path.name} line {lineno}: {exc}") from None
            if ctx < 0 or gen < 0:
                raise ValueError(f"workload {path.name} line {lineno}: token counts must be >= 0")
            first = ts if first is None else first
            rows.append(TraceRow(ts - first, ctx, gen))
    if len(rows) < 2:
        raise ValueError(f"workload {path.name}: needs at least 2 requests, found {len(rows)}")
    rows.sort(key=lambda r: r.offset)
    return rows


def plan_workload(rows: Sequence[TraceRow], spec: WorkloadSpec, duration_s: float) -> list[WorkloadRequest]:
    """Requests to send in ``[0, duration_s)`` of replay time (see the module docstring)."""
    if duration_s <= 0:
        return []
    rng = random.Random(spec.seed)
    span = rows[-1].offset - rows[0].offset
    mean_gap = span / max(1, len(rows) - 1)
    period = span + mean_gap  # wrap so the gap at the seam looks like any other
    compressed_rate = len(rows) / (period / spec.speedup)
    keep = 1.0 if spec.max_rate is None else min(1.0, spec.max_rate / compressed_rate)
    out: list[WorkloadRequest] = []
    lap = 0
    while True:
        base = lap * period
        for row in rows:
            at = (base + row.offset) / spec.speedup
            if at >= duration_s:
                return out
            if keep < 1.0 and rng.random() >= keep:
                continue
            out.append(
                WorkloadRequest(
                    at=at,
                    prompt_tokens=_scale(row.context_tokens, spec.prompt_scale, spec.min_prompt_tokens, spec.prompt_cap),
                    max_tokens=_scale(row.generated_tokens, spec.output_scale, spec.min_output_tokens, spec.output_cap),
                    retrieval=rng.random() < spec.retrieval_fraction,
                    source_context_tokens=row.context_tokens,
                    source_generated_tokens=row.generated_tokens,
                    index=len(out),
                )
            )
        lap += 1


def _scale(n: int, scale: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, int(round(n * scale))))


def prompt_text(n_tokens: int, seed: int) -> str:
    """Deterministic filler prompt of roughly ``n_tokens`` tokens (about one word per token)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(max(1, n_tokens)))


def dispersion(times: Sequence[float], window_s: float) -> float:
    """Index of dispersion (variance / mean) of arrival counts per window: 1 for Poisson, >1 bursty."""
    if not times:
        return 0.0
    n = int(max(times) // window_s) + 1
    counts = [0] * n
    for t in times:
        counts[int(t // window_s)] += 1
    mean = sum(counts) / n
    if mean == 0:
        return 0.0
    var = sum((c - mean) ** 2 for c in counts) / n
    return var / mean


# ---------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------
@dataclass
class RequestResult:
    request: WorkloadRequest
    sent_at: float
    status: int = 0
    ttft_s: float | None = None
    duration_s: float = 0.0
    chunks: int = 0
    error: str | None = None


@dataclass
class ReplayStats:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0
    """Arrivals dropped because ``max_pending`` requests were already waiting (counted, never silent)."""
    results: list[RequestResult] = field(default_factory=list)
    in_flight: int = 0
    abandoned: int = 0
    """Requests still in flight ``drain_timeout_s`` after the replay ended (cancelled)."""


SendFn = Callable[[WorkloadRequest], Awaitable[RequestResult]]


async def replay(
    plan: Sequence[WorkloadRequest],
    send: SendFn,
    *,
    concurrency: int = 64,
    max_pending: int = 256,
    stop: asyncio.Event | None = None,
    stats: ReplayStats | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_result: Callable[[RequestResult], None] | None = None,
    drain_timeout_s: float = 15.0,
) -> ReplayStats:
    """Send ``plan`` open-loop; returns when every sent request finished (or ``stop`` is set)."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    stats = stats if stats is not None else ReplayStats()
    sem = asyncio.Semaphore(concurrency)
    t0 = clock()
    tasks: set[asyncio.Task] = set()
    waiting = 0

    async def one(req: WorkloadRequest) -> None:
        nonlocal waiting
        async with sem:
            waiting -= 1
            stats.in_flight += 1
            try:
                result = await send(req)
            except Exception as exc:  # the client never dies on one bad request
                result = RequestResult(req, sent_at=time.time(), error=type(exc).__name__)
            finally:
                stats.in_flight -= 1
        if result.error is None and 200 <= result.status < 300:
            stats.ok += 1
        else:
            stats.failed += 1
        stats.results.append(result)
        if on_result is not None:
            on_result(result)

    for req in plan:
        delay = req.at - (clock() - t0)
        if delay > 0:
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                    break
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(delay)
        if stop is not None and stop.is_set():
            break
        if waiting >= max_pending:
            stats.dropped += 1
            continue
        waiting += 1
        stats.sent += 1
        task = asyncio.create_task(one(req))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        done, pending = await asyncio.wait(set(tasks), timeout=drain_timeout_s)
        for task in pending:  # the run is over: requests still in flight are abandoned, and counted
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            stats.abandoned += len(pending)
    return stats


def openai_sender(client, base_url: str, model: str, *, seed: int = 0) -> SendFn:
    """A :data:`SendFn` that streams ``/v1/chat/completions`` through ``client`` (httpx.AsyncClient)."""

    async def send(req: WorkloadRequest) -> RequestResult:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt_text(req.prompt_tokens, seed + req.index)}],
            "max_tokens": req.max_tokens,
            "stream": True,
        }
        headers = {"x-otel-llm-retrieval": "1"} if req.retrieval else {}
        result = RequestResult(req, sent_at=time.time())
        t0 = time.perf_counter()
        try:
            async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body, headers=headers) as resp:
                result.status = resp.status_code
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    if result.ttft_s is None and '"content":' in payload and '"content":""' not in payload:
                        result.ttft_s = time.perf_counter() - t0
                    result.chunks += 1
                    if '"error"' in payload:
                        try:
                            if "error" in json.loads(payload):
                                result.error = "stream_error"
                        except ValueError:
                            pass
        except Exception as exc:
            result.error = type(exc).__name__
        result.duration_s = time.perf_counter() - t0
        if result.status >= 400 and result.error is None:
            result.error = f"http_{result.status}"
        return result

    return send
