"""Benchmark: threshold-processor ingest rate across many series, and a memory soak.

    .venv/bin/python benchmarks/processors.py                 # 1,000 series, ~20 s soak
    .venv/bin/python benchmarks/processors.py --soak-seconds 600

Prints one JSON object. Measured side by side in one run:

* ``ingest_handle``: points/s through ``SeriesHandle.observe`` (fast path, key resolved once);
* ``ingest_keyed``: points/s through ``ThresholdProcessor.observe(metric, attributes, t, value)``;
* ``baseline_loop``: the same loop calling a no-op, for scale;
* per-core figures divide by the process CPU time (the background refit worker included);
* ``soak``: RSS (MiB) after warm-up and at the end of a long run at full speed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time


def rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_series(n_series: int):
    from otel_llm import semconv

    metrics = [semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, semconv.OTEL_LLM_SERVER_REQUESTS_WAITING,
               semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION, semconv.GEN_AI_SERVER_REQUEST_DURATION]
    return [(metrics[i % len(metrics)], {"gen_ai.request.model": f"m{i // len(metrics)}", "host.name": "h0"})
            for i in range(n_series)]


def values(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [max(0.001, rng.gauss(0.5, 0.05)) for _ in range(n)]


def run_ingest(proc, series, vals, rounds: int, keyed: bool, t0: float) -> tuple[int, float, float]:
    handles = [proc.series(m, a) for m, a in series]
    n = 0
    w0, c0 = time.perf_counter(), time.process_time()
    nv = len(vals)
    for r in range(rounds):
        t = t0 + r
        if keyed:
            for k, (m, a) in enumerate(series):
                proc.observe(m, a, t, vals[(r + k) % nv])
        else:
            for k, h in enumerate(handles):
                h.observe(t, vals[(r + k) % nv])
        n += len(series)
    return n, time.perf_counter() - w0, time.process_time() - c0


AZURE_TRACE = "/work/shared/data/workloads/AzureLLMInferenceTrace_conv.csv"


def replay_false_alarms(path: str, threshold_config=None, seed: int = 0) -> dict:
    """Replay one hour of real bursty LLM arrivals (Azure LLM inference trace 2023, CC BY 4.0,
    Microsoft Corporation) through a fault-free simulated server and count the detections opened.

    Arrivals and token counts are real; latencies come from a simple continuous-batching model
    (prefill cost per prompt token, decode slowing with concurrency, lognormal noise): no GPU here.
    Every detection is a false alarm by construction.
    """
    import csv
    import heapq
    import math
    from datetime import datetime

    from otel_llm.processors import DetectionStream, SpanRecord
    from otel_llm.processors.anomaly import RequestAnomalyProcessor
    from otel_llm.processors.sdk import SpanSeriesFeed
    from otel_llm.processors.thresholds import ThresholdConfig, ThresholdProcessor

    from otel_llm import semconv

    rng = random.Random(seed)
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            ts = datetime.strptime(r["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            rows.append((ts, int(r["ContextTokens"]), int(r["GeneratedTokens"])))
    rows.sort()
    stream = DetectionStream()
    sub = stream.subscribe(maxsize=100_000)
    cfg = threshold_config or ThresholdConfig(refit="inline")
    thresholds = ThresholdProcessor(cfg, stream=stream, emit_metrics=False)
    feed = SpanSeriesFeed(thresholds, interval_s=10.0)
    anomaly = RequestAnomalyProcessor("ecod", 0.04, refit="inline", stream=stream, emit_metrics=False)
    active: list[float] = []  # end times of running requests
    spans = []
    for i, (t, prompt, out) in enumerate(rows):
        while active and active[0] <= t:
            heapq.heappop(active)
        wait = 0.0
        if len(active) >= 64:
            wait = active[0] - t
        conc = len(active)
        ttft = wait + (0.015 + 0.0002 * prompt) * rng.lognormvariate(0, 0.15)
        tpot = 0.025 * (1 + 0.02 * conc) * rng.lognormvariate(0, 0.1)
        dur = ttft + tpot * max(out - 1, 0)
        heapq.heappush(active, t + dur)
        attrs = {
            semconv.GEN_AI_OPERATION_NAME: "chat", semconv.GEN_AI_REQUEST_MODEL: "replay",
            semconv.OTEL_LLM_TTFT: ttft, semconv.OTEL_LLM_TPOT: tpot, semconv.OTEL_LLM_GAP_P99: tpot * 1.8,
            semconv.OTEL_LLM_GAP_MAX: tpot * 2.5, semconv.GEN_AI_USAGE_INPUT_TOKENS: prompt,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: out, semconv.OTEL_LLM_QUEUE_TIME: wait,
        }
        spans.append(SpanRecord(f"{i:032x}", f"{i:016x}", None, "chat replay", "llm", t, t + dur, kind="server",
                                attributes=attrs))
    spans.sort(key=lambda s: s.end)
    w0 = time.perf_counter()
    for s in spans:
        anomaly.observe(s)
        feed.add(s)
    # the trace's arrivals stop at its last request: later intervals only see it drain, not a drop in traffic
    feed.flush(now=max(s.start for s in spans))
    hours = (spans[-1].end - spans[0].start) / 3600
    # one per alert: an open detection published again (an escalation to critical) is the same alert
    opened = list({(d.fingerprint, d.start): d for d in sub.drain() if d.end is None}.values())
    by_kind: dict[str, int] = {}
    for d in opened:
        by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
    return {
        "requests": len(spans), "hours": round(hours, 3), "series": len(thresholds.states()),
        "alerts_opened": by_kind, "alerts_per_hour": round(len(opened) / hours, 2),
        "threshold_alerts_per_series_hour": round(by_kind.get("threshold", 0) / max(len(thresholds.states()), 1)
                                                  / hours, 3),
        "request_flag_rate": round(anomaly.flagged / max(anomaly.scored, 1), 4),
        "seconds": round(time.perf_counter() - w0, 1), "model": cfg.model, "threshold_z": cfg.policy.threshold,
        "note": "fault-free: every alert is a false alarm" if math.isfinite(hours) else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=200, help="points per series in each ingest measurement")
    ap.add_argument("--model", default="auto_ets", help="auto_ets | mstl | robust")
    ap.add_argument("--soak-seconds", type=float, default=20.0)
    ap.add_argument("--replay", default=AZURE_TRACE if os.path.exists(AZURE_TRACE) else None,
                    help="CSV of real LLM arrivals (TIMESTAMP,ContextTokens,GeneratedTokens) for the false-alarm replay")
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args(argv)
    if args.skip_ingest:
        print(json.dumps({"false_alarm_replay": replay_false_alarms(args.replay)}, indent=2))
        return 0

    from otel_llm.processors.thresholds import ThresholdConfig, ThresholdProcessor

    cfg = ThresholdConfig(model=args.model)
    series = make_series(args.series)
    vals = values(10_007)
    out: dict = {"series": args.series, "model": args.model, "python": sys.version.split()[0]}

    # baseline: the same loop over a no-op
    class Noop:
        def observe(self, t, v):
            return ()

    noop = [Noop() for _ in series]
    w0 = time.perf_counter()
    for r in range(args.rounds):
        for k, h in enumerate(noop):
            h.observe(r, vals[(r + k) % len(vals)])
    base = args.rounds * len(series) / (time.perf_counter() - w0)
    out["baseline_loop_points_per_s"] = round(base)

    proc = ThresholdProcessor(cfg, emit_metrics=False)
    t0 = 1.7e9
    # warm-up: every series past min_history, first fits done
    run_ingest(proc, series, vals, cfg.min_history + 2, False, t0)
    proc.force_flush(120_000)
    t0 += cfg.min_history + 2
    n, wall, cpu = run_ingest(proc, series, vals, args.rounds, False, t0)
    out["ingest_handle"] = {"points": n, "points_per_s": round(n / wall), "points_per_cpu_s": round(n / max(cpu, 1e-9))}
    t0 += args.rounds
    n, wall, cpu = run_ingest(proc, series, vals, args.rounds, True, t0)
    out["ingest_keyed"] = {"points": n, "points_per_s": round(n / wall), "points_per_cpu_s": round(n / max(cpu, 1e-9))}
    t0 += args.rounds
    out["ratio_keyed_to_baseline"] = round(out["ingest_keyed"]["points_per_s"] / base, 3)
    out["fits"] = sum(s.fits for s in proc.states())
    out["band_updates"] = sum(s.updates for s in proc.states())
    out["refit_queue_at_end"] = len(proc._queue)

    # soak: keep ingesting at full speed; memory must stay flat (bounded histories)
    proc.force_flush(120_000)
    rss0 = rss_mib()
    end = time.monotonic() + args.soak_seconds
    total = 0
    samples = []
    while time.monotonic() < end:
        n, _, _ = run_ingest(proc, series, vals, 20, False, t0)
        t0 += 20
        total += n
        samples.append(round(rss_mib(), 1))
    proc.shutdown()
    out["soak"] = {"seconds": args.soak_seconds, "points": total, "rss_mib_start": round(rss0, 1),
                   "rss_mib_end": round(rss_mib(), 1), "rss_mib_max": max(samples) if samples else None,
                   "rss_mib_at_quarters": [samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3, 4)]
                   if samples else None,
                   "dropped": dict(proc.dropped), "fit_failures": dict(proc.fit_failures)}
    if args.replay:
        out["false_alarm_replay"] = replay_false_alarms(args.replay)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
