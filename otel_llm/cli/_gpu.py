"""``otel-llm gpu``: read GPU telemetry from any source; a live table, or JSON."""

from __future__ import annotations

import typer

_SOURCE_HELP = "auto | dcgm | dcgm-exporter | nvml | sim | none (default: OTEL_LLM_GPU_SOURCE, else auto)"


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else v


def _gpu_json(sample, tracker) -> dict:
    from otel_llm.collectors import primary_values, sample_points

    return {
        "uuid": sample.uuid,
        "index": sample.index,
        "model": sample.model,
        "host": sample.host,
        "fields": {str(fid): _num(v) for fid, v in sorted(sample.fields.items())},
        "metrics": {name: _num(v) for name, v in sorted(primary_values(sample_points(sample, tracker)).items())},
    }


_SHORT = {"sw_power_cap": "power cap", "sw_thermal_slowdown": "thermal", "hw_thermal_slowdown": "hw thermal",
          "hw_slowdown": "hw slowdown", "hw_power_brake_slowdown": "power brake", "sync_boost": "sync boost",
          "applications_clocks_setting": "app clocks", "display_clock_setting": "display"}


def _table(tracker, source_name: str, failures: int):
    from rich.table import Table

    from otel_llm.collectors import F

    hosts = sorted({s.host for s in tracker.latest.values() if s.host})
    title = f"GPUs via {source_name}" + (f" on {', '.join(hosts)}" if hosts else "")
    table = Table(title=title + (f"  [red]{failures} failed poll(s)[/]" if failures else ""))
    for col in ("GPU", "UUID", "Model", "Util", "Memory", "Power", "Temp", "SM clock", "Throttle", "XID", "State"):
        table.add_column(col, justify="right" if col in ("Util", "Power", "Temp", "SM clock") else "left")
    for key, s in sorted(tracker.latest.items(), key=lambda kv: (kv[1].index or 0, kv[0])):
        f = s.fields
        used, free, total = f.get(F.FB_USED), f.get(F.FB_FREE), f.get(F.FB_TOTAL)
        if total is None and used is not None and free is not None:
            total = used + free + f.get(F.FB_RESERVED, 0.0)
        mem = f"{used / 1024:.1f}/{total / 1024:.1f} GiB" if used is not None and total else "-"
        reasons = sorted(_SHORT.get(r, r) for r in tracker.throttle.get(key, ()) - {"gpu_idle"})
        state = tracker.state(key)
        color = {"ok": "green", "degraded": "yellow", "failed": "red"}[state]
        table.add_row(
            str(s.index if s.index is not None else "?"), key[:12], (s.model or "?").removeprefix("NVIDIA "),
            f"{f[F.GPU_UTIL]:.0f}%" if F.GPU_UTIL in f else "-", mem,
            f"{f[F.POWER_USAGE]:.1f} W" if F.POWER_USAGE in f else "-",
            f"{f[F.GPU_TEMP]:.0f} °C" if F.GPU_TEMP in f else "-",
            f"{f[F.SM_CLOCK]:.0f} MHz" if F.SM_CLOCK in f else "-",
            ", ".join(reasons) or "-", str(tracker.last_xid(key) or "-"), f"[{color}]{state}[/]",
        )
    for key, s in tracker.lost.items():
        table.add_row(str(s.index), key[:12], (s.model or "?").removeprefix("NVIDIA "), *["-"] * 7, "[red]LOST[/]")
    return table


def register(app: typer.Typer, eval_app: typer.Typer) -> None:
    @app.command("gpu")
    def gpu(
        source: str | None = typer.Option(None, "--source", help=_SOURCE_HELP),
        url: str | None = typer.Option(None, "--url", help="dcgm-exporter metrics URL (default http://localhost:9400/metrics)"),
        hostengine: str | None = typer.Option(None, "--hostengine", help="nv-hostengine host:port, or 'embedded'"),
        interval: float = typer.Option(2.0, "--interval", min=0.05, help="Seconds between polls"),
        once: bool = typer.Option(False, "--once", help="Poll once and exit"),
        json_out: bool = typer.Option(False, "--json", help="JSON instead of a table (one object per poll)"),
        count: int = typer.Option(0, "--count", min=0, help="Stop after N polls (0 = until Ctrl-C)"),
        sim_gpus: int = typer.Option(1, "--sim-gpus", min=1, max=64, help="Simulator: number of GPUs"),
        sim_model: str = typer.Option("H100", "--sim-model", help="Simulator: H100, A100, L4, T4 or L40S"),
        sim_fault: list[str] = typer.Option(
            [], "--sim-fault", help="Simulator fault KIND[:GPU][@START[+DURATION]] (repeatable), e.g. thermal:0@30"),
        sim_load: float = typer.Option(0.0, "--sim-load", min=0.0, max=1.0, help="Simulator: utilisation 0..1"),
        sim_elapsed: float = typer.Option(0.0, "--sim-elapsed", min=0.0,
                                          help="Simulator: start this many seconds into its timeline"),
        seed: int = typer.Option(0, "--seed", help="Simulator: random seed"),
    ) -> None:
        """Show GPU telemetry from DCGM, dcgm-exporter, NVML or the simulator."""
        import json
        import logging
        import sys
        import time

        from otel_llm.collectors import GpuTracker, create_collector

        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
        offset = [0.0]
        try:
            collector = create_collector(
                source, url=url, hostengine=hostengine, interval_s=interval, sim_gpus=sim_gpus,
                sim_model=sim_model, sim_faults=sim_fault, seed=seed, clock=lambda: time.time() + offset[0],
            )
        except (ImportError, RuntimeError, ValueError) as exc:
            typer.secho(f"error: {exc}", err=True, fg="red")
            raise typer.Exit(2) from None
        if collector.name == "sim":
            for i in range(sim_gpus):
                collector.set_load(i, sim_load, int(sim_load * 0.85 * collector.spec.memory_total_mib) << 20)
            offset[0] = sim_elapsed
        tracker = GpuTracker()
        polls = 1 if once else count
        failures = 0
        try:
            if json_out:
                n = 0
                while True:
                    samples = collector.collect()
                    ok = getattr(collector, "last_collect_ok", True)
                    tracker.update(samples, ok=ok)
                    failures += not ok
                    print(json.dumps({"gpus": [_gpu_json(s, tracker) for s in
                                               sorted(samples, key=lambda s: (s.index or 0, s.key))]}), flush=True)
                    n += 1
                    if polls and n >= polls:
                        break
                    time.sleep(interval)
            else:
                from rich.console import Console
                from rich.live import Live

                console = Console()
                n = 0
                with Live(console=console, auto_refresh=False) as live:
                    while True:
                        samples = collector.collect()
                        ok = getattr(collector, "last_collect_ok", True)
                        tracker.update(samples, ok=ok)
                        failures += not ok
                        live.update(_table(tracker, collector.name, failures), refresh=True)
                        n += 1
                        if polls and n >= polls:
                            break
                        time.sleep(interval)
        except KeyboardInterrupt:
            pass
        finally:
            collector.close()
        if once and failures:
            typer.secho(f"error: the {collector.name} source did not answer", err=True, fg="red")
            raise typer.Exit(1)
