"""The NAB dataset layout and scorer, scoring a detector's own 0/1 alarms.

Layout (Numenta Anomaly Benchmark)::

    DIR/data/<group>/<name>.csv          timestamp,value
    DIR/labels/combined_windows.json     {"<group>/<name>.csv": [[start, end], ...]}

Scoring follows NAB's ``Sweeper`` (nab/sweeper.py) applied at the detector's
own decision (an alarm is a row whose ``alarm`` is 1; no threshold is swept):

* the first ``min(floor(0.15 n), 750)`` rows are probationary and ignored;
* inside a window of width ``W`` ending at row ``R``, an alarm at row ``i``
  scores ``tp * S(-(R - i + 1) / W) / S(-1)`` with the scaled sigmoid
  ``S(x) = 2 / (1 + exp(5x)) - 1`` (``-1`` when ``x >= 3``); only the best
  (earliest) alarm of a window counts; a window with no alarm costs ``-fn``;
* an alarm outside windows costs ``fp * S(|i - R_prev| / (W_prev - 1))`` (the
  previous window's right edge and width; ``-fp`` before any window). Where NAB
  would divide by zero (a one-row window) we divide by 1;
* per corpus: ``100 * (raw - null) / (perfect - null)`` with ``null`` the score of
  no alarms (``-fn`` per scorable window) and ``perfect = tp * windows``.

Profiles: ``standard`` (tp 1, fp 0.11, fn 1), ``reward_low_FP_rate`` (fp 0.22),
``reward_low_FN_rate`` (fn 2).

Point-wise precision / recall / F1 use no point adjustment: every row after
the probationary period is a positive when it lies in a window, and each row's
alarm is judged on its own. Event-level F1 counts a window as detected when it
holds at least one alarm, and every run of consecutive alarm rows lying wholly
outside the windows as one false event.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


def scaled_sigmoid(x: float) -> float:
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


_MAX_TP = scaled_sigmoid(-1.0)


def probation_length(n_rows: int, percent: float = 0.15) -> float:
    """NAB: ``min(floor(percent * n), percent * 5000)`` (750 rows at 15%)."""
    return min(math.floor(percent * n_rows), percent * 5000)


@dataclass
class NabSeries:
    key: str
    """``<group>/<name>.csv`` as in the labels file."""
    timestamps: list[str]
    times: list[float]
    """Unix seconds (naive timestamps read as UTC)."""
    values: list[float]
    windows: list[tuple[int, int]] = field(default_factory=list)
    """Inclusive row index ranges."""
    time_mode: str | None = None
    """How the timestamps were read: ``dates``, ``seconds`` or ``ms`` (labels of the series are read the same way)."""

    @property
    def group(self) -> str:
        return self.key.split("/", 1)[0] if "/" in self.key else ""

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def _parse_times(stamps: Sequence[str | float], mode: str | None = None) -> tuple[list[float], str]:
    """Unix seconds from dates (``2014-04-01 00:00:00``, ISO 8601; naive = UTC) or from numbers; and the mode.

    ``mode`` is ``"dates"``, ``"seconds"`` or ``"ms"``; ``None`` decides from the stamps: dates wherever
    pandas reads them as dates (as before, so ``20140401`` stays a date), else numbers, read as unix
    milliseconds when too large for seconds (>= 1e11) and otherwise as they are: sequence numbers
    (``1, 2, 3``, as some benchmarks ship) become seconds, which keeps their order and gaps and simply
    means no daily or weekly season is assumed. A series' windows are read in its data's mode.
    """
    import pandas as pd

    s = pd.Series([str(x).strip() for x in stamps], dtype=object)

    def dates() -> list[float]:
        return (pd.to_datetime(s, format="mixed", utc=True).astype("int64") / 1e9).tolist()

    if mode is None:
        try:
            return dates(), "dates"
        except (ValueError, TypeError, OverflowError):
            num = pd.to_numeric(s, errors="coerce")
            if not (len(s) and num.notna().all()):
                raise
            mode = "ms" if float(num.abs().max()) >= 1e11 else "seconds"
    if mode == "dates":
        return dates(), mode
    v = pd.to_numeric(s, errors="raise").astype(float)
    return (v / 1000.0 if mode == "ms" else v).tolist(), mode


def _read_times(stamps: Sequence[str | float], where: Path, what: str, mode: str | None = None) -> tuple[list[float], str]:
    try:
        return _parse_times(stamps, mode)
    except (ValueError, TypeError, OverflowError) as exc:
        expected = {"dates": "dates, as in the data", "seconds": "numbers, as in the data",
                    "ms": "numbers (milliseconds), as in the data"}.get(mode or "", "")
        raise ValueError(
            f"{where}: cannot read the {what} ({exc}); use dates such as 2014-04-01 00:00:00 (ISO 8601, naive = UTC) "
            "or numbers (unix seconds or milliseconds, or sequence numbers) throughout"
            + (f"; expected {expected}" if expected else "")
        ) from None


_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)


def _offset_s(stamp: str) -> float | None:
    """The UTC offset a date stamp carries, in seconds (``Z`` = 0); None for a naive one."""
    m = _OFFSET.search(stamp.strip())
    if m is None or len(stamp.strip()) < 11:  # a bare date (2014-04-01) has no offset, only its own dashes
        return None
    tok = m.group(0)
    if tok.upper() == "Z":
        return 0.0
    digits = tok[1:].replace(":", "")
    sign = -1.0 if tok[0] == "-" else 1.0
    return sign * (int(digits[:2]) * 3600 + (int(digits[2:4]) * 60 if len(digits) > 2 else 0))


def _local_windows(edges: list[float], raw: list[str], times: list[float], stamps: list[str]) -> list[float]:
    """Naive window stamps over data that carry a UTC offset are read in the data's own clock: each
    naive edge takes the offset of the data point nearest to it in local time (so a window written as
    ``2014-04-01 10:00`` over data stamped ``2014-04-01T10:00:00+02:00`` starts at that point, not two
    hours later). Edges with an offset of their own, and data without offsets, are left as read."""
    import bisect

    offsets = [_offset_s(x) for x in stamps]
    if not any(o is not None for o in offsets):
        return edges
    local = [t + (o or 0.0) for t, o in zip(times, offsets, strict=True)]
    order = sorted(range(len(local)), key=local.__getitem__)
    keys = [local[i] for i in order]
    out = []
    for e, r in zip(edges, raw, strict=True):
        if _offset_s(str(r)) is not None or not keys:
            out.append(e)
            continue
        k = bisect.bisect_left(keys, e)
        near = min((j for j in (k - 1, k) if 0 <= j < len(keys)), key=lambda j: abs(keys[j] - e))
        out.append(e - (offsets[order[near]] or 0.0))
    return out


def window_indices(times: Sequence[float], windows: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Map ``[start, end]`` times to inclusive row ranges (rows with start <= t <= end)."""
    import bisect

    out = []
    for start, end in windows:
        i = bisect.bisect_left(times, start)
        j = bisect.bisect_right(times, end) - 1
        if i <= j:
            out.append((i, j))
    return sorted(out)


