"""``otel-llm eval synth``: deterministic labelled synthetic series in the NAB layout, read back by the harness."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from otel_llm.cli._app import build_app
from otel_llm.evaluation.anomaly import evaluate
from otel_llm.evaluation.nab import load_nab
from otel_llm.evaluation.synthetic import ALL_BASES, BASES, KINDS, make_series, write_synthetic


def test_series_are_deterministic_and_labelled_the_nab_way():
    a, b = make_series(3, 5), make_series(3, 5)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, make_series(4, 5).values)  # another seed, other data
    labelled = [make_series(0, i) for i in range(40)]
    with_anomalies = [s for s in labelled if s.onsets]
    assert 20 < len(with_anomalies) < 40  # some series are clean on purpose
    for s in with_anomalies:
        n, k = s.values.size, len(s.onsets)
        assert all(min(int(0.15 * n), 750) < at < n for at in s.onsets)  # after NAB's probation
        assert set(s.kinds) <= set(KINDS)
        if "pattern" in s.kinds:
            assert s.key.split("/")[0] in ("synthetic-daily", "synthetic-business_hours", "synthetic-weekly")
        for (lo, hi) in s.windows():
            assert hi - lo <= int(0.1 * n / k) or k > 1  # merged windows may be wider
    kinds = {k for s in labelled for k in s.kinds}
    assert len(kinds) >= 5


def test_written_dataset_is_read_back_and_scored(tmp_path):
    summary = write_synthetic(tmp_path, n_series=len(BASES), seed=1, length=1200)
    assert summary["series"] == len(BASES)
    series = load_nab(tmp_path)
    assert len(series) == len(BASES)
    labels = json.loads((tmp_path / "labels" / "combined_windows.json").read_text())
    assert sum(len(w) for w in labels.values()) == summary["windows"] == sum(len(s.windows) for s in series)
    first = make_series(1, 0, length=1200)
    loaded = next(s for s in series if s.key == first.key)
    np.testing.assert_allclose(loaded.values, first.values, rtol=1e-5)
    assert loaded.windows == first.windows()
    result = evaluate(tmp_path, "threshold", series=series)
    assert result["series"] == len(BASES) and result["points"] == len(BASES) * 1200
    assert result["event"]["windows"] == summary["windows"]


def test_cli_writes_the_layout(tmp_path):
    res = CliRunner().invoke(build_app(), ["eval", "synth", "--out", str(tmp_path), "--series", "3", "--length", "600"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["series"] == 3
    assert len(list((tmp_path / "data").rglob("*.csv"))) == 3


def test_weekly_base_is_opt_in_and_runs_lower_at_weekends(tmp_path):
    assert "weekly" in ALL_BASES and "weekly" not in BASES  # the default sets stay as they were
    s = make_series(7, 0, length=6 * 7 * 24, step_s=3600, clean_share=1.0, bases=("weekly",))
    assert s.key.startswith("synthetic-weekly/")
    day = (np.arange(s.values.size) // 24) % 7  # the series starts on a Monday
    assert s.values[day >= 5].mean() < 0.9 * s.values[day < 5].mean()
    res = CliRunner().invoke(build_app(), ["eval", "synth", "--out", str(tmp_path), "--series", "2", "--base", "weekly", "--base", "level"])
    assert res.exit_code == 0, res.output
    assert {p.parent.name for p in (tmp_path / "data").rglob("*.csv")} == {"synthetic-weekly", "synthetic-level"}
    bad = CliRunner().invoke(build_app(), ["eval", "synth", "--out", str(tmp_path / "x"), "--base", "hourly"])
    assert bad.exit_code != 0 and "choose from" in bad.output
