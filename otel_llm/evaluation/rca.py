"""``otel-llm eval rca``: accuracy of the root-cause ranking on labelled cases.

A cases file is JSON lines, one case per line::

    {"id": "...", "spans": "spans/case-1.jsonl", "fault_start": 1700000000.0,
     "fault_end": 1700000300.0, "root_cause": {"service": "...", "operation": "..."}}

``spans`` is an OTLP/JSON file in the Collector file-exporter format (one
``ExportTraceServiceRequest`` per line; ``.gz`` files are read compressed); a
relative path resolves against the cases file's folder. Ranking runs the same RCA as online
(:func:`otel_llm.processors.rca.rank_window`: traces starting inside
``[fault_start, fault_end]`` against every other trace as the baseline) and
never reads ``root_cause``.

Scoring: when the label names an ``operation``, a candidate matches if its
service and operation both match, and ranks count distinct (service,
operation) pairs; otherwise ranks count distinct services. A ``gpu`` label
also matches a GPU candidate with that UUID. An uninstrumented downstream
candidate (a database, a vector store) also matches the service that calls it
(its ``evidence["callers"]``): "X's dependency is slow" names X. AC@k is the share of cases whose
root cause is within the top k; Avg@5 is the mean of AC@1..AC@5.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_llm.processors._model import RootCauseCandidate


@dataclass(frozen=True)
class RcaCase:
    id: str
    spans: Path
    fault_start: float
    fault_end: float
    root_cause: dict[str, Any]


def load_cases(path: str | Path) -> list[RcaCase]:
    """Read and check a cases file; errors name the line and the problem."""
    path = Path(path)
    base = path.resolve().parent
    cases = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not JSON ({exc})") from None
            if not isinstance(raw, dict):
                raise ValueError(f"{where}: each line must be a JSON object")
            missing = [k for k in ("id", "spans", "fault_start", "fault_end", "root_cause") if k not in raw]
            if missing:
                raise ValueError(f"{where}: missing {', '.join(missing)}")
            rc = raw["root_cause"]
            if not isinstance(rc, dict) or not isinstance(rc.get("service"), str):
                raise ValueError(f'{where}: root_cause must be an object with a "service" string')
            try:
                start, end = float(raw["fault_start"]), float(raw["fault_end"])
            except (TypeError, ValueError):
                raise ValueError(f"{where}: fault_start and fault_end must be unix seconds") from None
            if end < start:
                raise ValueError(f"{where}: fault_end is before fault_start")
            spans = Path(raw["spans"])
            if not spans.is_absolute():
                spans = base / spans
            cases.append(RcaCase(str(raw["id"]), spans, start, end, dict(rc)))
    return cases


def rank_case(case: RcaCase, *, max_candidates: int = 10) -> list[RootCauseCandidate]:
    """The ranking for one case (reads the spans file; never looks at ``root_cause``)."""
    from otel_llm.analyze._otlp import read_otlp_json_lines
    from otel_llm.processors.rca import rank_window

    opener = gzip.open if case.spans.suffix == ".gz" else open
    with opener(case.spans, "rb") as fh:
        spans = list(read_otlp_json_lines(fh))
    return rank_window(spans, case.fault_start, case.fault_end, max_candidates=max_candidates)


def _key(c: RootCauseCandidate, by_operation: bool) -> tuple[str, ...]:
    if by_operation:
        return (c.kind if c.kind == "gpu" else "", str(c.service), str(c.operation if c.kind != "gpu" else c.name))
    return (str(c.service),)


def match_rank(candidates: Sequence[RootCauseCandidate], root_cause: dict[str, Any]) -> int | None:
    """1-based rank of the labelled root cause in ``candidates`` (None when absent)."""
    from otel_llm.processors.rca import operation_name

    service, operation, gpu = root_cause.get("service"), root_cause.get("operation"), root_cause.get("gpu")
    if isinstance(operation, str):
        operation = operation_name(operation)  # candidates carry span names with ids taken out
    by_operation = bool(operation)
    seen: list[tuple[str, ...]] = []
    for c in candidates:
        key = _key(c, by_operation)
        if key not in seen:
            seen.append(key)
        if gpu and c.kind == "gpu" and c.name == gpu:
            return seen.index(key) + 1
        same_service = c.service == service or (
            c.kind == "downstream" and service in (c.evidence.get("callers") or ()))
        if same_service and (not by_operation or (c.kind != "gpu" and c.operation == operation)):
            return seen.index(key) + 1
    return None


def top_k(candidates: Sequence[RootCauseCandidate], k: int = 5) -> list[dict[str, Any]]:
    return [{"rank": i, "kind": c.kind, "name": c.name, "service": c.service, "operation": c.operation,
             "score": c.score, "reason": c.reason} for i, c in enumerate(candidates[:k], 1)]


def evaluate(cases: Iterable[RcaCase], *, on_case: Callable[[RcaCase, dict[str, Any]], None] | None = None,
             ) -> dict[str, Any]:
    """Rank every case and score: ``{"AC@1", "AC@3", "AC@5", "Avg@5", "seconds_per_case", "cases", "per_case"}``.
    A case whose spans cannot be read counts as a miss and carries its error."""
    per_case = []
    total_s = 0.0
    for case in cases:
        t0 = time.perf_counter()
        error = None
        try:
            cands = rank_case(case)
        except (OSError, ValueError) as exc:
            cands, error = [], str(exc)
        seconds = time.perf_counter() - t0
        total_s += seconds
        rank = match_rank(cands, case.root_cause)
        row: dict[str, Any] = {"id": case.id, "root_cause": case.root_cause, "rank": rank,
                               "seconds": round(seconds, 4), "top5": top_k(cands, 5)}
        if error:
            row["error"] = error
        per_case.append(row)
        if on_case is not None:
            on_case(case, row)
    n = len(per_case)

    def ac(k: int) -> float:
        return round(sum(1 for r in per_case if r["rank"] is not None and r["rank"] <= k) / n, 4) if n else 0.0

    return {
        "AC@1": ac(1), "AC@3": ac(3), "AC@5": ac(5),
        "Avg@5": round(sum(ac(k) for k in range(1, 6)) / 5, 4) if n else 0.0,
        "seconds_per_case": round(total_s / n, 4) if n else 0.0,
        "cases": n,
        "per_case": per_case,
    }


def write_cases(out: str | Path, cases: Iterable[Any], *, batch: int = 200) -> Path:
    """Write :class:`~otel_llm.processors.rca.SyntheticCase` s in the cases-file format
    (``OUT/cases.jsonl`` + ``OUT/spans/<id>.jsonl``, relative paths); returns the cases path."""
    from otel_llm.analyze._otlp import records_to_json

    out = Path(out)
    (out / "spans").mkdir(parents=True, exist_ok=True)
    lines = []
    for case in cases:
        rel = f"spans/{case.id}.jsonl"
        with open(out / rel, "w", encoding="utf-8") as fh:
            spans = sorted(case.spans, key=lambda s: s.end)  # export order: as spans end
            for i in range(0, len(spans), batch):
                fh.write(json.dumps(records_to_json(spans[i:i + batch]), separators=(",", ":")) + "\n")
        lines.append(json.dumps({"id": case.id, "spans": rel, "fault_start": case.fault_start,
                                 "fault_end": case.fault_end, "root_cause": case.root_cause}))
    path = out / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
