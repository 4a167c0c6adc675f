"""The NAB scorer on tiny hand-computed cases."""

from __future__ import annotations

import math

import pytest

from otel_llm.evaluation.nab import PROFILES, probation_length, scaled_sigmoid, score_series, summarize


def _norm(alarms, windows, profile="standard"):
    return summarize([score_series(alarms, windows)])["nab"][profile]


def test_scaled_sigmoid_matches_nab_reference_points():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_is_15_percent_capped_at_750_rows():
    assert probation_length(100) == 15
    assert probation_length(10_000) == 750


N = 100  # probation = 15 rows
WINDOWS = [(40, 49), (70, 79)]


def test_perfect_detector_scores_100_and_no_alarms_scores_0():
    alarms = [0] * N
    for a, _ in WINDOWS:
        alarms[a] = 1
    for profile in PROFILES:
        assert _norm(alarms, WINDOWS, profile) == pytest.approx(100.0)
        assert _norm([0] * N, WINDOWS, profile) == pytest.approx(0.0)


def test_one_false_positive_before_any_window_costs_the_fp_weight():
    alarms = [0] * N
    alarms[20] = 1  # after probation, before the first window: full FP cost
    res = score_series(alarms, WINDOWS)
    assert res.raw["standard"] == pytest.approx(-2 - 0.11)
    assert res.raw["reward_low_FP_rate"] == pytest.approx(-2 - 0.22)
    # normalised: 100 * (raw - null) / (perfect - null) = 100 * -0.11 / 4
    assert _norm(alarms, WINDOWS) == pytest.approx(100 * -0.11 / 4)


def test_false_positive_after_a_window_is_scaled_by_distance():
    alarms = [0] * N
    alarms[54] = 1  # 5 rows past the right edge (49) of a 10-row window
    res = score_series(alarms, WINDOWS)
    expected = 0.11 * scaled_sigmoid(5 / 9)
    assert res.raw["standard"] == pytest.approx(-2 + expected)
    assert -0.11 < expected < 0


def test_only_the_earliest_alarm_in_a_window_counts_and_late_scores_less():
    late = [0] * N
    late[49] = 1
    both = list(late)
    both[45] = 1
    s_late = score_series(late, WINDOWS).raw["standard"]
    s_both = score_series(both, WINDOWS).raw["standard"]
    # alarm at the right edge: position -(R - i + 1) / W = -1/10
    assert s_late == pytest.approx(-1 + scaled_sigmoid(-0.1) / scaled_sigmoid(-1.0))
    assert s_both == pytest.approx(-1 + scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0))


def test_probationary_alarms_are_ignored_and_fn_weight_applies():
    alarms = [0] * N
    alarms[3] = 1
    res = score_series(alarms, WINDOWS)
    assert res.raw["standard"] == pytest.approx(-2)
    assert res.raw["reward_low_FN_rate"] == pytest.approx(-4)
    assert res.null["reward_low_FN_rate"] == pytest.approx(-4)


def test_pointwise_and_event_metrics_have_no_point_adjustment():
    alarms = [0] * N
    alarms[41] = 1  # one row of a 10-row window
    alarms[90] = alarms[91] = 1  # one false event of two rows
    out = summarize([score_series(alarms, WINDOWS, times=[float(i) * 60 for i in range(N)])])
    pw = out["pointwise"]
    assert (pw["tp"], pw["fp"], pw["fn"]) == (1, 2, 19)
    assert pw["precision"] == pytest.approx(1 / 3) and pw["recall"] == pytest.approx(1 / 20)
    ev = out["event"]
    assert (ev["detected"], ev["windows"], ev["false_events"]) == (1, 2, 1)
    assert ev["f1"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)
    assert out["mean_detection_delay_s"] == pytest.approx(60.0)
    assert out["mean_detection_delay_rows"] == 1


def test_one_row_windows_do_not_divide_by_zero():
    alarms = [0] * N
    alarms[60] = 1
    res = score_series(alarms, [(50, 50)])
    assert math.isfinite(res.raw["standard"])
