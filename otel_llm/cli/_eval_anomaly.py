"""``otel-llm eval anomaly``: stream a NAB-layout dataset through the online detectors and score them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _warn_labels(err, nab: Path, report: dict) -> None:
    """Say on stderr where the labels and the data do not match (scoring goes on: such series have no windows)."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    if not report["labels_file"]:
        err.print(f"[yellow]warning:[/] no {nab / 'labels' / 'combined_windows.json'}: every series is scored as "
                  "having no anomaly windows (NAB layout: labels/combined_windows.json)")
        return
    if report["series_without_entry"]:
        err.print(f"[yellow]warning:[/] {len(report['series_without_entry'])} series have no entry in "
                  f"combined_windows.json and are scored with no windows: {names(report['series_without_entry'])}")
    if report["entries_without_data"]:
        err.print(f"[yellow]warning:[/] {len(report['entries_without_data'])} label entries name no file under "
                  f"{nab / 'data'}: {names(report['entries_without_data'])} (check the <group>/<name>.csv paths)")


DROP_WARN_SHARE = 0.01
"""A series that loses at least this share of its rows (non-finite values, rows out of order) is named on stderr."""

_DROP_HINTS = {
    "out_of_order": "rows whose timestamp is not later than the row before (a file newest first, or repeated "
                    "stamps): sort it oldest first and keep one row per timestamp",
    "non_finite": "values that are empty, NaN or infinite",
}


