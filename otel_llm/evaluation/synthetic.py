"""Labelled synthetic operations series in the NAB layout (``otel-llm eval synth``).

Our own development data for the single-series detectors, built to look like
the field's benchmarks in *structure* rather than in content: long series
(default 4,032 five-minute points, two weeks), one to three anomalies per
series, NAB windows (``int(0.1 n / k)`` rows centred on each anomaly's onset,
merged), and a share of series with no anomaly at all, so false alarms on long
quiet stretches cost what they cost there. Nothing here is read from a public
benchmark.

Normal behaviour (``BASES``): a noisy level, heavy-tailed (Student-t) noise,
Poisson counts, a daily cycle (smooth or business-hours), an AR(1) process that
wanders, and a bursty base with normal short bursts. Anomalies (``KINDS``):
spike, level shift, variance burst, flatline (stuck sensor), drift (slow ramp),
dropout (to zero) and, on the daily bases, a day that loses its pattern.
Magnitudes are drawn per anomaly, in units of the base's own noise, from a range
that makes some easy and some hard.

Every series is a pure function of ``(seed, index)``: the same call writes the
same bytes, so a split by seed is a clean tune / held-out split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

BASES = ("level", "heavy_tailed", "counts", "daily", "business_hours", "wander", "bursty")
ALL_BASES = (*BASES, "weekly")
"""``weekly`` (a daily shape whose weekend days run lower and flatter) is opt-in (``bases=``): it needs
more than the default two weeks of points before a weekly season can be learned."""
KINDS = ("spike", "level_shift", "variance", "flatline", "drift", "dropout", "pattern")
_DAILY = ("daily", "business_hours", "weekly")
_START = datetime(2026, 1, 5, tzinfo=timezone.utc)


@dataclass
class SyntheticSeries:
    key: str
    """``synthetic-<base>/<name>.csv``"""
    values: np.ndarray
    step_s: int
    onsets: list[int] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def timestamps(self) -> list[str]:
        return [(_START + timedelta(seconds=i * self.step_s)).strftime("%Y-%m-%d %H:%M:%S") for i in range(self.values.size)]

    def windows(self) -> list[tuple[int, int]]:
        """NAB's rule: ``int(0.1 n / k)`` rows centred on each onset, clipped and merged when they overlap."""
        n, k = self.values.size, len(self.onsets)
        if not k:
            return []
        h = int(0.1 * n / k) // 2
        out: list[list[int]] = []
        for i in sorted(self.onsets):
            a, b = max(i - h, 0), min(i + h, n - 1)
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
        return [(a, b) for a, b in out]


