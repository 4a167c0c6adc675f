"""Other readings of a labelled dataset: NAB-style windows from point labels, halves, sparse-label weights.

The development figures in docs/processors.md read each dataset three ways
besides the plain NAB score; this module holds those rules so the figures can
be rebuilt (``otel-llm eval rewindow``, ``otel-llm eval anomaly --split``,
``scripts/eval_views.py``):

* **NAB windows per labelled run** (:func:`run_windows`): NAB's labeller gives
  each labelled *point* a window of ``0.1 n / k`` rows. A dataset labelled
  point by point in long runs (the Microsoft cloud-monitoring set: 4,533
  points in 299 runs) then gets many narrow windows. Counting *runs* instead
  gives fewer, wider windows, the shape NAB's own labels have: one window of
  ``int(0.1 n / runs)`` rows centred on each run's first point, clipped to the
  series, overlapping or touching windows merged.
* **NAB events** (``merge_events=True``): runs closer than 3 % of the series
  (or half a window, if that is more) are first merged into one event, as a
  NAB labeller marks a burst of crashes once.
* **Tune and held-out halves** (:func:`split_keys`): series sorted by key, even
  positions tune, odd positions held out. Choices are made on the tune half;
  the held-out half only measures them.
* **Density-matched profile** (:func:`density_matched_profile`): NAB's corpus
  has about one window per 3,000 rows. The NAB score divides by the number of
  windows, so on a more densely labelled dataset a false alarm costs less than
  it would on NAB-like data. This profile is ``standard`` with the
  false-positive weight scaled by ``3000 / (rows per window)``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from otel_llm.evaluation.nab import PROFILES, NabSeries, _read_times, load_nab, read_label_map

NAB_ROWS_PER_WINDOW = 3000
"""Rows per labelled window in NAB's corpus (about 365,000 rows, a few windows per series)."""
EVENT_GAP_SHARE = 0.03
"""``merge_events``: labelled runs closer than this share of the series (or half a window) are one event."""


def label_runs(rows: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive labelled rows, as inclusive ``(first, last)`` pairs."""
    runs: list[list[int]] = []
    for i in sorted(set(rows)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return [(a, b) for a, b in runs]


def run_windows(n: int, runs: Sequence[tuple[int, int]], *, merge_events: bool = False) -> list[tuple[int, int]]:
    """NAB windows (inclusive row ranges) for a series of ``n`` rows with these labelled runs (see module doc)."""
    if not runs or n <= 0:
        return []
    runs = sorted(runs)
    if merge_events:
        gap = max(EVENT_GAP_SHARE * n, int(0.1 * n / len(runs)) / 2)
        events = [list(runs[0])]
        for a, b in runs[1:]:
            if a - events[-1][1] < gap:
                events[-1][1] = max(events[-1][1], b)
            else:
                events.append([a, b])
        runs = [(a, b) for a, b in events]
    half = int(0.1 * n / len(runs)) // 2
    merged: list[list[int]] = []
    for a, b in sorted((max(a - half, 0), min(a + half, n - 1)) for a, _ in runs):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def rewindow(src: str | Path, out: str | Path, *, merge_events: bool = False) -> dict:
    """Copy the NAB-layout dataset ``src`` to ``out`` with windows rebuilt per labelled run.

    Reads the point labels of ``src/labels/combined_labels.json`` (NAB's
    ``{"<group>/<name>.csv": [timestamp, ...]}``); writes ``out/data`` (a copy),
    ``out/labels/combined_labels.json`` (a copy) and a new
    ``out/labels/combined_windows.json`` whose edges are the data's own
    timestamps. Returns a summary: series, labelled points and runs, windows,
    and labels that name no row (skipped)."""
    src, out = Path(src), Path(out)
    labels_path = src / "labels" / "combined_labels.json"
    if not labels_path.exists():
        raise FileNotFoundError(f"{labels_path} not found: rewindow needs NAB point labels "
                                "({\"<group>/<name>.csv\": [timestamp, ...]})")
    if out.resolve() == src.resolve():
        raise ValueError(f"--out must differ from the source ({src}): the source's windows would be overwritten")
    points = read_label_map(labels_path, "[timestamp, ...]")
    series = load_nab(src)
    windows: dict[str, list[list[str]]] = {}
    summary = {"series": len(series), "labelled_points": 0, "labelled_runs": 0, "windows": 0,
               "labels_without_row": 0, "merge_events": merge_events}
    for s in series:
        stamps = points.get(s.key) or []
        rows = _label_rows(s, stamps, labels_path)
        summary["labelled_points"] += len(rows)
        summary["labels_without_row"] += len(stamps) - len(rows)
        runs = label_runs(rows)
        summary["labelled_runs"] += len(runs)
        wins = run_windows(len(s.values), runs, merge_events=merge_events)
        summary["windows"] += len(wins)
        windows[s.key] = [[s.timestamps[a], s.timestamps[b]] for a, b in wins]
    shutil.copytree(src / "data", out / "data", dirs_exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(labels_path, out / "labels" / "combined_labels.json")
    for extra in ("LICENSE", "README.md"):
        if (src / extra).is_file():
            shutil.copyfile(src / extra, out / extra)
    (out / "labels" / "combined_windows.json").write_text(json.dumps(windows, indent=1, sort_keys=True) + "\n")
    return summary


def _label_rows(s: NabSeries, stamps: list, where: Path) -> list[int]:
    """Rows of ``s`` whose time is one of the labelled timestamps (read in the data's own mode)."""
    if not stamps or not s.times:
        return []
    times, _ = _read_times([str(x) for x in stamps], where, f"labels of {s.key}", s.time_mode)
    first: dict[float, int] = {}
    for i, t in enumerate(s.times):
        first.setdefault(t, i)
    return sorted({first[t] for t in times if t in first})


def split_keys(keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """Tune and held-out halves: keys sorted, even positions tune, odd positions held out."""
    ordered = sorted(keys)
    return ordered[0::2], ordered[1::2]


def density_matched_profile(rows: int, windows: int, rows_per_window: int = NAB_ROWS_PER_WINDOW) -> dict[str, float]:
    """``standard`` with the false-positive weight scaled to one window per ``rows_per_window`` rows."""
    standard = PROFILES["standard"]
    scale = rows_per_window * windows / rows if windows else 1.0
    return dict(standard, fp=standard["fp"] * scale)


__all__ = ["EVENT_GAP_SHARE", "NAB_ROWS_PER_WINDOW", "density_matched_profile", "label_runs", "rewindow",
           "run_windows", "split_keys"]
