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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=200, help="points per series in each ingest measurement")
    ap.add_argument("--model", default="auto_ets", help="auto_ets | mstl | robust")
    ap.add_argument("--soak-seconds", type=float, default=20.0)
    args = ap.parse_args(argv)

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
                   "dropped": dict(proc.dropped), "fit_failures": dict(proc.fit_failures)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
