"""``run_demo``: one run with its live view, then the summary, scorecard and report."""

from __future__ import annotations

from typing import Any

from otel_llm.demo._runner import DemoConfig, DemoRun, TickState


def run_demo(cfg: DemoConfig, *, console: Any = None, live: bool = True) -> DemoRun:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from otel_llm.demo._summary import print_summary, telemetry_summary

    console = console or Console()
    progress = Progress(TextColumn("[bold]demo[/]"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                        disable=not live)
    task = progress.add_task("run", total=cfg.duration_s, info="starting")

    def on_tick(state: TickState) -> None:
        faults = ", ".join(f.label() for f in state.active_faults) or "no fault"
        progress.update(task, completed=min(cfg.duration_s, state.t),
                        info=f"{state.replay.sent} sent, {state.replay.in_flight} in flight, {faults}")

    run = DemoRun(cfg, on_tick=on_tick)
    console.print(f"[bold]otel-llm demo[/]: {cfg.duration_s:.0f} s, speedup {cfg.speedup:g}, "
                  f"{len(cfg.faults)} fault(s), {cfg.n_gpus} simulated GPU(s)")
    with progress:
        run.run()
    console.print(f"[dim]server: {run.server_kind}[/]")
    print_summary(console, telemetry_summary(run), run.stats)
    return run
