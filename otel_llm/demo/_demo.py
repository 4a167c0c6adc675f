"""``run_demo``: one run with its live view, then the summary, scorecard and report."""

from __future__ import annotations

import json
import time
from typing import Any

from otel_llm.demo._runner import DemoConfig, DemoRun


def run_demo(cfg: DemoConfig, *, console: Any = None, live: bool = True, report: bool = True) -> DemoRun:
    """Run the demo end to end; writes ``scorecard.json``, ``alerts.jsonl`` and ``index.html`` to ``cfg.report_dir``."""
    from rich.console import Console

    from otel_llm.demo._live import LiveView
    from otel_llm.demo._pipeline import DemoPipeline
    from otel_llm.demo._scorecard import score_run
    from otel_llm.demo._summary import print_summary, telemetry_summary

    console = console or Console()
    if cfg.gpu == "auto":
        console.print("[yellow]--gpu auto: the demo injects faults into simulated GPUs only; real-GPU mode is not "
                      "wired into the demo yet (use `otel-llm gpu` for real GPUs). Using the simulator.[/]")
    report_dir = cfg.report_dir
    report_dir.mkdir(parents=True, exist_ok=True)
    view = LiveView(cfg, console, enabled=live and console.is_terminal)

    run = DemoRun(cfg, on_tick=view.on_tick)
    backends = _start_backends(cfg, console) if cfg.with_backends else None
    try:
        sinks = _sinks(cfg, console, backends)
        pipeline = DemoPipeline(meter_provider=run.telemetry["llm-server"].meter_provider, report_dir=report_dir,
                                gpu_store=run.gpus.store, sinks=sinks, min_history=cfg.min_history, on_alert=view.on_alert)
        run.pipeline = pipeline
        view.pipeline = pipeline
        console.print(f"[bold]otel-llm demo[/]: {cfg.duration_s:.0f} s of load, workload speedup {cfg.speedup:g}, "
                      f"{len(cfg.faults)} fault(s), {cfg.n_gpus} simulated GPU(s); report in {report_dir}/")
        _write_artifacts(cfg, console, backends)
        if backends is not None and cfg.with_backends:
            run.on_services = lambda: _start_prometheus(run, backends, console)
        with view:
            run.run()
        pipeline.finish(time.time())
        if backends and "alertmanager" in backends:
            try:
                held = backends["alertmanager"].alerts()
                console.print(f"[bold]Alertmanager[/] at {backends['alertmanager'].url} holds {len(held)} alert(s): "
                              + ", ".join(sorted({a['labels'].get('alertname', '?') for a in held})[:6]))
            except Exception as exc:
                console.print(f"[yellow]could not query Alertmanager: {exc}[/]")
    finally:
        if backends is not None:
            for b in backends.values():
                b.stop()
    console.print(f"[dim]components: server = {run.server_kind}; "
                  + "; ".join(f"{k} = {v}" for k, v in pipeline.components.items()) + "[/]")
    summary = telemetry_summary(run)
    print_summary(console, summary, run.stats)
    card = score_run(faults=cfg.faults, detections=pipeline.record.detections, rca=pipeline.record.rca, incidents=pipeline.record.incidents,
                     gpu_uuids=run.gpus.uuids, t0=run.t0_wall, duration_s=cfg.duration_s, speedup=cfg.speedup)
    card["run"] = {"duration_s": cfg.duration_s, "speedup": cfg.speedup, "max_rate": cfg.max_rate,
                   "requests": run.stats.sent, "ok": run.stats.ok, "failed": run.stats.failed,
                   "dropped": run.stats.dropped, "gpus": run.gpus.uuids, "seed": cfg.seed,
                   "workload": str(cfg.workload or "embedded Azure LLM conversation trace slice (CC BY 4.0)"),
                   "components": {"server": run.server_kind, **pipeline.components}}
    (report_dir / "scorecard.json").write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    print_scorecard(console, card)
    if report:
        from otel_llm.demo._report import write_report

        path = write_report(run, pipeline, card, summary, report_dir)
        console.print(f"[bold green]report:[/] {path}")
    return run


def print_scorecard(console: Any, card: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="Scorecard: injected faults")
    for col in ("fault", "window (s)", "detected", "delay (s)", "first detection", "RCA top-1", "true rank"):
        t.add_column(col)
    for f in card["faults"]:
        top = f["top_root_cause"]["name"] if f["top_root_cause"] else "-"
        t.add_row(f["fault"], f"{f['start']:.0f}-{f['end']:.0f}",
                  "[green]yes[/]" if f["detected"] else "[red]missed[/]",
                  f"{f['delay_s']:.1f}" if f["delay_s"] is not None else "-",
                  (f["first_detection"]["series"][:48] if f["first_detection"] else "-"),
                  top[:40], str(f["true_rank"] or "-"))
    console.print(t)
    s = card["summary"]
    console.print(f"detected {s['detected']}/{s['faults']}, root cause ranked first {s['rca_top1']}/{s['faults']}, "
                  f"false alarms {s['false_alarms']} ({s['false_alarms_warmup']} in the warm-up; "
                  f"{s['false_alarms_per_replayed_hour']} per replayed hour)")