def _base(kind: str, n: int, step_s: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A normal series and its noise scale (the unit anomaly magnitudes are drawn in)."""
    level = float(rng.uniform(20, 500))
    sd = level * float(rng.uniform(0.03, 0.12))
    if kind == "level":
        return level + rng.normal(0, sd, n), sd
    if kind == "heavy_tailed":
        return level + sd * rng.standard_t(3, n), sd * 1.5
    if kind == "counts":
        lam = float(rng.uniform(3, 60))
        return rng.poisson(lam, n).astype(float), max(lam**0.5, 1.0)
    phase = (np.arange(n) * step_s % 86400) / 86400.0
    if kind == "daily":
        amp = level * float(rng.uniform(0.2, 0.6))
        return level + amp * np.sin(2 * np.pi * (phase - rng.uniform())) + rng.normal(0, sd, n), sd
    if kind == "business_hours":
        hi = level * float(rng.uniform(1.5, 3.0))
        on = (phase > 0.33) & (phase < 0.75)
        return np.where(on, hi, level) + rng.normal(0, sd, n), sd
    if kind == "wander":
        e = rng.normal(0, sd, n)
        x = np.empty(n)
        x[0] = 0.0
        for i in range(1, n):
            x[i] = 0.98 * x[i - 1] + e[i]
        return level + x + rng.normal(0, sd, n), sd * 5.0  # AR(1) sd = sd / sqrt(1 - 0.98^2) ~ 5 sd
    if kind == "weekly":
        day = (np.arange(n) * step_s // 86400 + _START.weekday()) % 7
        weekend = day >= 5
        amp = level * float(rng.uniform(0.3, 0.6)) * np.where(weekend, float(rng.uniform(0.2, 0.6)), 1.0)
        lvl = level * np.where(weekend, float(rng.uniform(0.4, 0.8)), 1.0)
        return lvl + amp * np.sin(2 * np.pi * (phase - 0.3)) + rng.normal(0, sd, n), sd
    if kind == "bursty":
        x = level + rng.normal(0, sd, n)
        for s in rng.choice(n, size=max(n // 150, 1), replace=False):
            width = int(rng.integers(1, 6))
            x[s : s + width] += level * float(rng.uniform(0.2, 0.8))
        return x, sd * 3.0
    raise ValueError(f"unknown base {kind!r}; choose one of: {', '.join(ALL_BASES)}")


def _inject(x: np.ndarray, kind: str, at: int, unit: float, step_s: int, rng: np.random.Generator) -> None:
    n = x.size
    mag = float(rng.uniform(4.0, 10.0)) * unit * (1 if rng.uniform() < 0.75 else -1)
    if kind == "spike":
        w = int(rng.integers(1, 4))
        x[at : at + w] += abs(mag) * (1 if rng.uniform() < 0.85 else -1)
    elif kind == "level_shift":
        x[at:] += mag * 0.7
    elif kind == "variance":
        w = int(rng.integers(40, 150))
        seg = x[at : at + w]
        x[at : at + w] = np.median(seg) + (seg - np.median(seg)) * float(rng.uniform(3.0, 6.0))
    elif kind == "flatline":
        w = int(rng.integers(80, 300))
        x[at : at + w] = x[at]
    elif kind == "drift":
        w = int(rng.integers(150, 400))
        ramp = np.linspace(0.0, mag, min(w, n - at))
        x[at : at + ramp.size] += ramp
        x[at + ramp.size :] += mag
    elif kind == "dropout":
        w = int(rng.integers(5, 40))
        x[at : at + w] = 0.0
    elif kind == "pattern":  # one day (from the onset) loses its daily shape: it sits at the day's mean
        w = min(int(86400 / step_s), n - at)
        seg = x[at : at + w]
        x[at : at + w] = float(np.mean(seg)) + rng.normal(0, unit, w)
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; choose one of: {', '.join(KINDS)}")


def make_series(
    seed: int, index: int, *, length: int = 4032, step_s: int = 300, clean_share: float = 0.2,
    bases: tuple[str, ...] = BASES,
) -> SyntheticSeries:
    """Series number ``index`` of the set drawn with ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, index])
    base = bases[index % len(bases)]
    x, unit = _base(base, length, step_s, rng)
    s = SyntheticSeries(key=f"synthetic-{base}/s{seed}-{index:03d}.csv", values=x, step_s=step_s)
    if rng.uniform() < clean_share:
        return s
    kinds = [k for k in KINDS if k != "pattern" or base in _DAILY]
    k = int(rng.integers(1, 4))
    prob = min(int(0.15 * length), 750)
    gap = max(length // 8, 100)
    slots = np.arange(prob + 50, length - 100, gap)
    for at in sorted(rng.choice(slots, size=min(k, slots.size), replace=False)):
        at = int(at + rng.integers(0, gap // 2))
        kind = str(rng.choice(kinds))
        if base == "counts":
            at = min(at, length - 1)
        _inject(x, kind, at, unit, step_s, rng)
        s.onsets.append(at)
        s.kinds.append(kind)
    if base == "counts":
        np.maximum(x, 0.0, out=x)
    return s


def write_synthetic(
    out: str | Path, *, n_series: int = 70, seed: int = 0, length: int = 4032, step_s: int = 300,
    bases: tuple[str, ...] = BASES,
) -> dict:
    """Write ``n_series`` series in the NAB layout under ``out``; return a summary."""
    for b in bases:
        if b not in ALL_BASES:
            raise ValueError(f"unknown base {b!r}; choose from: {', '.join(ALL_BASES)}")
    root = Path(out)
    windows: dict[str, list[list[str]]] = {}
    kinds: dict[str, list[str]] = {}
    for i in range(n_series):
        s = make_series(seed, i, length=length, step_s=step_s, bases=bases)
        path = root / "data" / s.key
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = s.timestamps()
        with path.open("w") as fh:
            fh.write("timestamp,value\n")
            fh.writelines(f"{t},{v:.6g}\n" for t, v in zip(stamps, s.values, strict=True))
        windows[s.key] = [[stamps[a] + ".000000", stamps[b] + ".000000"] for a, b in s.windows()]
        kinds[s.key] = s.kinds
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows, indent=1, sort_keys=True))
    (root / "labels" / "anomaly_kinds.json").write_text(json.dumps(kinds, indent=1, sort_keys=True))
    return {
        "out": str(root), "series": n_series, "windows": sum(len(w) for w in windows.values()),
        "clean_series": sum(1 for w in windows.values() if not w), "seed": seed,
    }


__all__ = ["ALL_BASES", "BASES", "KINDS", "SyntheticSeries", "make_series", "write_synthetic"]
