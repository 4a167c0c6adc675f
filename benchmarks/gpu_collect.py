"""GPU collection cost: CPU time per poll and per scrape parse (prints figures; not a test).

    .venv/bin/python benchmarks/gpu_collect.py [--repeat 300]

Measured side by side in one run:

* simulator poll: 8 simulated H100s x ~30 fields (``SimulatedGpus.collect``) -- target < 2 ms;
* full poll path: the same collect + GpuTracker + OTel points (what ``GpuMetrics.poll`` does);
* parse of the largest fixture scrape with otel-llm's tolerant parser -- target < 5 ms -- next to
  prometheus_client's bare parser on the same text (the floor), and a scrape with one malformed line
  (the per-line fallback path);
* the simulator's exposition served over loopback HTTP and scraped by the dcgm-exporter source
  (wall time, includes HTTP).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_ms(fn, repeat: int) -> tuple[float, float]:
    """Median and p95 CPU milliseconds per call (process CPU time, so other load does not inflate it)."""
    fn()  # warm up caches (field tables, name lookups)
    times = []
    for _ in range(repeat):
        t0 = time.process_time_ns()
        fn()
        times.append((time.process_time_ns() - t0) / 1e6)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def wall_ms(fn, repeat: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=300)
    args = ap.parse_args(argv)

    from otel_llm.collectors import (
        DcgmExporterCollector,
        GpuTracker,
        SimulatedGpus,
        base_attributes,
        parse_exposition,
        sample_points,
    )
    from prometheus_client.parser import text_string_to_metric_families

    clock = [1_000_000.0]

    def tick():
        clock[0] += 5.0
        return clock[0]

    sim = SimulatedGpus(8, "H100", clock=lambda: clock[0], seed=0)
    for i in range(8):
        sim.set_load(i, 0.2 + 0.1 * i, int(30e9))
    n_fields = len(sim.fields)

    def poll_sim():
        tick()
        return sim.collect()

    tracker = GpuTracker()

    def poll_full():
        tick()
        samples = sim.collect()
        tracker.update(samples, ok=True)
        for s in samples:
            base_attributes(s)
            sample_points(s, tracker)

    scrapes = sorted((ROOT / "tests" / "fixtures" / "dcgm" / "scrapes").glob("*.prom"), key=lambda p: p.stat().st_size)
    largest = scrapes[-1]
    text = largest.read_text()
    lines = text.splitlines()
    broken = "\n".join(lines[:5] + ["this line is { broken"] + lines[5:]) + "\n"

    rows = []
    med, p95 = cpu_ms(poll_sim, args.repeat)
    rows.append((f"sim poll: 8 GPUs x {n_fields} fields", med, p95, 2.0))
    med, p95 = cpu_ms(poll_full, args.repeat)
    rows.append(("sim poll + tracker + OTel points", med, p95, None))
    med, p95 = cpu_ms(lambda: parse_exposition(text), args.repeat)
    parse_med = med
    rows.append((f"parse {largest.name} ({len(text)} B)", med, p95, 5.0))
    med, p95 = cpu_ms(lambda: list(text_string_to_metric_families(text)), args.repeat)
    rows.append(("  prometheus_client parser alone", med, p95, None))
    floor = med
    med, p95 = cpu_ms(lambda: parse_exposition(broken), args.repeat)
    rows.append(("  same + 1 malformed line (fallback)", med, p95, None))
    sim_text = sim.to_exposition()
    med, p95 = cpu_ms(lambda: parse_exposition(sim_text), args.repeat)
    rows.append((f"parse 8-GPU simulator scrape ({len(sim_text)} B)", med, p95, None))

    with sim.serve() as server:
        col = DcgmExporterCollector(server.url)
        http_ms = wall_ms(col.collect, max(20, args.repeat // 10))
        col.close()

    print(f"otel-llm GPU collection benchmark (python {sys.version.split()[0]}, repeat={args.repeat})")
    print(f"{'what':52s} {'median ms':>10s} {'p95 ms':>8s} {'target':>8s}  ok")
    ok_all = True
    for name, med, p95, target in rows:
        ok = "" if target is None else ("yes" if med < target else "NO")
        ok_all &= ok != "NO"
        print(f"{name:52s} {med:10.3f} {p95:8.3f} {'' if target is None else f'< {target:g}':>8s}  {ok}")
    print(f"{'scrape simulator over loopback HTTP (wall, incl. HTTP)':52s} {http_ms:10.3f}")
    print(f"tolerant parse / bare prometheus_client parse = {parse_med / floor:.2f}x")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