def _column(fieldnames: Sequence[str] | None, name: str) -> str | None:
    """The header cell that names ``name``, ignoring case and surrounding spaces (``Timestamp``, `` value``)."""
    for cell in fieldnames or ():
        if cell is not None and cell.strip().lower() == name:
            return cell
    return None


def read_label_map(path: Path, shape: str) -> dict[str, list]:
    """A NAB labels file (``{"<group>/<name>.csv": <shape>}``), or ValueError saying what is wrong with it."""
    try:
        labels = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(labels, dict):
        raise ValueError(f"{path}: expected an object mapping \"<group>/<name>.csv\" to {shape}")
    return labels


def load_nab(root: str | Path, *, report: dict | None = None) -> list[NabSeries]:
    """Read every ``data/**/*.csv`` under ``root`` with its windows (series without a label entry get none).

    Files may start with a UTF-8 byte-order mark; header names are matched
    ignoring case and spaces. With ``report`` (a dict), how the labels matched
    the data is written into it: ``labels_file`` (whether
    ``labels/combined_windows.json`` exists), ``series_without_entry`` and
    ``entries_without_data`` (sorted keys), so a caller can say what was not
    scored the way the labels meant.
    """
    import csv

    root = Path(root)
    data = root / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"{root} is not a NAB-layout folder: missing {data} (expected data/<group>/<name>.csv)")
    labels_path = root / "labels" / "combined_windows.json"
    labels = read_label_map(labels_path, "[[start, end], ...]") if labels_path.exists() else {}
    out = []
    for path in sorted(data.rglob("*.csv")):
        key = path.relative_to(data).as_posix()
        stamps: list[str] = []
        values: list[float] = []
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            ts_col, value_col = _column(reader.fieldnames, "timestamp"), _column(reader.fieldnames, "value")
            if ts_col is None or value_col is None:
                raise ValueError(f"{path}: header must contain timestamp,value (got {reader.fieldnames})")
            for row in reader:
                stamp = row[ts_col]
                if stamp is None:
                    continue  # a short row (no timestamp cell) cannot be placed in time
                stamps.append(stamp.strip())
                try:
                    values.append(float(row[value_col]))
                except (TypeError, ValueError):
                    values.append(math.nan)
        times, mode = _read_times(stamps, path, "timestamp column") if stamps else ([], None)
        wins = labels.get(key, [])
        raw = [x for w in wins for x in w[:2]]
        edges, _ = _read_times(raw, labels_path, f"windows of {key}", mode) if wins else ([], None)
        if edges and mode == "dates":
            edges = _local_windows(edges, raw, times, stamps)
        wtimes = list(zip(edges[0::2], edges[1::2], strict=True))
        out.append(NabSeries(key, stamps, times, values, window_indices(times, wtimes), mode))
    if report is not None:
        keys = {s.key for s in out}
        report["labels_file"] = labels_path.exists()
        report["series_without_entry"] = sorted(keys - labels.keys())
        report["entries_without_data"] = sorted(labels.keys() - keys)
    return out


