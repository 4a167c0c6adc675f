"""``otel-llm eval anomaly`` end to end on the small NAB fixture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otel_llm.cli._app import build_app

FIXTURE = Path(__file__).parent / "fixtures" / "nab"
KEY = "middle-tier-api-dependency-latency/outbound-01.csv"


@pytest.mark.parametrize("detector", ["threshold", "pyod"])
def test_eval_anomaly_end_to_end(tmp_path, detector):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        build_app(), ["eval", "anomaly", "--nab", str(FIXTURE), "--detector", detector, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["detector"] == detector and summary["series"] == 1 and summary["points"] == 720
    assert set(summary["nab"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    for v in summary["nab"].values():
        assert -1000 < v <= 100
    for k in ("precision", "recall", "f1"):
        assert 0.0 <= summary["pointwise"][k] <= 1.0
        assert 0.0 <= summary["event"][k] <= 1.0
    assert summary["seconds_per_10k_points"] > 0
    rows = list(csv.DictReader((out / KEY).open()))
    assert len(rows) == 720
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "alarm"]
    assert {r["alarm"] for r in rows} <= {"0", "1"}
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert all(r["alarm"] == "0" for r in rows[:30])  # warm-up: no alarms
    # the scorer sees exactly the alarms written
    from otel_llm.evaluation.nab import load_nab, score_series, summarize

    series = load_nab(FIXTURE)[0]
    rescored = summarize([score_series([int(r["alarm"]) for r in rows], series.windows, series.times)])
    assert rescored["nab"]["standard"] == pytest.approx(summary["nab"]["standard"])


def test_no_look_ahead_the_prefix_run_matches_the_full_run():
    from dataclasses import replace

    from otel_llm.evaluation.anomaly import run_threshold
    from otel_llm.evaluation.nab import load_nab

    s = load_nab(FIXTURE)[0]
    full_scores, full_alarms = run_threshold(s)
    cut = replace(s, timestamps=s.timestamps[:400], times=s.times[:400], values=s.values[:400])
    scores, alarms = run_threshold(cut)
    assert scores == full_scores[:400] and alarms == full_alarms[:400]


def test_bad_arguments_list_valid_choices(tmp_path):
    runner = CliRunner()
    r = runner.invoke(build_app(), ["eval", "anomaly", "--nab", str(FIXTURE), "--detector", "magic"])
    assert r.exit_code != 0 and "threshold, pyod" in r.output
    r = runner.invoke(build_app(), ["eval", "anomaly", "--nab", str(tmp_path)])
    assert r.exit_code == 2 and "data" in r.output
