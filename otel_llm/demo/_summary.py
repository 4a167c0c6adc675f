"""A readable rich summary of the telemetry a run produced (spans per service, metrics)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from otel_llm import semconv
from otel_llm.demo._series import quantile


def telemetry_summary(run: Any) -> dict[str, Any]:
    spans = list(run.sink.readable)
    by_op: Counter[tuple[str, str, str]] = Counter()
    durations: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    traces_services: dict[int, set[str]] = defaultdict(set)
    for s in spans:
        svc = str(s.resource.attributes.get("service.name", "?"))
        key = (svc, s.name, s.kind.name.lower())
        by_op[key] += 1
        durations[key].append(((s.end_time or 0) - (s.start_time or 0)) / 1e9)
        traces_services[s.context.trace_id].add(svc)
    ops = [
        {"service": k[0], "span": k[1], "kind": k[2], "count": n,
         "p50_ms": 1000 * quantile(durations[k], 0.5), "p95_ms": 1000 * quantile(durations[k], 0.95)}
        for k, n in sorted(by_op.items())
    ]
    metrics: dict[str, int] = {}
    for tel in run.telemetry.values():
        for name, pts in tel.metrics().items():
            metrics[name] = metrics.get(name, 0) + sum(int(getattr(p, "count", 1) or 1) for p in pts)
    multi = sum(1 for v in traces_services.values() if len(v) >= 2)
    example = None
    for s in spans:
        if s.resource.attributes.get("service.name") == "llm-server" and s.kind.name == "SERVER":
            keys = (semconv.GEN_AI_REQUEST_MODEL, semconv.GEN_AI_USAGE_INPUT_TOKENS, semconv.GEN_AI_USAGE_OUTPUT_TOKENS,
                    semconv.OTEL_LLM_TTFT, semconv.OTEL_LLM_TPOT, semconv.OTEL_LLM_GPU_UUIDS)
            example = {k: _plain(s.attributes.get(k)) for k in keys if k in (s.attributes or {})}
            break
    return {"spans": len(spans), "traces": len(traces_services), "multi_service_traces": multi,
            "operations": ops, "metrics": metrics, "example_llm_span": example}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    return v


def print_summary(console: Any, summary: dict[str, Any], stats: Any) -> None:
    from rich.table import Table

    console.print(f"[bold]Load:[/] {stats.sent} requests sent, {stats.ok} ok, {stats.failed} failed, "
                  f"{stats.dropped} dropped at the client (max pending)")
    console.print(f"[bold]Traces:[/] {summary['traces']} ({summary['multi_service_traces']} span two or more "
                  f"services), {summary['spans']} spans")
    table = Table(title="Spans by service and operation", show_lines=False)
    for col in ("service", "span", "kind", "count", "p50 ms", "p95 ms"):
        table.add_column(col, justify="right" if col in ("count", "p50 ms", "p95 ms") else "left")
    for op in summary["operations"]:
        table.add_row(op["service"], op["span"], op["kind"], str(op["count"]), f"{op['p50_ms']:.1f}",
                      f"{op['p95_ms']:.1f}")
    console.print(table)
    if summary["metrics"]:
        mt = Table(title="Metrics recorded (points or histogram counts)")
        mt.add_column("metric")
        mt.add_column("n", justify="right")
        for name, n in sorted(summary["metrics"].items()):
            mt.add_row(name, str(n))
        console.print(mt)
    if summary["example_llm_span"]:
        console.print("[bold]Example llm-server span attributes:[/]", summary["example_llm_span"])
