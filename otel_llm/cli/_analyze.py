"""``otel-llm analyze``: the OTLP receiver that runs detectors + RCA and forwards everything downstream."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command("analyze")
    def analyze(
        http: Optional[str] = typer.Option(None, "--http", help="OTLP/HTTP host:port, or 'none' "
                                           "(env OTEL_LLM_ANALYZE_HTTP_ENDPOINT; default 127.0.0.1:4318)"),
        grpc: Optional[str] = typer.Option(None, "--grpc", help="OTLP/gRPC host:port, or 'none' "
                                           "(env OTEL_LLM_ANALYZE_GRPC_ENDPOINT; default 127.0.0.1:4317)"),
        forward: Optional[str] = typer.Option(None, "--forward", help="Downstream OTLP endpoint receiving everything "
                                              "unchanged: http(s)://host:port or grpc://host:port "
                                              "(env OTEL_LLM_ANALYZE_FORWARD_ENDPOINT)"),
        forward_header: list[str] = typer.Option([], "--forward-header", help="KEY=VALUE header for the downstream "
                                                 "(repeatable), e.g. X-Scope-OrgID=tenant"),
        token_file: Optional[Path] = typer.Option(None, "--token-file", help="File holding the bearer token clients "
                                                  "must send (env OTEL_LLM_ANALYZE_TOKEN)"),
        tls_cert: Optional[Path] = typer.Option(None, "--tls-cert", help="PEM certificate (TLS on both receivers)"),
        tls_key: Optional[Path] = typer.Option(None, "--tls-key", help="PEM private key"),
        max_request_bytes: Optional[int] = typer.Option(None, "--max-request-bytes", help="Largest request body "
                                                        "(default 8 MiB) (env OTEL_LLM_ANALYZE_MAX_REQUEST_BYTES)"),
        queue_size: Optional[int] = typer.Option(None, "--queue-size", help="Requests queued for analysis / "
                                                 "forwarding before 503 (default 64)"),
        quiet_period: Optional[float] = typer.Option(None, "--quiet-period", help="Seconds without spans before a "
                                                     "trace is complete (default 10) (env OTEL_LLM_RCA_QUIET_PERIOD)"),
        jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="Append incidents as JSON lines to this file"),
        alertmanager: list[str] = typer.Option([], "--alertmanager", help="Alertmanager URL (repeatable: HA peers)"),
        grafana: Optional[str] = typer.Option(None, "--grafana", help="Grafana URL: incidents become annotations "
                                              "(credentials from GRAFANA_TOKEN or GRAFANA_USERNAME/PASSWORD)"),
        console: bool = typer.Option(True, "--console/--no-console", help="Print incidents to the terminal"),
        gpu_source: Optional[str] = typer.Option(None, "--gpu-source", help="Also poll this host's GPUs as RCA "
                                                 "evidence: auto | dcgm | dcgm-exporter | nvml | sim (default: "
                                                 "none; remote GPUs arrive as OTLP metrics)"),
        detectors: bool = typer.Option(True, "--detectors/--no-detectors", help="Run the threshold and PyOD "
                                       "detectors on request spans (RCA always runs)"),
    ) -> None:
        """Receive OTLP traces and metrics, find root causes of abnormal latency and errors, hand incidents
        to sinks, and forward everything received byte for byte to --forward."""
        import logging

        from rich.console import Console

        from otel_llm.analyze import AnalyzeConfig, AnalyzeService, ConsoleSink, JsonlSink
        from otel_llm.analyze._detectors import default_consumers

        consumers: list = []

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        err = Console(stderr=True)
        headers = {}
        for item in forward_header:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--forward-header")
            headers[key.strip()] = value.strip()
        token = token_file.read_text(encoding="utf-8").strip() if token_file else None
        sinks: list = []
        if console:
            sinks.append(ConsoleSink())
        if jsonl:
            sinks.append(JsonlSink(str(jsonl)))
        closeables: list = []
        try:
            if alertmanager:
                from otel_llm.exporters import AlertmanagerExporter

                sinks.append(AlertmanagerExporter(alertmanager))
            if grafana:
                from otel_llm.exporters import GrafanaAnnotationExporter, GrafanaClient

                sinks.append(GrafanaAnnotationExporter(GrafanaClient(grafana)))
            config = AnalyzeConfig(http_endpoint=http, grpc_endpoint=grpc, forward_endpoint=forward,
                                   forward_headers=headers, token=token,
                                   tls_cert=str(tls_cert) if tls_cert else None,
                                   tls_key=str(tls_key) if tls_key else None, max_request_bytes=max_request_bytes,
                                   queue_size=queue_size, quiet_period_s=quiet_period)
            store = None
            if gpu_source and gpu_source != "none":
                from otel_llm.analyze._detectors import start_gpu_polling

                store, poller = start_gpu_polling(gpu_source)
                closeables.append(poller)
            consumers, metric_consumers, more = default_consumers(gpu_state=store) if detectors else ([], [], [])
            closeables += more
            service = AnalyzeService(config, sinks=sinks, span_consumers=consumers,
                                     metric_consumers=metric_consumers, gpu_state=store)
        except (ValueError, OSError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        cfg = service.config
        err.print(f"otel-llm analyze: OTLP/HTTP {cfg.http_endpoint}, OTLP/gRPC {cfg.grpc_endpoint}"
                  f"{', TLS' if cfg.tls else ''}{', token auth' if cfg.token else ''}; "
                  f"forwarding to {service.forwarder._safe_endpoint if service.forwarder else 'nowhere'}; "
                  f"detectors: {'rca + ' + str(len(consumers)) if detectors else 'rca only'}")
        try:
            service.serve_forever()
        finally:
            for c in closeables:
                try:
                    c.shutdown()
                except Exception:
                    pass
            err.print(service.stats())
