"""Offline RCA over a recorded span set and a known abnormal window (``otel-llm eval rca``)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from otel_llm.processors._model import RootCauseCandidate
from otel_llm.processors._spans import SpanRecord

from ._assembly import group_by_trace
from ._baseline import BaselineStore
from ._rank import GpuAnomaly, rank
from ._trace import TraceSummary, summarize

_MAX_REFERENCE = 500


def rank_window(
    spans: Iterable[SpanRecord],
    start: float,
    end: float,
    *,
    gpu_events: Iterable[GpuAnomaly] = (),
    max_candidates: int = 10,
    seed: int = 0,
) -> list[RootCauseCandidate]:
    """Rank root causes of ``[start, end]``: traces starting inside it are the
    window, every other trace (before or after) is the normal baseline."""
    window: list[TraceSummary] = []
    normal: list[TraceSummary] = []
    for trace in group_by_trace(spans):
        summary = summarize(trace.spans)
        if summary is None:
            continue
        (window if start <= summary.start <= end else normal).append(summary)
    return rank_summaries(window, normal, gpu_events=gpu_events, max_candidates=max_candidates, seed=seed)


def rank_summaries(
    window: Sequence[TraceSummary],
    normal: Sequence[TraceSummary],
    *,
    gpu_events: Iterable[GpuAnomaly] = (),
    max_candidates: int = 10,
    seed: int = 0,
) -> list[RootCauseCandidate]:
    baselines = BaselineStore(window=max(64, min(len(normal), 1_000_000)))
    baselines.learn_all(normal)
    reference = normal
    if len(normal) > _MAX_REFERENCE:
        reference = random.Random(seed).sample(list(normal), _MAX_REFERENCE)
    return rank(window, baselines, reference=reference, gpu_events=gpu_events, max_candidates=max_candidates)