def _warn_drops(err, result: dict) -> None:
    """Say on stderr which series lost a share of their rows, why, and how to fix the file (scoring goes on)."""
    for d in result.get("input", {}).get("series_dropping", []):
        for reason, count in d["dropped"].items():
            if count >= DROP_WARN_SHARE * d["rows"]:
                err.print(f"[yellow]warning:[/] {d['series']}: {count:,} of {d['rows']:,} rows dropped, "
                          f"{_DROP_HINTS.get(reason, reason)}; they are scored with no alarm")


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @eval_app.command("anomaly")
    def eval_anomaly(
        nab: Path = typer.Option(..., "--nab", help="Dataset root: DIR/data/<group>/<name>.csv and DIR/labels/combined_windows.json"),
        detector: str = typer.Option("threshold", "--detector", help="threshold | pyod"),
        out: Optional[Path] = typer.Option(None, "--out", help="Write RESULTS_DIR/<group>/<name>.csv (timestamp,value,anomaly_score,alarm)"),
        alarm_mode: str = typer.Option("onset", "--alarm-mode", help="onset: 1 where an alert opens | active: 1 on every abnormal row of an open alert"),
        model: Optional[str] = typer.Option(None, "--model", help="threshold model: auto_ets | mstl | robust (default: the shipped default)"),
        season_length: Optional[int] = typer.Option(None, "--season-length", help="Points per season (MSTL / seasonal ETS)"),
        log_scale: Optional[str] = typer.Option(None, "--log-scale", help="auto | on | off"),
        only: Optional[str] = typer.Option(None, "--only", help="Only series whose <group>/<name>.csv contains this text"),
        settings: list[str] = typer.Option(
            None, "--set", help="Threshold setting FIELD=VALUE over the shipped default (repeat the option): a "
            "ThresholdConfig field (tail_scale=2.0) or policy.FIELD for the alarm rule (policy.threshold=4.0)",
        ),
        split: bool = typer.Option(False, "--split", help="Also score the tune and held-out halves (series sorted by key: even / odd positions)"),
        jobs: int = typer.Option(1, "--jobs", min=1, help="Worker processes (same results; the speed figure then sums the workers' time)"),
    ) -> None:
        """Score a detector's own alarms with NAB (standard / low-FP / low-FN), point-wise and event F1.

        Prints one JSON object on stdout; progress goes to stderr.
        """
        from dataclasses import replace

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from otel_llm.evaluation.anomaly import (
            VALID_ALARM_MODES,
            VALID_DETECTORS,
            default_threshold_config,
            evaluate,
            threshold_config_with,
        )
        from otel_llm.evaluation.nab import load_nab

        err = Console(stderr=True)
        if detector not in VALID_DETECTORS:
            raise typer.BadParameter(f"{detector!r}; choose one of: {', '.join(VALID_DETECTORS)}", param_hint="--detector")
        if alarm_mode not in VALID_ALARM_MODES:
            raise typer.BadParameter(f"{alarm_mode!r}; choose one of: {', '.join(VALID_ALARM_MODES)}", param_hint="--alarm-mode")
        config = None
        if detector == "threshold":
            changes = {k: v for k, v in {"model": model, "season_length": season_length, "log_scale": log_scale}.items() if v is not None}
            try:
                config = threshold_config_with(settings or (), replace(default_threshold_config(), **changes))
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--set" if settings else None) from None
        elif settings:
            raise typer.BadParameter("--set applies to --detector threshold only", param_hint="--set")
        report: dict = {}
        try:
            series = load_nab(nab, report=report)
        except (FileNotFoundError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        _warn_labels(err, nab, report)
        if only:
            series = [s for s in series if only in s.key]
        total = sum(len(s.values) for s in series)
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err, transient=False,
        ) as progress:
            task = progress.add_task(f"{detector}: {len(series)} series", total=total)

            def tick(s, n):
                progress.update(task, advance=n, description=f"{detector}: {s.key}")

            result = evaluate(nab, detector, out, config=config, alarm_mode=alarm_mode, progress=tick, series=series,
                              labels_report=report, split=split, jobs=jobs)
        _warn_drops(err, result)
        if settings:
            result["settings"] = list(settings)
        result["dataset"] = str(nab)
        if out is not None:
            result["results_dir"] = str(out)
        typer.echo(json.dumps(result, indent=2, sort_keys=True))

    @eval_app.command("rewindow")
    def eval_rewindow(
        nab: Path = typer.Option(..., "--nab", help="Source dataset with point labels: DIR/labels/combined_labels.json"),
        out: Path = typer.Option(..., "--out", help="Output folder: a copy of the data with labels/combined_windows.json rebuilt"),
        merge_events: bool = typer.Option(False, "--merge-events", help="First merge labelled runs closer than 3 % of the series (or half a window) into one event"),
    ) -> None:
        """Rebuild NAB windows per labelled run (not per labelled point) from NAB point labels.

        NAB gives each labelled point a window of 0.1 n / k rows; a dataset labelled
        point by point in long runs then gets many narrow windows. This writes one
        window of 0.1 n / runs rows centred on each run's first point (merged where
        they touch), the shape NAB's own labels have. Prints a JSON summary."""
        from rich.console import Console

        from otel_llm.evaluation.views import rewindow

        try:
            summary = rewindow(nab, out, merge_events=merge_events)
        except (FileNotFoundError, ValueError) as exc:
            Console(stderr=True).print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        summary["out"] = str(out)
        typer.echo(json.dumps(summary))

    @eval_app.command("synth")
    def eval_synth(
        out: Path = typer.Option(..., "--out", help="Output folder: OUT/data/<group>/<name>.csv and OUT/labels/"),
        series: int = typer.Option(70, "--series", min=1, help="Number of series (bases cycle: level, heavy-tailed, counts, daily, ...)"),
        seed: int = typer.Option(0, "--seed", help="Seed (a different seed is a clean held-out set)"),
        length: int = typer.Option(4032, "--length", min=200, help="Points per series"),
        step: int = typer.Option(300, "--step", min=1, help="Seconds between points"),
        base: list[str] = typer.Option(
            None, "--base", help="Normal base to cycle through (repeat the option; default: all but weekly). "
            "'weekly' needs --length for three or more weeks",
        ),
    ) -> None:
        """Write labelled synthetic ops series (spikes, shifts, flatlines, drifts, dropouts, lost daily
        pattern) in the NAB layout, for `otel-llm eval anomaly`. Prints a JSON summary."""
        from otel_llm.evaluation.synthetic import BASES, write_synthetic

        try:
            summary = write_synthetic(out, n_series=series, seed=seed, length=length, step_s=step, bases=tuple(base or BASES))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--base") from None
        typer.echo(json.dumps(summary))
