"""The streaming evaluation harness behind ``otel-llm eval anomaly``.

Every series is streamed point by point through the same online detector code
that runs in a server (``ThresholdProcessor`` with ``refit="inline"`` so runs are
deterministic, or the PyOD point detector): no look-ahead, no tuning on the
labels. Each row gets the detector's own score in [0, 1] and its own 0/1
alarm; the NAB scorer (:mod:`otel_llm.evaluation.nab`) then scores the alarms.

Alarm modes (what a 1 in the ``alarm`` column means):

* ``onset`` (default) -- the row where the detector opened an alert (what an
  alerting system pages on; repeated rows of one ongoing alert are not new
  alarms);
* ``active`` -- every row the detector judges abnormal while its alert is open.
"""

from __future__ import annotations

import collections
import csv
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from otel_llm.evaluation.nab import NabSeries, load_nab, score_series, summarize

VALID_DETECTORS = ("threshold", "pyod")
VALID_ALARM_MODES = ("onset", "active")


def default_threshold_config():
    """The shipped defaults (chosen by reasoning and a held-out split; see docs/processors.md)."""
    from otel_llm.processors._alarm import AlarmPolicy
    from otel_llm.processors._thresholds import ThresholdConfig

    # Rolling-quantile band with a symmetric robust sigma (up to 1.5x wider on heavy-tailed series), the
    # daily or weekly season where it explains the series (history long enough for three days of
    # per-minute points), linear scale; an alert opens on 2 of 3 points past 3.5 band-sigmas or on one
    # point past 5 and closes after 3 points under 1.5; for 2% of the points seen so far (at most 1,000) after
    # an alert opens, another opens only if it is worse; once 1,000 points are judged, a lone point or a short
    # run opens one only if at most two earlier points reached its size, or 1 in 800 of the series' points
    # (rarity: 1 in 500 at 1,000 points, tightening to 1 in 800 from 1,600 on); see docs/processors.md for
    # how it was chosen.
    return ThresholdConfig(
        refit="inline", model="robust", log_scale="off", history=8192, tail_scale=1.5,
        policy=AlarmPolicy(threshold=3.5, k=2, n=3, instant=5.0, recover=1.5, rearm=1000, rearm_share=0.02,
                           rarity=500, rarity_max=800),
    )


def run_threshold(
    series: NabSeries, config=None, alarm_mode: str = "onset", stats: collections.Counter | None = None
) -> tuple[list[float], list[int]]:
    """Stream one series through a fresh ThresholdProcessor; return per-row (score, alarm).

    ``stats``, when given, gains the rows the processor dropped (by reason), ``gap_slots``, the
    missing points it held on the time grid, and ``shared_slots``, the points that fell in the
    previous point's slot."""
    from otel_llm.processors._alarm import OPENED
    from otel_llm.processors._thresholds import ThresholdProcessor

    cfg = replace(config or default_threshold_config(), refit="inline")
    proc = ThresholdProcessor(cfg, emit_metrics=False)
    handle = proc.series(series.key or "series", {})
    st = handle.state
    rule = st.rule
    scores: list[float] = []
    alarms: list[int] = []
    onset = alarm_mode == "onset"
    for t, v in zip(series.times, series.values, strict=True):
        t0 = st.last_t
        handle.observe(t, v)
        if st.last_t == t0 or st.band is None:  # dropped or still warming up
            scores.append(0.0)
            alarms.append(0)
            continue
        scores.append(st.score)
        if onset:
            alarms.append(1 if st.last_event == OPENED else 0)
        else:
            alarms.append(1 if rule.active and rule.hit else 0)
    proc.shutdown()
    if stats is not None:
        stats.update(proc.dropped)
        stats["gap_slots"] += st.filled
        stats["series_with_gaps"] += st.filled > 0
        stats["shared_slots"] += st.shared
    return scores, alarms


def run_pyod(
    series: NabSeries, config=None, alarm_mode: str = "onset", stats: collections.Counter | None = None
) -> tuple[list[float], list[int]]:
    """Stream one series through the PyOD point detector (windowed features of the series itself).

    ``stats`` is accepted for the same call as :func:`run_threshold`; nothing is added to it."""
    from otel_llm.processors._pointpyod import PointAnomalyDetector

    det = PointAnomalyDetector(**(config or {}))
    scores: list[float] = []
    alarms: list[int] = []
    for t, v in zip(series.times, series.values, strict=True):
        s, opened, abnormal = det.observe(t, v)
        scores.append(s)
        alarms.append(int(opened if alarm_mode == "onset" else abnormal))
    return scores, alarms


