"""Benchmark: the Alertmanager exporter's cost to the caller and its delivery rate to a real Alertmanager.

    .venv/bin/python benchmarks/exporters.py            # needs prometheus-alertmanager on PATH for delivery
    .venv/bin/python benchmarks/exporters.py --incidents 2000

Prints one JSON object. Measured side by side in one run:

* ``export_us``: wall time of ``export([incident])`` seen by the caller (p50/p99, microseconds),
  with the durable SQLite outbox (WAL) and with ``:memory:`` (no durability), worker not started,
  so the figure is the enqueue cost alone;
* ``deliver``: incidents/s from ``export`` to acknowledged by a real local Alertmanager
  (one HTTP batch of up to 64 alerts at a time), and the same through an Alertmanager that was
  down for the first half-second (outage recovery);
* ``dashboards_build_ms`` / ``rules_render_ms``: time to build the four dashboards / render the rules.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def _incident(i: int):
    from otel_llm.processors._model import Detection, Incident, RootCauseCandidate, Severity

    now = time.time()
    return Incident(
        id=f"bench-{i}", start=now - 5, severity=Severity.WARNING, title=f"bench incident {i}",
        detections=[Detection(kind="threshold", series=f"ttft{{model=m{i % 7}}}", start=now - 5, score=0.9,
                              metric="gen_ai.server.time_to_first_token", band=(0.01, 0.4), level=95,
                              attributes={"gen_ai.request.model": f"m{i % 7}"}, trace_ids=("ab" * 16,))],
        candidates=[RootCauseCandidate("gpu", "GPU-1", 0.8, "thermal throttling")])


def _percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100)
    return {"p50": round(qs[49], 1), "p99": round(qs[98], 1), "n": len(samples)}


def bench_export(n: int, queue_path: str) -> dict[str, float]:
    from otel_llm.exporters import AlertmanagerExporter

    exp = AlertmanagerExporter(["http://127.0.0.1:9"], queue_path=queue_path, start=False)
    incidents = [_incident(i) for i in range(n)]
    times = []
    for inc in incidents:
        t0 = time.perf_counter()
        exp.export([inc])
        times.append((time.perf_counter() - t0) * 1e6)
    exp.shutdown(timeout_millis=1)
    return _percentiles(times)


def bench_deliver(n: int, outage_s: float) -> dict[str, float]:
    from otel_llm.exporters import AlertmanagerExporter

    from otel_llm._backends import Alertmanager

    with tempfile.TemporaryDirectory() as tmp, Alertmanager() as am:
        exp = AlertmanagerExporter([am.url], queue_path=Path(tmp) / "q.db", backoff_initial_s=0.05,
                                   backoff_max_s=0.2)
        if outage_s:
            am.kill()
        t0 = time.perf_counter()
        for i in range(n):
            exp.export([_incident(i)])
        if outage_s:
            time.sleep(outage_s)
            am.restart()
        ok = exp.force_flush(60_000)
        elapsed = time.perf_counter() - t0
        delivered = len(am.alerts(source="otel-llm"))
        exp.shutdown()
    return {"incidents": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1), "all_acked": ok,
            "in_alertmanager": delivered}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=1000)
    args = parser.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["export_us_durable_sqlite"] = bench_export(args.incidents, str(Path(tmp) / "q.db"))
    out["export_us_memory"] = bench_export(args.incidents, ":memory:")
    import shutil

    if shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"):
        out["deliver"] = bench_deliver(args.incidents, 0.0)
        out["deliver_after_0.5s_outage"] = bench_deliver(args.incidents, 0.5)
    else:
        out["deliver"] = "skipped: no Alertmanager binary"
    t0 = time.perf_counter()
    from otel_llm import dashboards

    dashboards.build_all()
    out["dashboards_build_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    t0 = time.perf_counter()
    from otel_llm.alert_rules import render_yaml

    render_yaml()
    out["rules_render_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
