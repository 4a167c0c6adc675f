"""``otel-llm dashboards write DIR`` / ``otel-llm dashboards push --grafana-url URL``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    dash_app = typer.Typer(help="Grafana dashboards as code (LLM serving, GPU, anomalies, traces).",
                           no_args_is_help=True)
    app.add_typer(dash_app, name="dashboards")

    @dash_app.command("write")
    def write(
        directory: Path = typer.Argument(..., help="Folder for the dashboard JSON files and the provisioning YAML."),
        folder: str = typer.Option("otel-llm", help="Grafana folder named in the provisioning file."),
    ) -> None:
        """Write every dashboard as JSON plus a Grafana provisioning YAML pointing at DIR."""
        from otel_llm.dashboards import write as write_dashboards

        for path in write_dashboards(directory, folder=folder):
            typer.echo(f"wrote {path}")

    @dash_app.command("push")
    def push(
        grafana_url: Optional[str] = typer.Option(None, "--grafana-url", envvar="GRAFANA_URL",
                                                  help="Grafana base URL (or GRAFANA_URL)."),
        folder_uid: str = typer.Option("otel-llm", help="UID of the folder to create/update dashboards in."),
        folder_title: str = typer.Option("otel-llm", help="Title of that folder when it is created."),
        ca_file: Optional[Path] = typer.Option(None, help="CA bundle to verify Grafana's TLS certificate."),
        insecure: bool = typer.Option(False, help="Skip TLS verification (testing only)."),
        timeout: float = typer.Option(10.0, help="HTTP timeout in seconds."),
    ) -> None:
        """Create or update the dashboards in Grafana over its HTTP API.

        Credentials come from the environment only (never a flag, so they stay out of shell history):
        GRAFANA_TOKEN (service-account token) or GRAFANA_USERNAME / GRAFANA_PASSWORD.
        """
        import os

        from rich.console import Console

        from otel_llm.dashboards import build_all
        from otel_llm.exporters import HttpOptions
        from otel_llm.exporters._grafana import GrafanaClient, GrafanaError, push_dashboards

        console = Console()
        try:
            http = HttpOptions(bearer_token=os.environ.get("GRAFANA_TOKEN") or None,
                               username=os.environ.get("GRAFANA_USERNAME") or None,
                               password=os.environ.get("GRAFANA_PASSWORD") or None,
                               ca_file=str(ca_file) if ca_file else None, insecure_skip_verify=insecure,
                               timeout_s=timeout)
            with GrafanaClient(grafana_url, http=http) as client:
                dashboards = build_all()
                with console.status(f"pushing {len(dashboards)} dashboards to {client.url} ..."):
                    results = push_dashboards(client, dashboards, folder_uid=folder_uid, folder_title=folder_title)
        except (ValueError, GrafanaError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
        for r in results:
            console.print(f"[green]ok[/green] {r.uid} v{r.version} {r.url}")
