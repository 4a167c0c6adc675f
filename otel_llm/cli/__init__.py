"""The ``otel-llm`` command line (typer + rich). Heavy imports happen inside commands."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        sys.stderr.write(
            f"otel-llm: the command line needs typer and rich ({exc}).\n"
            "Install them with:  pip install 'otel-llm[cli]'   (or 'otel-llm[all]')\n"
        )
        raise SystemExit(2) from None
    from otel_llm.cli._app import build_app

    build_app()()
