from __future__ import annotations

import importlib

import typer

# Each module registers its own commands: register(app, eval_app).
_MODULES = (
    "otel_llm.cli._serve",
    "otel_llm.cli._gpu",
    "otel_llm.cli._eval_anomaly",
    "otel_llm.cli._eval_rca",
    "otel_llm.cli._eval_generate",
    "otel_llm.cli._analyze",
    "otel_llm.cli._dashboards",
    "otel_llm.cli._rules",
    "otel_llm.cli._demo",
)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="otel-llm",
        help="OpenTelemetry-native observability for self-hosted LLM servers.",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        add_completion=False,
    )
    eval_app = typer.Typer(help="Evaluate detectors and RCA on labelled data.", no_args_is_help=True)
    app.add_typer(eval_app, name="eval")

    @app.command()
    def version() -> None:
        """Print the otel-llm version."""
        from otel_llm import __version__

        typer.echo(__version__)

    for name in _MODULES:
        importlib.import_module(name).register(app, eval_app)
    return app
