"""Write 24 NAB-artificial-like series (our own data) in the NAB layout, for development.

    python scripts/nab_like_artificial.py OUT_DIR
    otel-llm eval anomaly --nab OUT_DIR

NAB's own labelling is sparse: about one window per few thousand rows, each
10 % of the series long. Our other development sets are denser (the dev set has
a window every ~770 rows), so a false alarm costs them less than it costs on
NAB-like data. These series (4,032 five-minute points, two weeks) have one
anomaly each, labelled the NAB way (one window of 10 % of the rows, centred on
the anomaly's start), in six shapes, four seeds each:

* ``jumpsup`` / ``jumpsdown``: a daily hump 40 higher / 30 lower for one day;
* ``flatmiddle``: the series stuck at one value for half a day;
* ``nojump``: one day without its hump;
* ``spike_density``: routine spikes (1 % of points) become dense (25 %) for
  150 points;
* ``lb_spikes``: a near-zero series with rare spikes (0.5 %) that become
  frequent (30 %) for 100 points.

Routine spikes outside the window are normal behaviour, not anomalies: a
detector that pages on each of them pays for it here, as it would on NAB.
The shapes are written from NAB's published description of its artificial
group; no NAB data was read.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

N = 4032
DAY = 288  # five-minute points per day


def build() -> tuple[dict[str, np.ndarray], dict[str, int]]:
    series: dict[str, np.ndarray] = {}
    starts: dict[str, int] = {}
    tod = np.arange(N) % DAY
    hump = ((tod > 100) & (tod < 200)).astype(float)
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)

        def base(rng=rng):
            return 20 + 60 * hump + rng.normal(0, 3, N)

        day = int(rng.integers(8, 12))
        a0, a1 = day * DAY, (day + 1) * DAY
        shapes: dict[str, tuple[np.ndarray, int]] = {}
        x = base()
        x[a0:a1] += 40 * hump[a0:a1]
        shapes["jumpsup"] = (x, a0 + 100)
        x = base()
        x[a0:a1] -= 30 * hump[a0:a1]
        shapes["jumpsdown"] = (x, a0 + 100)
        x = base()
        x[a0 + 60:a0 + 200] = 50.0
        shapes["flatmiddle"] = (x, a0 + 60)
        x = base()
        x[a0:a1] = 20 + rng.normal(0, 3, DAY)
        shapes["nojump"] = (x, a0 + 100)
        x = 20 + rng.normal(0, 2, N)
        spikes = rng.random(N) < 0.01
        spikes[a0:a0 + 150] = rng.random(150) < 0.25
        shapes["spike_density"] = (x + spikes * rng.uniform(20, 40, N), a0)
        x = np.abs(rng.normal(0, 0.5, N))
        spikes = rng.random(N) < 0.005
        spikes[a0:a0 + 100] = rng.random(100) < 0.3
        shapes["lb_spikes"] = (x + spikes * rng.uniform(5, 15, N), a0)
        for name, (values, at) in shapes.items():
            key = f"artificialWithAnomaly/{name}_{seed}.csv"
            series[key] = values
            starts[key] = at
    return series, starts


def write(out: Path) -> int:
    t0 = dt.datetime(2014, 4, 1)
    stamps = [(t0 + dt.timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(N)]
    series, starts = build()
    labels = {}
    half = int(0.1 * N) // 2
    for key, values in series.items():
        path = out / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            f.write("timestamp,value\n")
            f.writelines(f"{s},{v:.6g}\n" for s, v in zip(stamps, values, strict=True))
        at = starts[key]
        labels[key] = [[stamps[max(at - half, 0)] + ".000000", stamps[min(at + half, N - 1)] + ".000000"]]
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "combined_windows.json").write_text(json.dumps(labels, indent=1) + "\n")
    return len(series)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"wrote {write(Path(sys.argv[1]))} series to {sys.argv[1]}")
