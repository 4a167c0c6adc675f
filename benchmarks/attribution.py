"""Benchmark: does the request attribution name the feature that was perturbed?

    .venv/bin/python benchmarks/attribution.py [--seeds 5] [--train 500]

Synthetic request rows (the span features plus GPU columns, shaped like the
reference server's: lognormal latencies, uniform token counts, duration built
from them), a detector fitted on ``--train`` rows per seed, then fresh rows
with one feature perturbed (multiplied by 2, 3 or 5, divided by 3 or 10, or
moved up or down by 4 or 6 standard deviations, not below 0). Only rows the
detector flags count: an unflagged row has nothing to explain. For each detector and perturbation it prints the share
of flagged rows whose first-named feature is the perturbed one, measured side
by side for ``explain`` as shipped (an exponential tail past the training
range) and for the capped empirical evidence it replaced (every value past the
range gets the same evidence, so ties go to the first column listed).
``tpot_with_gaps`` multiplies TPOT and both token-gap columns by 3 (a real
decode slowdown moves all three) and rebuilds the duration.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from otel_llm.processors._features import FEATURES
from otel_llm.processors._outlier import VALID_DETECTORS, OutlierDetector

PERTURBED = ("duration", "ttft", "tpot", "gap_max", "input_tokens", "output_tokens", "queue_time",
             "gpu_sm_active", "gpu_mem_used", "gpu_power", "gpu_temp")
MODES = ("x2", "x3", "x5", "/3", "/10", "+4sd", "+6sd", "-4sd", "-6sd", "tpot_with_gaps")


def rows(n: int, rng: np.random.Generator) -> np.ndarray:
    X = np.full((n, len(FEATURES)), np.nan)
    X[:, 1] = rng.lognormal(np.log(0.05), 0.3, n)  # ttft
    X[:, 2] = rng.lognormal(np.log(0.02), 0.2, n)  # tpot
    X[:, 3] = X[:, 2] * rng.lognormal(0.5, 0.2, n)  # gap p99
    X[:, 4] = X[:, 3] * rng.lognormal(0.2, 0.1, n)  # gap max
    X[:, 5] = rng.integers(10, 500, n)
    X[:, 6] = rng.integers(16, 256, n)
    X[:, 7] = rng.lognormal(np.log(0.005), 0.5, n)  # queue
    X[:, 0] = X[:, 1] + X[:, 2] * X[:, 6] + X[:, 7]
    X[:, 8] = np.clip(rng.normal(0.6, 0.08, n), 0, 1)
    X[:, 9] = np.clip(rng.normal(85, 6, n), 0, 100)
    X[:, 10] = rng.normal(60000, 800, n)
    X[:, 11] = rng.normal(450, 40, n)
    X[:, 12] = rng.normal(62, 3, n)
    X[:, 13] = (rng.random(n) < 0.01).astype(float)
    return X


def capped_first(det: OutlierDetector, x: np.ndarray) -> str:
    """The first feature under the previous rule: empirical tail evidence, capped past the range."""
    z = det._transform(np.atleast_2d(x))[0]
    S = det.sorted_columns_
    n = S.shape[0]
    ev = []
    for j in range(z.size):
        le = np.searchsorted(S[:, j], z[j], side="right")
        ge = n - np.searchsorted(S[:, j], z[j], side="left")
        p = min(le, ge) / (n + 1.0)
        ev.append(max(0.0, -np.log(max(2.0 * p, 1.0 / (n + 1.0)))))
    return det.features_in_[int(np.argmax(ev))]


def perturb(row: np.ndarray, feature: str, mode: str, sd: np.ndarray) -> np.ndarray:
    r = row.copy()
    if mode == "tpot_with_gaps":
        r[2:5] *= 3
        r[0] = r[1] + r[2] * r[6] + r[7]
        return r
    j = FEATURES.index(feature)
    if mode.startswith("x"):
        r[j] *= float(mode[1:])
    elif mode.startswith("/"):
        r[j] /= float(mode[1:])
    else:  # +k sd or -k sd, kept non-negative like the features themselves
        r[j] = max(0.0, r[j] + float(mode[:-2]) * sd[j])
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--train", type=int, default=500)
    args = ap.parse_args()
    out: dict = {}
    for name in VALID_DETECTORS:
        per_mode = {}
        for mode in MODES:
            flagged = shipped = capped = 0
            misnamed: dict[str, int] = {}
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                train = rows(args.train, rng)
                sd = np.nanstd(train, axis=0)
                det = OutlierDetector(name, 0.04, feature_names=FEATURES).fit(train)
                features = ("tpot",) if mode == "tpot_with_gaps" else PERTURBED
                for feature in features:
                    x = perturb(rows(1, rng)[0], feature, mode, sd)
                    if det.score([x])[0] < det.threshold_:
                        continue
                    flagged += 1
                    first = next(iter(det.explain(x)), None)
                    shipped += first == feature
                    capped += capped_first(det, x) == feature
                    if first != feature:
                        misnamed[f"{feature}->{first}"] = misnamed.get(f"{feature}->{first}", 0) + 1
            per_mode[mode] = {
                "flagged_rows": flagged,
                "named_first": round(shipped / flagged, 3) if flagged else None,
                "named_first_capped": round(capped / flagged, 3) if flagged else None,
                "misnamed": misnamed,
            }
        out[name] = per_mode
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
