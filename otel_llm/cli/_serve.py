"""``otel-llm serve`` (the reference OpenAI-compatible server) and ``otel-llm vllm-bridge``."""

from __future__ import annotations

from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Bind address."),
        port: int = typer.Option(8000, help="Port (0 = any free port)."),
        model: Optional[str] = typer.Option(
            None, "--model", help="Local Hugging Face model directory (no downloads). Default: the tiny seeded model."
        ),
        model_name: Optional[str] = typer.Option(None, help="Model id clients send (default: the model's name)."),
        max_queue: Optional[int] = typer.Option(
            None, help="Requests allowed to wait before 429 (env OTEL_LLM_SERVER_MAX_QUEUE, default 64)."
        ),
        workers: int = typer.Option(1, min=1, help="Generation threads (1 keeps seeded sampling reproducible)."),
        kv_capacity_tokens: int = typer.Option(8192, min=1, help="Denominator of the simulated KV-cache gauge."),
        max_tokens_limit: int = typer.Option(512, min=1, help="Largest max_tokens a request may ask for."),
        seed: int = typer.Option(0, help="Base sampling seed (a request's own seed wins)."),
        torch_threads: Optional[int] = typer.Option(
            None, min=1, help="torch.set_num_threads (default: 1 for the tiny model, torch's default otherwise)."
        ),
        instrument: bool = typer.Option(True, "--instrument/--no-instrument", help="Traces and metrics on/off."),
        log_level: str = typer.Option("info", help="uvicorn log level."),
    ) -> None:
        """Serve /v1/completions, /v1/chat/completions (SSE streaming), /v1/models, /health, /metrics.

        Telemetry goes where the standard variables say (otel_llm.configure()):
        OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (otlp, prometheus, console, none),
        OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME (default otel-llm-serve).
        /metrics on this server always shows its metrics in Prometheus format.
        """
        import os

        import uvicorn
        from rich.console import Console

        import otel_llm
        from otel_llm.models import load_model
        from otel_llm.server import create_app

        console = Console(stderr=True)
        handle = None
        if instrument:
            os.environ.setdefault("OTEL_SERVICE_NAME", "otel-llm-serve")
            try:
                handle = otel_llm.configure()
            except ValueError as exc:  # a bad OTEL_* / OTEL_LLM_* value: say which, and stop
                console.print(f"[red]configuration error:[/red] {exc}")
                raise typer.Exit(2) from None
        with console.status("loading the model..."):
            try:
                loaded, tokenizer = load_model(model, seed=seed)
            except OSError as exc:
                console.print(f"[red]cannot load a model from {model!r}:[/red] {exc}")
                raise typer.Exit(2) from None
        if torch_threads is None and model is None:
            torch_threads = 1  # the tiny model is fastest single-threaded; a pool only adds contention
        try:
            application = create_app(
                loaded, tokenizer, model_name=model_name, instrument=instrument, max_queue=max_queue,
                workers=workers, kv_capacity_tokens=kv_capacity_tokens, max_tokens_limit=max_tokens_limit,
                seed=seed, torch_threads=torch_threads,
            )
        except ValueError as exc:
            console.print(f"[red]invalid setting:[/red] {exc}")
            raise typer.Exit(2) from None
        name = application.state.model_name
        console.print(
            f"[bold]otel-llm serve[/bold]: model [cyan]{name}[/cyan] on http://{host}:{port}  "
            f"(telemetry {'on' if instrument else 'off'}; Prometheus text at /metrics)"
        )
        try:
            uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)
        except KeyboardInterrupt:  # Ctrl-C after uvicorn's own graceful shutdown
            pass
        finally:
            if handle is not None:
                handle.shutdown()

    @app.command("vllm-bridge")
    def vllm_bridge(
        url: Optional[str] = typer.Option(
            None, help="vLLM /metrics URL (env OTEL_LLM_VLLM_METRICS_URL, default http://localhost:8000/metrics)."
        ),
        interval: Optional[float] = typer.Option(
            None, help="Seconds between scrapes (env OTEL_LLM_VLLM_SCRAPE_INTERVAL, default 10)."
        ),
        once: bool = typer.Option(False, "--once", help="Scrape once, print what would be emitted, exit."),
    ) -> None:
        """Re-emit a vLLM server's Prometheus metrics as OpenTelemetry metrics (exporters from OTEL_* variables).

        Runs until Ctrl-C as a sidecar: semconv names where they map
        (gen_ai.server.time_to_first_token ...), otel_llm.server.* for queue /
        prefill / decode / running / waiting / KV cache, otel_llm.vllm.* for the rest.
        """
        import threading

        from rich.console import Console
        from rich.table import Table

        from otel_llm.instrumentation.vllm import VLLMMetricsBridge

        console = Console(stderr=True)
        if once:
            from otel_llm.testing import Telemetry

            tel = Telemetry()
            try:
                bridge = VLLMMetricsBridge(url, interval, meter_provider=tel.meter_provider, retries=1).attach()
            except ValueError as exc:
                console.print(f"[red]invalid setting:[/red] {exc}")
                raise typer.Exit(2) from None
            ok = bridge.scrape_once()
            table = Table(title=f"OpenTelemetry metrics bridged from {bridge.url}")
            for col in ("metric", "type", "points"):
                table.add_column(col)
            for name, points in sorted(tel.metrics().items()):
                if name.startswith(("gen_ai.", "otel_llm.server.", "otel_llm.vllm.")):
                    kind = type(points[0]).__name__.replace("DataPoint", "") if points else "-"
                    table.add_row(name, kind, str(len(points)))
            bridge.shutdown()
            tel.shutdown()
            if not ok:
                console.print(f"[red]could not scrape {bridge.url}[/red] (see the warning above)")
                raise typer.Exit(1)
            Console().print(table)
            return

        import otel_llm

        try:
            handle = otel_llm.configure(instrument=False, vllm_metrics_url="")  # this command runs the bridge
            bridge = VLLMMetricsBridge(url, interval)
        except ValueError as exc:
            console.print(f"[red]configuration error:[/red] {exc}")
            raise typer.Exit(2) from None
        bridge.start()
        console.print(f"bridging [cyan]{bridge.url}[/cyan] every {bridge.interval_s:g} s (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            bridge.shutdown()
            handle.shutdown()