@dataclass
class SeriesResult:
    raw: dict[str, float]
    null: dict[str, float]
    perfect: dict[str, float]
    tp_points: int = 0
    fp_points: int = 0
    fn_points: int = 0
    windows: int = 0
    detected: int = 0
    false_events: int = 0
    delays_s: list[float] = field(default_factory=list)
    delays_rows: list[int] = field(default_factory=list)


def score_series(
    alarms: Sequence[int | bool],
    windows: Sequence[tuple[int, int]],
    times: Sequence[float] | None = None,
    profiles: dict[str, dict[str, float]] = PROFILES,
) -> SeriesResult:
    """Score one series' alarms against its windows for every profile (see module docstring)."""
    n = len(alarms)
    prob = probation_length(n)
    raw: dict[str, float] = {}
    null: dict[str, float] = {}
    perfect: dict[str, float] = {}
    in_window = [-1] * n
    for w, (a, b) in enumerate(windows):
        for i in range(max(a, 0), min(b, n - 1) + 1):
            in_window[i] = w
    scorable_windows = [w for w, (a, b) in enumerate(windows) if b >= prob and a < n]
    for name, p in profiles.items():
        best = {w: -p["fn"] for w in scorable_windows}
        fp_total = 0.0
        prev_right: int | None = None
        prev_width = 0
        for i in range(n):
            w = in_window[i]
            if w >= 0:
                a, b = windows[w]
                if alarms[i] and i >= prob:
                    s = scaled_sigmoid(-(b - i + 1) / float(b - a + 1)) * p["tp"] / _MAX_TP
                    if s > best[w]:
                        best[w] = s
                if i == b:
                    prev_right, prev_width = b, b - a + 1
            elif alarms[i] and i >= prob:
                pos = 3.0 if prev_right is None else abs(prev_right - i) / float(max(prev_width - 1, 1))
                fp_total += scaled_sigmoid(pos) * p["fp"]
        raw[name] = fp_total + sum(best.values())
        null[name] = -p["fn"] * len(scorable_windows)
        perfect[name] = p["tp"] * len(windows)
    res = SeriesResult(raw, null, perfect, windows=len(scorable_windows))
    start = int(math.ceil(prob)) if prob > 0 else 0
    for i in range(start, n):
        pos, al = in_window[i] >= 0, bool(alarms[i])
        res.tp_points += pos and al
        res.fp_points += al and not pos
        res.fn_points += pos and not al
    for w in scorable_windows:
        a, b = windows[w]
        first = next((i for i in range(max(a, start), b + 1) if alarms[i]), None)
        if first is not None:
            res.detected += 1
            res.delays_rows.append(first - a)
            if times is not None:
                res.delays_s.append(float(times[first] - times[a]))
    i = start
    while i < n:
        if alarms[i]:
            j = i
            touches = False
            while j < n and alarms[j]:
                touches = touches or in_window[j] >= 0
                j += 1
            res.false_events += not touches
            i = j
        else:
            i += 1
    return res


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def summarize(results: Sequence[SeriesResult], profiles: dict[str, dict[str, float]] = PROFILES) -> dict:
    """Corpus scores: normalised NAB per profile, point-wise and event-level metrics."""
    out: dict = {"nab": {}}
    for name in profiles:
        raw = sum(r.raw[name] for r in results)
        null = sum(r.null[name] for r in results)
        perfect = sum(r.perfect[name] for r in results)
        out["nab"][name] = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    tp = sum(r.tp_points for r in results)
    fp = sum(r.fp_points for r in results)
    fn = sum(r.fn_points for r in results)
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    out["pointwise"] = {"precision": p, "recall": rc, "f1": _f1(p, rc), "tp": tp, "fp": fp, "fn": fn}
    wins = sum(r.windows for r in results)
    det = sum(r.detected for r in results)
    fe = sum(r.false_events for r in results)
    ep = det / (det + fe) if det + fe else 0.0
    er = det / wins if wins else 0.0
    out["event"] = {"precision": ep, "recall": er, "f1": _f1(ep, er), "windows": wins, "detected": det,
                    "false_events": fe}
    delays = [d for r in results for d in r.delays_s]
    rows = [d for r in results for d in r.delays_rows]
    out["mean_detection_delay_s"] = sum(delays) / len(delays) if delays else None
    out["mean_detection_delay_rows"] = sum(rows) / len(rows) if rows else None
    return out


__all__ = ["PROFILES", "NabSeries", "SeriesResult", "load_nab", "probation_length", "read_label_map",
           "scaled_sigmoid", "score_series", "summarize", "window_indices"]
