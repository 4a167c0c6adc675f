"""Copy a NAB-layout dataset with gaps in its timelines, for development.

    python scripts/with_gaps.py SRC_DIR OUT_DIR [SEED]
    otel-llm eval anomaly --nab OUT_DIR

Real series have holes: a scraper that was down, an exporter restart, hours
missing from an export. Our synthetic sets have none, so they cannot show what
a detector does with one. This copies every series of SRC_DIR, dropping runs of
1 to 36 rows (at each row after the tenth, a run starts with probability
0.002: about 4 % of the rows). The label windows are kept as they are (they
are timestamps), so a window keeps whatever rows are left in it. The rows
dropped depend only on (SEED, the series' path), so a copy can be remade.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

GAP_START = 0.002
LONGEST = 36


def copy_with_gaps(src: Path, out: Path, seed: int = 0) -> tuple[int, int]:
    """Write the gapped copy; returns (rows read, rows written)."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src / "labels", out / "labels")
    read = written = 0
    for f in sorted((src / "data").glob("*/*.csv")):
        rel = f.relative_to(src)
        rng = random.Random(f"{seed}/{rel.as_posix()}")
        head, *rows = f.read_text().splitlines()
        kept, i = [], 0
        while i < len(rows):
            if i > 10 and rng.random() < GAP_START:
                i += rng.randint(1, LONGEST)
                continue
            kept.append(rows[i])
            i += 1
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("\n".join([head, *kept]) + "\n")
        read, written = read + len(rows), written + len(kept)
    return read, written


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src, out = Path(argv[0]), Path(argv[1])
    if not (src / "data").is_dir() or not (src / "labels").is_dir():
        print(f"{src} is not a NAB-layout dataset (needs data/ and labels/)", file=sys.stderr)
        return 2
    read, written = copy_with_gaps(src, out, int(argv[2]) if len(argv) == 3 else 0)
    print(f"wrote {out}: {written} of {read} rows ({100.0 * (read - written) / max(read, 1):.1f} % dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
