"""Copy a NAB-layout dataset with jittered timestamps, for development.

    python scripts/with_jitter.py SRC_DIR OUT_DIR [AMPLITUDE] [SEED]
    otel-llm eval anomaly --nab OUT_DIR

Real timestamps are rarely exact: a busy scraper, an exporter that flushes when
it can, a sensor that reports on its own clock. Our synthetic sets are exact, so
they cannot show what a detector that finds "the same time yesterday" by position
does with jitter. This copies every series of SRC_DIR, moving each timestamp but
the first by a uniform amount within +-AMPLITUDE sampling intervals (default
0.3; the series' median interval; at most 0.45, so the order is kept). Values
and label windows are kept as they are (windows are timestamps, so a row near a
window's edge may move in or out). Date stamps are written as dates to the
second, numeric ones as numbers. The shifts depend only on (SEED, the series'
path), so a copy can be remade.
"""

from __future__ import annotations

import random
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from otel_llm.evaluation.nab import _parse_times


def _stamp(t: float, mode: str) -> str:
    if mode == "dates":
        return datetime.fromtimestamp(round(t), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return repr(round(t * 1000.0 if mode == "ms" else t, 3))


def copy_with_jitter(src: Path, out: Path, amplitude: float = 0.3, seed: int = 0) -> int:
    """Write the jittered copy; returns the number of series."""
    if not (src / "data").is_dir() or not (src / "labels").is_dir():
        raise ValueError(f"{src} is not a NAB-layout dataset (needs data/ and labels/)")
    if not 0.0 <= amplitude <= 0.45:
        raise ValueError(f"amplitude {amplitude} is outside [0, 0.45] sampling intervals")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src / "labels", out / "labels")
    files = sorted((src / "data").glob("*/*.csv"))
    for f in files:
        rel = f.relative_to(src)
        rng = random.Random(f"{seed}/{rel.as_posix()}")
        head, *rows = f.read_text().splitlines()
        stamps, values = zip(*(r.split(",", 1) for r in rows), strict=True) if rows else ((), ())
        times, mode = _parse_times(stamps)
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        dt = gaps[len(gaps) // 2] if gaps else 0.0
        moved = [t if i == 0 else t + rng.uniform(-amplitude, amplitude) * dt for i, t in enumerate(times)]
        text = [_stamp(t, mode) for t in moved]
        if any(b <= a for a, b in zip(moved, moved[1:], strict=False)) or len(set(text)) < len(text):
            raise ValueError(f"{rel}: jitter {amplitude} would reorder or merge its timestamps; use a smaller amplitude")
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("\n".join([head, *(f"{a},{v}" for a, v in zip(text, values, strict=True))]) + "\n")
    return len(files)


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        amplitude = float(argv[2]) if len(argv) > 2 else 0.3
        n = copy_with_jitter(Path(argv[0]), Path(argv[1]), amplitude, int(argv[3]) if len(argv) > 3 else 0)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote {argv[1]}: {n} series, timestamps moved by up to {amplitude:g} sampling intervals")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
