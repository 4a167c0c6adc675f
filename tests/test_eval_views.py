"""Other readings of a labelled dataset: windows per labelled run, tune / held-out halves, the
density-matched profile, threshold settings from the command line, and the views script."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otel_llm.cli._app import build_app
from otel_llm.evaluation.anomaly import default_threshold_config, evaluate, threshold_config_with
from otel_llm.evaluation.nab import load_nab
from otel_llm.evaluation.views import density_matched_profile, label_runs, rewindow, run_windows, split_keys

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "nab"


def test_label_runs_are_maximal_blocks_of_consecutive_rows():
    assert label_runs([7, 3, 4, 5, 9, 10, 4]) == [(3, 5), (7, 7), (9, 10)]
    assert label_runs([]) == []


def test_run_windows_follow_nabs_length_rule_per_run_not_per_point():
    # 1,000 rows, two runs: one window of int(0.1 * 1000 / 2) = 50 rows (half-width 25) on each run's first row,
    # however many points the run holds (NAB's per-point rule would give 0.1 * 1000 / 41 = 2-row windows).
    runs = [(300, 339), (700, 700)]
    assert run_windows(1000, runs) == [(275, 325), (675, 725)]
    # 100 rows, two runs: 5-row windows (half-width 2), clipped to the series
    assert run_windows(100, [(2, 2), (98, 99)]) == [(0, 4), (96, 99)]
    # windows that overlap or touch are merged into one; a gap of one row keeps them apart
    assert run_windows(100, [(10, 10), (15, 15)]) == [(8, 17)]
    assert run_windows(100, [(10, 10), (16, 16)]) == [(8, 12), (14, 18)]
    assert run_windows(100, []) == []


def test_merge_events_joins_runs_closer_than_3_percent_of_the_series():
    # 10,000 rows, ten runs: 100-row windows. Two runs 200 rows apart (< 300) are one event with --merge-events.
    runs = [(1000, 1000), (1200, 1205), *((k, k) for k in (3000, 4000, 5000, 6000, 7000, 8000, 9000, 9500))]
    apart = run_windows(10_000, runs)
    assert len(apart) == 10 and apart[:2] == [(950, 1050), (1150, 1250)]
    merged = run_windows(10_000, runs, merge_events=True)
    half = int(0.1 * 10_000 / 9) // 2  # nine events share the 10 %
    assert len(merged) == 9 and merged[:2] == [(1000 - half, 1000 + half), (3000 - half, 3000 + half)]


def _point_labelled(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "data" / "g").mkdir(parents=True)
    (src / "labels").mkdir()
    n = 2000
    stamps = [f"2024-01-{1 + i // 1440:02d} {i // 60 % 24:02d}:{i % 60:02d}:00" for i in range(n)]
    values = [10.0 + (i % 5) + (60.0 if 1500 <= i < 1510 else 0.0) for i in range(n)]
    (src / "data" / "g" / "a.csv").write_text(
        "timestamp,value\n" + "".join(f"{s},{v}\n" for s, v in zip(stamps, values, strict=True)))
    (src / "data" / "g" / "clean.csv").write_text(
        "timestamp,value\n" + "".join(f"{s},{10.0 + i % 5}\n" for i, s in enumerate(stamps)))
    labels = {"g/a.csv": [stamps[i] + ".000000" for i in range(1500, 1510)] + ["2030-01-01 00:00:00"],
              "g/clean.csv": []}
    (src / "labels" / "combined_labels.json").write_text(json.dumps(labels))
    # NAB's per-point windows: ten labelled points, each int(0.1 * 2000 / 10) = 20 rows wide, merged into one
    (src / "labels" / "combined_windows.json").write_text(json.dumps({"g/a.csv": [[stamps[1490], stamps[1519]]]}))
    return src


def test_rewindow_writes_one_window_per_labelled_run_in_the_datas_own_stamps(tmp_path):
    src = _point_labelled(tmp_path)
    out = tmp_path / "out"
    summary = rewindow(src, out)
    assert summary == {"series": 2, "labelled_points": 10, "labelled_runs": 1, "windows": 1,
                       "labels_without_row": 1, "merge_events": False}
    windows = json.loads((out / "labels" / "combined_windows.json").read_text())
    assert windows["g/clean.csv"] == []
    series = {s.key: s for s in load_nab(out)}
    # one run of 10 points in 2,000 rows: a 200-row window centred on its first row
    assert series["g/a.csv"].windows == [(1400, 1600)]
    assert windows["g/a.csv"][0][0] == series["g/a.csv"].timestamps[1400]
    assert (out / "labels" / "combined_labels.json").read_bytes() == (src / "labels" / "combined_labels.json").read_bytes()
    assert (out / "data" / "g" / "a.csv").read_bytes() == (src / "data" / "g" / "a.csv").read_bytes()
    # the source is untouched
    assert load_nab(src)[0].windows == [(1490, 1519)]


def test_rewindow_refuses_a_missing_label_file_and_writing_over_its_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="combined_labels.json"):
        rewindow(FIXTURE, tmp_path / "out")
    src = _point_labelled(tmp_path)
    with pytest.raises(ValueError, match="must differ"):
        rewindow(src, src)
    (src / "labels" / "combined_labels.json").write_text('{"g/a.csv": ["2024-01-01 00:00:00"')
    with pytest.raises(ValueError, match="combined_labels.json: not valid JSON"):
        rewindow(src, tmp_path / "out")
    (src / "labels" / "combined_labels.json").write_text('["g/a.csv"]')
    with pytest.raises(ValueError, match=r"expected an object mapping .* to \[timestamp, ...\]"):
        rewindow(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_eval_rewindow_command(tmp_path):
    src = _point_labelled(tmp_path)
    runner = CliRunner()
    r = runner.invoke(build_app(), ["eval", "rewindow", "--nab", str(src), "--out", str(tmp_path / "o"), "--merge-events"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["windows"] == 1 and json.loads(r.stdout)["merge_events"] is True
    r = runner.invoke(build_app(), ["eval", "rewindow", "--nab", str(FIXTURE), "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "combined_labels.json" in r.output


def test_split_keys_are_even_and_odd_positions_of_the_sorted_keys():
    assert split_keys(["c", "a", "d", "b", "e"]) == (["a", "c", "e"], ["b", "d"])


def test_density_matched_weight_scales_false_alarms_to_one_window_per_3000_rows():
    assert density_matched_profile(30_000, 10)["fp"] == pytest.approx(0.11)
    assert density_matched_profile(7_700, 10)["fp"] == pytest.approx(0.11 * 3000 / 770)
    assert density_matched_profile(1000, 0)["fp"] == pytest.approx(0.11)


def test_evaluate_split_scores_each_half_and_the_density_matched_reading(tmp_path):
    src = _point_labelled(tmp_path)
    r = evaluate(src, split=True)
    assert set(r["nab"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert r["density_matched"]["fp_weight"] == pytest.approx(0.11 * 3000 / 4000)
    tune, held = r["split"]["tune"], r["split"]["held_out"]
    assert (tune["series"], held["series"]) == (1, 1)
    # g/a.csv sorts first (tune) and holds the only window; g/clean.csv has none
    assert (tune["event"]["windows"], held["event"]["windows"]) == (1, 0)
    assert tune["event"]["detected"] == r["event"]["detected"] == 1
    assert tune["event"]["false_events"] + held["event"]["false_events"] == r["event"]["false_events"]
    assert math.isclose(tune["nab"]["standard"], r["nab"]["standard"]) == (held["event"]["false_events"] == 0)


def test_worker_processes_give_the_same_result(tmp_path):
    src = _point_labelled(tmp_path)
    one, two = evaluate(src, split=True), evaluate(src, split=True, jobs=2)
    for r in (one, two):
        r.pop("seconds_per_10k_points")
    assert one == two
    with pytest.raises(ValueError, match="jobs"):
        evaluate(src, jobs=0)


def test_threshold_settings_apply_over_the_default_and_bad_ones_name_the_valid_choices():
    cfg = threshold_config_with(["policy.threshold=4.0", "tail_scale=2", "daily_season=false", "levels=[90, 99]"])
    default = default_threshold_config()
    assert (cfg.policy.threshold, cfg.tail_scale, cfg.daily_season, cfg.levels) == (4.0, 2, False, (90, 99))
    assert cfg.policy.k == default.policy.k and cfg.model == default.model == "robust"
    assert threshold_config_with(["model=mstl", "season_length=24"]).model == "mstl"
    with pytest.raises(ValueError, match="policy.rarity_max"):
        threshold_config_with(["policy.nope=1"])
    with pytest.raises(ValueError, match="tail_scale"):
        threshold_config_with(["nope=1"])
    with pytest.raises(ValueError, match="expects a number"):
        threshold_config_with(["policy.threshold=high"])
    with pytest.raises(ValueError, match="whole number"):
        threshold_config_with(["policy.k=1.5"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        threshold_config_with(["policy.threshold"])
    with pytest.raises(ValueError, match="recover"):  # the policy's own validation still runs
        threshold_config_with(["policy.recover=9"])


def test_eval_anomaly_set_and_split_on_the_command_line(tmp_path):
    src = _point_labelled(tmp_path)
    runner = CliRunner()
    args = ["eval", "anomaly", "--nab", str(src), "--split"]
    base = json.loads(runner.invoke(build_app(), args).stdout)
    # a rule that can never fire finds nothing, so it scores the null detector's 0 on every half
    r = runner.invoke(build_app(), [*args, "--set", "policy.threshold=1e9", "--set", "policy.instant=0",
                                        "--set", "flatline=false"])
    assert r.exit_code == 0, r.output
    off = json.loads(r.stdout)
    assert off["settings"] == ["policy.threshold=1e9", "policy.instant=0", "flatline=false"]
    assert off["event"]["detected"] == 0 and off["nab"]["standard"] == 0.0
    assert off["split"]["tune"]["nab"]["standard"] == 0.0
    assert base["event"]["detected"] == 1 and "settings" not in base
    r = runner.invoke(build_app(), [*args, "--set", "policy.k=9"])
    assert r.exit_code != 0 and "1 <= k <= n" in r.output
    r = runner.invoke(build_app(), [*args, "--detector", "pyod", "--set", "policy.k=1"])
    assert r.exit_code != 0 and "threshold only" in r.output


def test_the_views_script_rebuilds_a_view_and_scores_it(tmp_path):
    out = tmp_path / "views.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "eval_views.py"), "--views", "nab-like-artificial", "--jobs", "1",
         "--work", str(tmp_path / "w"), "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "nab-like-artificial" in proc.stdout and "shipped default" in proc.stdout
    r = json.loads(out.read_text())["views"]["nab-like-artificial"]
    assert r["series"] == 24 and r["event"]["windows"] == 24
    assert r["split"]["tune"]["series"] == r["split"]["held_out"]["series"] == 12
    assert f"{r['nab']['standard']:.1f}" in proc.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "eval_views.py"), "--views", "dev"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "--dev" in bad.stderr
