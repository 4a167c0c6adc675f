"""``otel-llm demo``: the whole product on an embedded default, in about three minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command()
    def demo(
        duration: float = typer.Option(180.0, "--duration", help="Wall-clock seconds of load."),
        workload: Optional[Path] = typer.Option(
            None, "--workload", help="CSV with TIMESTAMP,ContextTokens,GeneratedTokens (default: embedded Azure slice)."
        ),
        speedup: float = typer.Option(4.0, "--speedup", help="Time compression of the workload's arrivals."),
        max_rate: float = typer.Option(
            3.0, "--max-rate", help="Thin arrivals uniformly so the mean rate stays under this (req/s); 0 = no thinning."
        ),
        faults: str = typer.Option("default", "--faults", help="default | none | a YAML fault schedule."),
        gpu: str = typer.Option("sim", "--gpu", help="sim | auto (auto: real GPUs when present, else sim)."),
        gpus: int = typer.Option(2, "--gpus", help="Number of simulated GPUs."),
        alertmanager_url: Optional[str] = typer.Option(None, "--alertmanager-url", help="Send alerts to this Alertmanager."),
        grafana_url: Optional[str] = typer.Option(None, "--grafana-url", help="Push dashboards/annotations here."),
        otlp_endpoint: Optional[str] = typer.Option(
            None, "--otlp-endpoint", help="Also export spans and metrics over OTLP/HTTP (e.g. http://127.0.0.1:4318)."
        ),
        report: Path = typer.Option(Path("report"), "--report", help="Folder for the report and artefacts."),
        with_backends: bool = typer.Option(
            False, "--with-backends", help="Start local Prometheus and Alertmanager when their binaries exist."
        ),
        seed: int = typer.Option(0, "--seed"),
        live: bool = typer.Option(True, "--live/--no-live", help="Live rich view (off when not a terminal)."),
    ) -> None:
        """Run an instrumented LLM server under replayed real traffic, inject faults, detect and explain them."""
        from rich.console import Console

        from otel_llm.demo import DemoConfig, load_faults, run_demo

        console = Console()
        try:
            schedule = load_faults(faults, duration, n_gpus=gpus)
            cfg = DemoConfig(
                duration_s=duration, workload=workload, speedup=speedup, max_rate=max_rate or None,
                faults=schedule, n_gpus=gpus, gpu=gpu, alertmanager_url=alertmanager_url,
                grafana_url=grafana_url, otlp_endpoint=otlp_endpoint, report_dir=report,
                with_backends=with_backends, seed=seed,
            )
            if workload is not None:
                from otel_llm.demo._workload import read_trace

                read_trace(workload)  # fail fast with a clear message
        except ValueError as exc:
            console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        run_demo(cfg, console=console, live=live)
