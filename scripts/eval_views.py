"""Rebuild the development views of docs/processors.md and score the threshold detector on each.

    python scripts/eval_views.py [--dev NAB_DIR] [--set FIELD=VALUE ...] [--views a,b] [--json FILE]

Every view is written afresh under ``--work`` (default ``build/eval-views``) and
streamed through the harness (``otel_llm.evaluation.anomaly.evaluate``, the code
behind ``otel-llm eval anomaly``). The table gives the NAB standard score and
the density-matched reading (false alarms weighted as on NAB's sparser labels)
for the tune half, the held-out half and all series, then windows found and
false events. ``--set`` changes the shipped default the way ``otel-llm eval
anomaly --set`` does, so a proposed change and the default can be compared
side by side (run it twice). Takes about four minutes on two cores.

Views (see docs/processors.md, *Harness defaults and what they score*):

* with ``--dev DIR`` (a NAB-layout copy with point labels, e.g. the Microsoft
  cloud-monitoring set in ``../shared/data/anomaly-dev/nab-layout``): ``dev``
  as labelled, ``dev-nab-windows`` and ``dev-nab-events`` (``otel-llm eval
  rewindow``, without and with ``--merge-events``);
* our own synthetic data: ``synthetic-1``, ``synthetic-2``, ``weekly-30min``,
  ``weekly-5min``, ``long`` (``otel-llm eval synth`` with the documented
  arguments) and ``nab-like-artificial`` (``scripts/nab_like_artificial.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from otel_llm.evaluation.anomaly import evaluate, threshold_config_with
from otel_llm.evaluation.synthetic import write_synthetic
from otel_llm.evaluation.views import rewindow

SYNTHETIC = {
    "synthetic-1": dict(seed=1),
    "synthetic-2": dict(seed=2),
    "weekly-30min": dict(seed=11, n_series=40, length=4032, step_s=1800,
                         bases=("weekly", "daily", "business_hours", "level")),
    "weekly-5min": dict(seed=12, n_series=24, length=12096, step_s=300, bases=("weekly", "weekly", "daily")),
    "long": dict(seed=21, n_series=35, length=15840),
}
DEV = ("dev", "dev-nab-windows", "dev-nab-events")
ALL = (*DEV, *SYNTHETIC, "nab-like-artificial")


def build(view: str, work: Path, dev: Path | None) -> Path:
    """Write ``view`` under ``work`` (afresh) and return its folder; ``dev`` is used as it is."""
    if view == "dev":
        return dev
    out = work / view
    shutil.rmtree(out, ignore_errors=True)
    if view in SYNTHETIC:
        write_synthetic(out, **SYNTHETIC[view])
    elif view == "nab-like-artificial":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import nab_like_artificial

        nab_like_artificial.write(out)
    else:
        rewindow(dev, out, merge_events=view == "dev-nab-events")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", type=Path, help="NAB-layout dataset with labels/combined_labels.json (the dev views)")
    ap.add_argument("--work", type=Path, default=Path("build/eval-views"), help="where the views are written")
    ap.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                    help="threshold setting over the shipped default (repeatable), as otel-llm eval anomaly --set")
    ap.add_argument("--views", help=f"comma-separated subset of: {', '.join(ALL)}")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: every core)")
    ap.add_argument("--json", type=Path, help="also write every view's result here")
    args = ap.parse_args(argv)
    err = Console(stderr=True)
    try:
        config = threshold_config_with(args.settings)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        return 2
    views = [v.strip() for v in args.views.split(",")] if args.views else [v for v in ALL if args.dev or v not in DEV]
    unknown = [v for v in views if v not in ALL]
    if unknown:
        err.print(f"[red]error:[/] unknown view(s) {', '.join(unknown)}; choose from: {', '.join(ALL)}")
        return 2
    if any(v in DEV for v in views) and not (args.dev and (args.dev / "labels" / "combined_labels.json").exists()):
        err.print(f"[red]error:[/] the dev views need --dev DIR with labels/combined_labels.json (got {args.dev})")
        return 2
    table = Table(title="NAB standard and density-matched scores: tune / held-out (all)"
                  + (f", with {' '.join(args.settings)}" if args.settings else ", shipped default"))
    for col in ("view", "standard", "density-matched", "windows", "false events"):
        table.add_column(col, justify="left" if col == "view" else "right")
    results = {}
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        for view in views:
            task = progress.add_task(f"{view}: building", total=None)
            root = build(view, args.work, args.dev)
            progress.update(task, description=view)
            r = evaluate(root, config=config, split=True, jobs=args.jobs,
                         progress=lambda s, n, task=task: progress.update(task, advance=1))
            progress.update(task, total=r["series"], completed=r["series"])
            results[view] = r
            tune, held = r["split"]["tune"], r["split"]["held_out"]

            def cell(get, tune=tune, held=held, r=r):
                return f"{get(tune):.1f} / {get(held):.1f} ({get(r):.1f})"

            table.add_row(view, cell(lambda x: x["nab"]["standard"]), cell(lambda x: x["density_matched"]["nab"]),
                          f"{r['event']['detected']}/{r['event']['windows']}", str(r["event"]["false_events"]))
    out = Console()
    out.width = max(out.width, 110)  # one line per view, also when piped
    out.print(table)
    err.print(f"{len(views)} views in {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"settings": args.settings, "views": results}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
