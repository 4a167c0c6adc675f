"""``otel-llm eval generate``: labelled datasets from headless demo runs.

Each run is the demo (reference setup, simulated GPUs, retrieval dependency)
with a seeded random fault schedule. From every run it writes:

* **NAB layout** -- ``OUT/nab/data/<group>/<name>.csv`` (``timestamp,value``)
  for every key series, and ``OUT/nab/labels/combined_windows.json`` mapping
  ``"<group>/<name>.csv"`` to ``[[start, end], ...]``: the windows of the
  faults that affect *that* series (a slow retrieval is labelled on the
  retrieval and front-door latency series, not on GPU temperature);
* **RCA cases** -- ``OUT/rca/cases.jsonl`` in the ``otel-llm eval rca`` format,
  one case per fault, each with its spans file ``OUT/rca/spans/<id>.jsonl``
  (OTLP/JSON, Collector file-exporter layout) holding the faulty period and
  the fault-free traffic before it;
* ``OUT/runs/<run>/scorecard.json`` and ``faults.json`` (the ground truth).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from otel_llm.demo import _series as S
from otel_llm.demo._faults import (
    KIND_BURST,
    KIND_GPU_THROTTLE,
    KIND_GPU_XID,
    KIND_SLOW_DEPENDENCY,
    Fault,
    random_schedule,
)

NAB_GROUP = "otel-llm-demo"
LABEL_TAIL_S = 10.0
"""Seconds after a fault ends that are still labelled (queues drain, clocks recover)."""
CONTEXT_BEFORE_S = 60.0
"""Fault-free traffic kept before each RCA case's fault (at most; never overlapping an earlier fault)."""


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _slug(series: str, gpus: Sequence[str]) -> str:
    s = series
    for i, g in enumerate(gpus):
        s = s.replace(g, f"gpu{i}")
    s = re.sub(r'[{}"=,]+', "-", s).replace("service.name-", "").replace("hw.id-", "")
    s = s.replace("service.instance.id-", "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("-_.")


def affects(fault: Fault, metric: str, attrs: dict[str, str], gpus: Sequence[str]) -> bool:
    """Is ``metric{attrs}`` expected to show ``fault``? (label assignment)"""
    svc = attrs.get("service.name", "")
    gpu = attrs.get("hw.id")
    replica = attrs.get(S.INSTANCE, "")
    if gpu is None and replica.startswith("replica-") and int(replica[8:]) < len(gpus):
        gpu = gpus[int(replica[8:])]
    target = gpus[int(fault.params["gpu"])] if "gpu" in fault.params and int(fault.params["gpu"]) < len(gpus) else None
    if svc == "llm-gateway" and metric in (S.TTFT_P95, S.DURATION_P95):
        return True
    if fault.kind == KIND_BURST:
        return metric in (S.REQUEST_RATE, S.QUEUE_P95) or (svc == "llm-server" and metric == S.TTFT_P95)
    if fault.kind == KIND_SLOW_DEPENDENCY:
        return svc == "retrieval"
    if fault.kind == KIND_GPU_THROTTLE:
        return gpu == target and metric in (S.TPOT_P95, S.TTFT_P95, S.GPU_TEMP, S.GPU_SM_CLOCK)
    if fault.kind == KIND_GPU_XID:
        return metric == S.QUEUE_P95 or (svc == "llm-server" and metric == S.TTFT_P95 and gpu != target)
    return False


def write_nab(out: Path, run_name: str, points: Sequence[S.Point], faults: Sequence[Fault], t0: float,
              gpus: Sequence[str], labels: dict[str, list[list[str]]]) -> int:
    by_series: dict[str, list[S.Point]] = defaultdict(list)
    for p in points:
        if p.metric == S.GPU_THROTTLE:
            continue
        by_series[p.series].append(p)
    n = 0
    for series, pts in sorted(by_series.items()):
        pts = sorted(pts, key=lambda p: p.timestamp)
        if len(pts) < 20:
            continue
        name = f"{run_name}-{_slug(series, gpus)}.csv"
        path = out / "nab" / "data" / NAB_GROUP / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            fh.write("timestamp,value\n")
            last = None
            for p in pts:
                if last is not None and p.timestamp <= last:
                    continue
                last = p.timestamp
                fh.write(f"{_ts(p.timestamp)[:-7] if p.timestamp == int(p.timestamp) else _ts(p.timestamp)},{p.value:.9g}\n")
        windows = [[_ts(t0 + f.start), _ts(min(t0 + f.end + LABEL_TAIL_S, pts[-1].timestamp))]
                   for f in faults if affects(f, pts[0].metric, pts[0].attributes, gpus)]
        labels[f"{NAB_GROUP}/{name}"] = windows
        n += 1
    return n


def write_rca_cases(out: Path, run_name: str, spans: Sequence[Any], faults: Sequence[Fault], t0: float,
                    gpus: Sequence[str]) -> list[dict[str, Any]]:
    from otel_llm.demo._otlpjson import write_otlp_json

    by_trace: dict[int, list[Any]] = defaultdict(list)
    for s in spans:
        by_trace[s.context.trace_id].append(s)
    starts = {tid: min(x.start_time for x in ss) / 1e9 for tid, ss in by_trace.items()}
    cases = []
    faults = sorted(faults, key=lambda f: f.start)
    for i, f in enumerate(faults):
        # fault-free context before the fault (after the previous one has settled) ...
        prev_end = faults[i - 1].end if i else -math.inf
        lo = t0 + max(prev_end + min(20.0, 0.5 * (f.start - prev_end)), f.start - CONTEXT_BEFORE_S, 0.0)
        ranges = [(lo, t0 + f.end)]
        # ... and, when that is short, after it (before the next one)
        if t0 + f.start - lo < 15.0:
            nxt = faults[i + 1].start if i + 1 < len(faults) else math.inf
            ranges.append((t0 + f.end + 10.0, t0 + min(nxt - 5.0, f.end + 10.0 + CONTEXT_BEFORE_S)))
        chosen = [s for tid, ss in by_trace.items() if any(a <= starts[tid] <= b for a, b in ranges) for s in ss]
        if not chosen:
            continue
        case_id = f"{run_name}-{f.kind}"
        rel = f"spans/{case_id}.jsonl"
        write_otlp_json(out / "rca" / rel, sorted(chosen, key=lambda s: s.start_time))
        truth = f.root_cause(gpus)
        root: dict[str, Any] = {"service": truth.service}
        if truth.operation:
            root["operation"] = truth.operation
        if truth.gpu:
            root["gpu"] = truth.gpu
        root["kind"] = truth.kind
        cases.append({"id": case_id, "spans": rel, "fault_start": t0 + f.start, "fault_end": t0 + f.end,
                      "root_cause": root, "fault": f.to_dict()})
    return cases


def generate(out: Path, *, runs: int = 1, seed: int = 0, duration_s: float = 180.0, speedup: float = 4.0,
             max_rate: float | None = 3.0, workload: Path | None = None, console: Any = None,
             faults: Sequence[Fault] | None = None, window_s: float = 1.0) -> dict[str, Any]:
    """Run the demo headless ``runs`` times and write the datasets; returns a summary."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from otel_llm.demo._pipeline import DemoPipeline
    from otel_llm.demo._runner import DemoConfig, DemoRun
    from otel_llm.demo._scorecard import score_run

    console = console or Console(stderr=True)
    out.mkdir(parents=True, exist_ok=True)
    labels: dict[str, list[list[str]]] = {}
    cases: list[dict[str, Any]] = []
    n_series = 0
    progress = Progress(TextColumn("[bold]eval generate[/] run {task.fields[run]}"), BarColumn(),
                        TextColumn("{task.completed:.0f}/{task.total:.0f} s"), TimeElapsedColumn(), console=console)
    with progress:
        for r in range(runs):
            run_seed = seed + r
            schedule = list(faults) if faults is not None else random_schedule(duration_s, seed=run_seed)
            run_name = f"run{r:02d}"
            run_dir = out / "runs" / run_name
            cfg = DemoConfig(duration_s=duration_s, workload=workload, speedup=speedup, max_rate=max_rate,
                             faults=schedule, report_dir=run_dir, seed=run_seed, window_s=window_s)
            task = progress.add_task("run", total=duration_s, run=f"{r + 1}/{runs}")
            run = DemoRun(cfg, on_tick=lambda st, task=task: progress.update(task, completed=min(st.t, duration_s)))
            pipeline = DemoPipeline(meter_provider=run.telemetry["llm-server"].meter_provider, report_dir=run_dir,
                                    gpu_store=run.gpus.store, min_history=cfg.min_history)
            run.pipeline = pipeline
            run.run()
            pipeline.finish(run.t0_wall + duration_s)
            card = score_run(faults=schedule, detections=pipeline.record.detections, rca=pipeline.record.rca, incidents=pipeline.record.incidents,
                             gpu_uuids=run.gpus.uuids, t0=run.t0_wall, duration_s=duration_s, speedup=speedup)
            (run_dir / "scorecard.json").write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
            (run_dir / "faults.json").write_text(json.dumps(
                {"t0": run.t0_wall, "gpus": run.gpus.uuids,
                 "faults": [{**f.to_dict(), "root_cause": f.root_cause(run.gpus.uuids).to_dict()} for f in schedule]},
                indent=2), encoding="utf-8")
            n_series += write_nab(out, run_name, run.points, schedule, run.t0_wall, run.gpus.uuids, labels)
            cases += write_rca_cases(out, run_name, list(run.sink.readable), schedule, run.t0_wall, run.gpus.uuids)
    labels_path = out / "nab" / "labels" / "combined_windows.json"
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    labels_path.write_text(json.dumps(labels, indent=2, sort_keys=True), encoding="utf-8")
    cases_path = out / "rca" / "cases.jsonl"
    cases_path.parent.mkdir(parents=True, exist_ok=True)
    with cases_path.open("w", encoding="utf-8") as fh:
        for c in cases:
            fh.write(json.dumps(c) + "\n")
    from otel_llm.workloads import ATTRIBUTION

    (out / "README.md").write_text(
        "# otel-llm eval generate output\n\n"
        f"{runs} run(s) of the otel-llm demo (seed {seed}, {duration_s:g} s each, speedup {speedup:g}).\n\n"
        "* `nab/` -- NAB layout: `data/<group>/<name>.csv` (timestamp,value) and `labels/combined_windows.json`.\n"
        "* `rca/cases.jsonl` -- RCA cases (`otel-llm eval rca --cases rca/cases.jsonl`), spans as OTLP/JSON.\n"
        "* `runs/<run>/faults.json` -- ground truth; `scorecard.json` -- the online pipeline's own score.\n\n"
        f"Workload: {ATTRIBUTION}\n", encoding="utf-8")
    return {"out": str(out), "runs": runs, "nab_series": n_series, "labelled_series": sum(1 for w in labels.values() if w),
            "rca_cases": len(cases), "labels": str(labels_path), "cases": str(cases_path)}