def write_results(out: Path, series: NabSeries, scores: list[float], alarms: list[int]) -> None:
    path = out / series.key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")  # Unix line ends, as NAB writes its own results
        w.writerow(["timestamp", "value", "anomaly_score", "alarm"])
        for ts, v, s, a in zip(series.timestamps, series.values, scores, alarms, strict=True):
            w.writerow([ts, "" if math.isnan(v) else repr(v), f"{s:.6f}", a])


def threshold_config_with(settings: list[str] | tuple[str, ...] = (), config=None):
    """The shipped default (or ``config``) with ``FIELD=VALUE`` settings applied and validated.

    ``FIELD`` is a :class:`~otel_llm.processors._thresholds.ThresholdConfig` field or
    ``policy.FIELD`` (an :class:`~otel_llm.processors._alarm.AlarmPolicy` field); ``VALUE`` is read
    as JSON (``3.5``, ``true``, ``[80, 95]``) and otherwise kept as text (``robust``). Raises
    ValueError naming the valid fields when a name is unknown or a value is invalid."""
    import dataclasses
    import json

    cfg = config or default_threshold_config()
    policy = cfg.policy
    cfg_fields = sorted(f.name for f in dataclasses.fields(cfg) if f.name != "policy")
    pol_fields = sorted(f.name for f in dataclasses.fields(policy))
    for item in settings:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"{item!r}: expected FIELD=VALUE (e.g. policy.threshold=4.0 or tail_scale=1.5)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text.strip()
        if name.startswith("policy."):
            field = name[len("policy."):]
            if field not in pol_fields:
                raise ValueError(f"unknown alarm policy field {field!r}; choose one of: "
                                 + ", ".join(f"policy.{f}" for f in pol_fields))
            policy = replace(policy, **{field: _typed(name, getattr(policy, field), value)})
        else:
            if name not in cfg_fields:
                raise ValueError(f"unknown threshold setting {name!r}; choose one of: {', '.join(cfg_fields)}, "
                                 "or policy.FIELD for the alarm rule")
            cfg = replace(cfg, **{name: _typed(name, getattr(cfg, name), value)})
    return replace(cfg, policy=policy.validate()).validate()


