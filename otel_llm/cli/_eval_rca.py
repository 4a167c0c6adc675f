"""``otel-llm eval rca``: score the root-cause ranking on labelled cases."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @eval_app.command("rca")
    def eval_rca(
        cases: Path = typer.Option(..., "--cases", help="Cases file: JSON lines {id, spans, fault_start, fault_end, "
                                                        "root_cause}; spans = OTLP/JSON file (relative to the cases file)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also write the result JSON to this file."),
        synthetic: int = typer.Option(0, "--synthetic", help="Instead of reading, first write N seeded synthetic "
                                                             "cases to the --cases path's folder (a dev set)."),
    ) -> None:
        """Rank root causes for every case (never reading root_cause) and print one JSON object:
        AC@1, AC@3, AC@5, Avg@5, seconds per case and each case's top 5. Progress goes to stderr."""
        import json

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from otel_llm.evaluation.rca import evaluate, load_cases, write_cases

        err = Console(stderr=True)
        if synthetic:
            from otel_llm.processors.rca import generate_case

            write_cases(cases.parent, (generate_case(seed) for seed in range(synthetic)))
            if cases.name != "cases.jsonl":
                (cases.parent / "cases.jsonl").rename(cases)
        try:
            loaded = load_cases(cases)
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        with Progress(TextColumn("[bold]eval rca"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=err, transient=True) as progress:
            task = progress.add_task("", total=len(loaded))

            def step(case, row):
                mark = "miss" if row["rank"] is None else f"rank {row['rank']}"
                progress.update(task, advance=1, description=f"{case.id}: {mark}")

            result = evaluate(loaded, on_case=step)
        text = json.dumps(result)
        if out is not None:
            out.write_text(text + "\n", encoding="utf-8")
        typer.echo(text)