def _start_backends(cfg: DemoConfig, console: Any) -> dict[str, Any] | None:
    """``--with-backends``: a local Alertmanager (alerts) and Prometheus (rules over the replicas' /metrics)."""
    from otel_llm._backends import Alertmanager, BackendError

    out: dict[str, Any] = {}
    try:
        am = Alertmanager()
        am.start()
        out["alertmanager"] = am
        console.print(f"[dim]started Alertmanager at {am.url}[/]")
        if not cfg.alertmanager_url:
            cfg.alertmanager_url = am.url
    except (BackendError, OSError) as exc:
        console.print(f"[yellow]--with-backends: Alertmanager not started: {exc}[/]")
    return out


def _start_prometheus(run: DemoRun, backends: dict[str, Any], console: Any) -> None:
    """Prometheus scraping the LLM replicas, evaluating otel-llm's rules, alerting to the local Alertmanager."""
    from otel_llm._backends import BackendError, Prometheus

    try:
        rules = run.cfg.report_dir / "rules" / "otel-llm.rules.yml"
        targets = [h.url.split("//", 1)[1] for h in run._handles[: run.cfg.n_gpus]]
        am = backends.get("alertmanager")
        prom = Prometheus(scrape_targets=targets, rule_files=[rules] if rules.exists() else [],
                          alertmanager_urls=[am.url] if am else [], scrape_interval="2s")
        prom.start()
        backends["prometheus"] = prom
        console.print(f"[dim]started Prometheus at {prom.url} scraping {len(targets)} replica(s)[/]")
    except (BackendError, OSError, TypeError) as exc:
        console.print(f"[yellow]--with-backends: Prometheus not started: {exc}[/]")


def _sinks(cfg: DemoConfig, console: Any, backends: Any) -> list[Any]:
    """Exporters for incidents: Alertmanager (durable queue in the report folder) and Grafana annotations."""
    sinks: list[Any] = []
    if cfg.alertmanager_url:
        try:
            from otel_llm.exporters import AlertmanagerExporter

            sinks.append(AlertmanagerExporter(urls=[cfg.alertmanager_url],
                                              queue_path=cfg.report_dir / "alertmanager-queue.sqlite"))
            console.print(f"[dim]alerts also go to Alertmanager at {cfg.alertmanager_url}[/]")
        except (ImportError, ValueError) as exc:
            console.print(f"[yellow]Alertmanager exporter not used ({exc}); alerts go to the terminal and "
                          "alerts.jsonl only[/]")
    if cfg.grafana_url:
        try:
            from otel_llm.exporters._grafana import GrafanaAnnotationExporter, GrafanaClient

            sinks.append(GrafanaAnnotationExporter(GrafanaClient(cfg.grafana_url)))
        except (ImportError, ValueError) as exc:
            console.print(f"[yellow]Grafana annotations not used ({exc})[/]")
    return sinks


def _write_artifacts(cfg: DemoConfig, console: Any, backends: Any) -> None:
    """Dashboards (JSON + provisioning) and Prometheus rules to ``report/``; dashboards to Grafana when asked."""
    try:
        from otel_llm.dashboards import write as write_dashboards

        paths = list(write_dashboards(cfg.report_dir / "dashboards"))
        console.print(f"[dim]wrote {len(paths)} dashboard files to {cfg.report_dir / 'dashboards'}[/]")
    except Exception as exc:  # artefacts are a bonus: never fail the run over them
        console.print(f"[yellow]dashboards not written: {exc}[/]")
    try:
        from otel_llm.alert_rules import RulesConfig, write_rules

        path = write_rules(cfg.report_dir / "rules", RulesConfig())
        console.print(f"[dim]wrote Prometheus rules to {path}[/]")
    except Exception as exc:
        console.print(f"[yellow]rules not written: {exc}[/]")
    if cfg.grafana_url:
        try:
            from otel_llm.dashboards import build_all
            from otel_llm.exporters._grafana import GrafanaClient, push_dashboards

            with GrafanaClient(cfg.grafana_url) as client:
                results = push_dashboards(client, build_all(), folder_uid="otel-llm", folder_title="otel-llm")
            console.print(f"[dim]pushed {len(results)} dashboards to Grafana[/]")
        except Exception as exc:
            console.print(f"[yellow]dashboards not pushed to Grafana: {exc}[/]")