def _typed(name: str, current, value):
    """``value`` in the type of the setting's current value, or ValueError saying what it expects."""
    if isinstance(current, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(current, int | float):
        ok, what = isinstance(value, int | float) and not isinstance(value, bool), "a number"
        if ok and isinstance(current, int) and not isinstance(current, bool):
            ok, what = float(value).is_integer(), "a whole number"
            value = int(value) if ok else value
    elif isinstance(current, tuple):
        ok, what = isinstance(value, list), "a JSON list such as [80, 95]"
        value = tuple(value) if ok else value
    elif isinstance(current, str):
        ok, what = isinstance(value, str), "text"
    else:  # None: optional numbers (season_length, alarm_level, horizon)
        ok, what = value is None or (isinstance(value, int | float) and not isinstance(value, bool)), "a number or null"
    if not ok:
        raise ValueError(f"{name} expects {what}, got {value!r}")
    return value


MAX_DROPPING_LISTED = 20
"""Series named in the result's ``input.series_dropping`` (those that lost the largest share of rows)."""


def _run_one(job: tuple) -> tuple[list[float], list[int], float, collections.Counter]:
    """One series in a worker process (``evaluate(jobs=N)``): scores, alarms, seconds, input stats."""
    series, detector, config, alarm_mode = job
    run = run_threshold if detector == "threshold" else run_pyod
    stats: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    scores, alarms = run(series, config, alarm_mode, stats)
    return scores, alarms, time.perf_counter() - t0, stats


def evaluate(
    root: str | Path,
    detector: str = "threshold",
    out: str | Path | None = None,
    *,
    config=None,
    alarm_mode: str = "onset",
    select: Callable[[NabSeries], bool] | None = None,
    progress: Callable[[NabSeries, int], None] | None = None,
    series: list[NabSeries] | None = None,
    labels_report: dict | None = None,
    split: bool = False,
    jobs: int = 1,
) -> dict:
    """Run ``detector`` over every series under ``root`` and return the JSON-able result.

    ``series`` (already loaded) skips reading ``root``; pass the ``report`` that
    :func:`load_nab` filled as ``labels_report`` so the result still says how
    the labels matched the data (``labels`` in the result).

    The result's ``nab`` holds the three NAB profiles; ``density_matched`` is
    the ``standard`` score with false alarms weighted as on NAB's sparser
    labels, and that weight (see :mod:`otel_llm.evaluation.views`). With ``split``, ``split.tune`` and
    ``split.held_out`` score the two halves of the series (sorted by key, even
    and odd positions) the same way. ``jobs`` > 1 runs series in that many
    worker processes (same results; ``seconds_per_10k_points`` then sums the
    workers' time per series, which shared cores inflate).
    """
    from otel_llm.evaluation.nab import PROFILES
    from otel_llm.evaluation.views import density_matched_profile, split_keys

    if detector not in VALID_DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; choose one of: {', '.join(VALID_DETECTORS)}")
    if alarm_mode not in VALID_ALARM_MODES:
        raise ValueError(f"unknown alarm mode {alarm_mode!r}; choose one of: {', '.join(VALID_ALARM_MODES)}")
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if series is None:
        labels_report = {}
        series = load_nab(root, report=labels_report)
    chosen = [s for s in series if select is None or select(s)]
    rows = sum(len(s.values) for s in chosen)
    profiles = dict(PROFILES, density_matched=density_matched_profile(rows, sum(len(s.windows) for s in chosen)))
    out_dir = Path(out) if out is not None else None
    results = {}
    elapsed = 0.0
    stats: collections.Counter = collections.Counter()
    grid = ("gap_slots", "series_with_gaps", "shared_slots")
    dropping: list[dict] = []  # series that lost rows, for the report (a newest-first file loses all but one)

    def runs():
        jobs_in = ((s, detector, config, alarm_mode) for s in chosen)
        if jobs == 1 or len(chosen) < 2:
            yield from map(_run_one, jobs_in)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter per worker (no forked locks or threads from the host process)
        with ProcessPoolExecutor(min(jobs, len(chosen)), mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from pool.map(_run_one, jobs_in)

    for s, (scores, alarms, seconds, st) in zip(chosen, runs(), strict=True):
        elapsed += seconds
        stats.update(st)
        lost = {k: v for k, v in sorted(st.items()) if k not in grid and v}
        if lost:
            dropping.append({"series": s.key, "rows": len(s.values), "dropped": lost})
        results[s.key] = score_series(alarms, s.windows, s.times, profiles)
        if out_dir is not None:
            write_results(out_dir, s, scores, alarms)
        if progress is not None:
            progress(s, len(s.values))
    weight = profiles["density_matched"]["fp"]

    def scored(keys: list[str]) -> dict:
        # NAB's three profiles under "nab"; the density-matched reading beside them, not among them
        out = summarize([results[k] for k in keys], profiles)
        out["density_matched"] = {"nab": out["nab"].pop("density_matched"), "fp_weight": weight}
        return out

    summary = scored(list(results))
    if split:
        tune, held = split_keys(list(results))
        summary["split"] = {name: {"series": len(keys), **scored(keys)} for name, keys in (("tune", tune), ("held_out", held))}
    summary.update(
        detector=detector,
        alarm_mode=alarm_mode,
        series=len(chosen),
        points=rows,
        seconds_per_10k_points=(elapsed / rows * 10_000) if rows else None,
    )
    if labels_report:
        # Series scored with no windows because the labels do not name them, and label entries with no data.
        summary["labels"] = {
            "labels_file": labels_report["labels_file"],
            "series_without_entry": len(labels_report["series_without_entry"]),
            "entries_without_data": labels_report["entries_without_data"][:20],
        }
    if detector == "threshold":
        # What the input held besides points: rows dropped (NaN/inf, not later than the row before),
        # missing points (gaps in the timeline) the detector kept on its time grid, and points that
        # fell in the previous point's slot. ``series_dropping``: the series that lost the largest share of
        # their rows (at most MAX_DROPPING_LISTED), so a file in the wrong order is named, not just counted.
        dropping.sort(key=lambda d: (-sum(d["dropped"].values()) / d["rows"], d["series"]))
        summary["input"] = {
            "dropped": {k: v for k, v in sorted(stats.items()) if k not in grid},
            **{k: stats[k] for k in grid},
            "series_with_drops": len(dropping),
            "series_dropping": dropping[:MAX_DROPPING_LISTED],
        }
    return summary


__all__ = ["VALID_ALARM_MODES", "VALID_DETECTORS", "default_threshold_config", "evaluate", "run_pyod",
           "run_threshold", "threshold_config_with", "write_results"]
