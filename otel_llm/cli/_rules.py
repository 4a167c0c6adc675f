"""``otel-llm rules write DIR``: render the Prometheus recording and alerting rules."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    rules_app = typer.Typer(help="Prometheus recording and alerting rules (SLO burn rates, GPU faults, anomalies).",
                            no_args_is_help=True)
    app.add_typer(rules_app, name="rules")

    @rules_app.command("write")
    def write(
        directory: Path = typer.Argument(..., help="Folder to write otel-llm.rules.yml into (created if missing)."),
        slo: list[str] = typer.Option(
            [], "--slo", help="SLO/threshold parameter key=value, repeatable: ttft_p95=0.5s, tpot_p95=0.1s, "
            "error_rate=0.01, kv_cache=0.95, anomaly_score=0.9, queue_waiting=16, gpu_temp=85."),
        runbook_base: Optional[str] = typer.Option(None, help="Base URL of the runbooks (alert name appended as #anchor)."),
        for_override: Optional[str] = typer.Option(None, "--for", help="Override every rule's `for:` (e.g. 0s for tests)."),
        label: list[str] = typer.Option([], "--label", help="Extra label key=value on every alert, repeatable."),
        check: bool = typer.Option(True, help="Run `promtool check rules` on the result when promtool is on PATH."),
    ) -> None:
        """Render the rules with the given SLO targets; invalid parameters exit 2 with the reason."""
        import dataclasses
        import shutil
        import subprocess

        from otel_llm.alert_rules import RulesConfig, RulesConfigError, parse_slo, write_rules

        try:
            base = RulesConfig()
            extra = {}
            for item in label:
                k, sep, v = item.partition("=")
                if not sep or not k:
                    raise RulesConfigError(f"--label {item!r}: expected key=value")
                extra[k] = v
            base = dataclasses.replace(base, extra_labels=extra, for_override=for_override,
                                       runbook_base=runbook_base or base.runbook_base)
            cfg = parse_slo(slo, base)
        except RulesConfigError as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None
        path = write_rules(directory, cfg)
        typer.echo(f"wrote {path}")
        promtool = shutil.which("promtool")
        if check and promtool:
            result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
            if result.returncode != 0:
                typer.secho(result.stdout + result.stderr, fg=typer.colors.RED, err=True)
                raise typer.Exit(1)
            typer.echo(result.stdout.strip().splitlines()[-1].strip())
