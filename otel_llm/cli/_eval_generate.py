"""``otel-llm eval generate``: labelled NAB-layout datasets and RCA cases from headless demo runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @eval_app.command("generate")
    def generate(
        out: Path = typer.Option(..., "--out", help="Output folder (nab/, rca/, runs/)."),
        runs: int = typer.Option(1, "--runs", min=1, help="Number of runs (each with its own random fault schedule)."),
        seed: int = typer.Option(0, "--seed", help="Seed of the first run (run i uses seed + i)."),
        duration: float = typer.Option(180.0, "--duration", help="Wall-clock seconds per run."),
        speedup: float = typer.Option(4.0, "--speedup", help="Time compression of the workload."),
        max_rate: float = typer.Option(3.0, "--max-rate", help="Mean request-rate cap (req/s); 0 = no thinning."),
        workload: Optional[Path] = typer.Option(None, "--workload", help="Trace CSV (default: embedded Azure slice)."),
        faults: Optional[str] = typer.Option(
            None, "--faults", help="default | YAML file: the same schedule for every run (default: random per run)."
        ),
    ) -> None:
        """Run the demo headless and write labelled data: NAB layout (series + fault windows) and RCA cases."""
        import json

        from rich.console import Console

        from otel_llm.demo._faults import load_faults
        from otel_llm.demo._generate import generate as _generate

        console = Console(stderr=True)
        try:
            schedule = load_faults(faults, duration) if faults else None
            if workload is not None:
                from otel_llm.demo._workload import read_trace

                read_trace(workload)
        except ValueError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        summary = _generate(out, runs=runs, seed=seed, duration_s=duration, speedup=speedup,
                            max_rate=max_rate or None, workload=workload, console=console, faults=schedule)
        typer.echo(json.dumps(summary))
