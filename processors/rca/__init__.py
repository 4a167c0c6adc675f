"""Root-cause analysis over traces and GPU state (``otel_llm.processors.rca``).

* :class:`TraceAssembler` -- spans to complete traces (quiet period / root +
  grace; bounded; late spans counted).
* :func:`summarize` -- one trace to per-component self time, critical path,
  error origins, LLM stages (per-token normalised), GPU UUIDs.
* :class:`BaselineStore` -- robust per-component baselines (median / MAD,
  error rate), frozen while an incident is open.
* :func:`rank` / :func:`rank_window` -- fused ranking into
  :class:`~otel_llm.processors.RootCauseCandidate` s.
* :class:`RcaProcessor` -- the streaming pipeline and incident lifecycle;
  :class:`RcaSpanProcessor` runs it inside an SDK-instrumented process.
* :func:`generate_case` -- labelled synthetic traces with injected faults.

Imports numpy (baselines); import it only where RCA runs.
"""

from ._assembly import AssembledTrace, AssemblyStats, TraceAssembler, group_by_trace
from ._baseline import BaselineStore, Stats
from ._gpu import events_from_detections, events_from_samples, events_from_store
from ._offline import rank_summaries, rank_window
from ._processor import RcaProcessor
from ._rank import GpuAnomaly, rank
from ._synthetic import FAULTS, SyntheticCase, generate_case
from ._trace import Contribution, TraceSummary, operation_name, stage_of, summarize


def __getattr__(name: str):  # the SDK adapter pulls in opentelemetry-sdk: load it on use
    if name == "RcaSpanProcessor":
        from ._sdk import RcaSpanProcessor

        return RcaSpanProcessor
    raise AttributeError(name)


__all__ = [
    "FAULTS", "AssembledTrace", "AssemblyStats", "BaselineStore", "Contribution", "GpuAnomaly", "RcaProcessor",
    "RcaSpanProcessor", "Stats", "SyntheticCase", "TraceAssembler", "TraceSummary", "events_from_detections",
    "events_from_samples", "events_from_store", "generate_case", "group_by_trace", "operation_name", "rank", "rank_summaries", "rank_window",
    "stage_of", "summarize",
]
