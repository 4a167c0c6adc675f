"""Dynamic thresholds: forecast contract, alarm rule, warm-up, log scale, fallback, bad input, gauges."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from otel_llm.processors import _forecast
from otel_llm.processors._alarm import CLOSED, NONE, OPENED, RUN_ESCAPE, AlarmPolicy, AlarmRule
from otel_llm.processors._forecast import VALID_MODELS, BandForecaster, check_levels, forecast
from otel_llm.processors._model import Severity
from otel_llm.processors._thresholds import (
    CADENCE_CHANGE,
    ThresholdConfig,
    ThresholdProcessor,
    is_heavy_tailed,
)

from otel_llm import _selftelemetry, semconv


@pytest.fixture(autouse=True)
def _reset():
    _selftelemetry._reset_for_tests()
    yield


def _series(n=200, seed=0, season=24):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + 2 * np.sin(2 * np.pi * t / season) + rng.normal(0, 0.5, n)


# ------------------------------------------------------------------ contract
# conformal intervals apply to the statsforecast models; the rolling-quantile band is already empirical
_PATHS = [(m, False) for m in VALID_MODELS] + [(m, True) for m in VALID_MODELS if m != "robust"]


@pytest.mark.parametrize(("model", "conformal"), _PATHS)
@pytest.mark.parametrize("log_scale", [False, True])
def test_all_forecast_paths_agree(model, conformal, log_scale):
    y = _series()
    kw = {"season_length": 24} if model == "mstl" else {}
    stateless = forecast(y, 12, [80, 95], model=model, log_scale=log_scale, conformal=conformal, **kw)
    bf = BandForecaster(model, level=[80, 95], log_scale=log_scale, conformal=conformal, fallback=False, **kw).fit(
        y, h=12
    )
    stateful = bf.predict(12)
    updated = bf.update(y, 12)  # statsforecast's forward path on the same history
    assert set(stateless) == {"mean", "lo-80", "hi-80", "lo-95", "hi-95"}
    for res in (stateful, updated):
        assert set(res) == set(stateless)
        for k in stateless:
            assert res[k].shape == (12,)
            np.testing.assert_allclose(res[k], stateless[k], rtol=1e-5, atol=1e-6)
    assert np.all(stateless["lo-95"] <= stateless["lo-80"] + 1e-9)
    assert np.all(stateless["lo-80"] <= stateless["mean"] + 1e-9)
    assert np.all(stateless["mean"] <= stateless["hi-80"] + 1e-9)
    assert np.all(stateless["hi-80"] <= stateless["hi-95"] + 1e-9)


def test_levels_and_models_are_checked_at_the_front_door():
    assert check_levels([95, 80]) == (80.0, 95.0)
    with pytest.raises(ValueError, match=r"\(0, 100\)"):
        check_levels([120])
    with pytest.raises(ValueError, match="auto_ets, mstl, robust"):
        forecast([1.0, 2.0, 3.0], 2, model="prophet")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "arima"}, "auto_ets, mstl, robust"),
        ({"levels": (80, 150)}, r"\(0, 100\)"),
        ({"alarm_level": 99}, "must be one of the levels"),
        ({"refit": "sometimes"}, "background, inline"),
        ({"log_scale": "maybe"}, "auto, on, off"),
        ({"model": "mstl"}, "season_length"),
        ({"policy": AlarmPolicy(direction="sideways")}, "both, up, down"),
        ({"policy": AlarmPolicy(k=3, n=2)}, "k <= n"),
        ({"policy": AlarmPolicy(threshold=3, recover=4)}, "recover"),
        ({"tail_scale": 0.5}, "tail_scale must be >= 1"),
        ({"policy": AlarmPolicy(threshold=4, instant=3)}, "instant must be 0"),
    ],
)
def test_config_errors_name_the_valid_choices(change, message):
    with pytest.raises(ValueError, match=message):
        ThresholdProcessor(ThresholdConfig(**{"refit": "inline", **change}), emit_metrics=False)


# ---------------------------------------------------------------- alarm rule
def test_persistence_k_of_n():
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1, k=2, n=3).validate())
    assert [rule.step(z) for z in (5, 0, 0, 0)] == [NONE] * 4  # one spike is not enough
    assert rule.step(5) == NONE
    assert rule.step(0) == NONE
    assert rule.step(5) == OPENED  # 2 of the last 3


def test_a_lone_point_opens_at_once_only_past_instant():
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1, k=2, n=3, instant=5).validate())
    assert [rule.step(z) for z in (4.9, 0, 0, -4.9, 0, 0)] == [NONE] * 6  # lone points under instant
    assert rule.step(-5.0) == OPENED  # one point past instant (either side with direction both)
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1, k=2, n=3, instant=5).validate())
    assert [rule.step(z) for z in (3.2, 0, 3.4)] == [NONE, NONE, OPENED]  # small but persistent
    with pytest.raises(ValueError, match="instant must be 0 .off. or >= threshold"):
        AlarmPolicy(threshold=4, instant=3).validate()


def test_hysteresis_and_cooldown():
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1.5, recover_n=2, cooldown=3).validate())
    assert rule.step(4) == OPENED
    # between recover and threshold: stays open (no flapping)
    assert [rule.step(z) for z in (2.0, 2.5, 2.0)] == [NONE, NONE, NONE]
    assert rule.active
    assert rule.step(1.0) == NONE  # one calm point is not enough
    assert rule.step(1.0) == CLOSED
    # cooldown: 3 points cannot open a new alarm
    assert [rule.step(10) for _ in range(3)] == [NONE] * 3
    assert rule.step(10) == OPENED


@pytest.mark.parametrize("rearm", [0, 10])
def test_rearm_holds_back_an_alert_no_worse_than_the_last_one(rearm):
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1, recover_n=1, instant=5, rearm=rearm).validate())
    assert rule.step(6) == OPENED
    assert rule.step(0) == CLOSED
    events = [rule.step(z) for z in (0, 6, 0, 0)]  # the same spike again, 3 points later
    if not rearm:
        assert events == [NONE, OPENED, CLOSED, NONE]
        return
    assert events == [NONE] * 4  # held back: no worse than the 6 that opened the last alert
    assert rule.step(7) == OPENED  # worse: a new alert at once, inside the period
    assert [rule.step(z) for z in [0] * 9] == [CLOSED] + [NONE] * 8
    assert rule.step(6) == NONE  # the 10th point after the 7: still inside the period
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1, recover_n=1, instant=5, rearm=rearm).validate())
    assert [rule.step(z) for z in (6, 0)] == [OPENED, CLOSED]
    assert [rule.step(0) for _ in range(9)] == [NONE] * 9
    assert rule.step(6) == OPENED  # the period is over


@pytest.mark.parametrize("rarity", [0, 50])
def test_rarity_stops_a_routine_lone_spike_from_paging(rarity):
    """Once 2R points are judged, a lone point pages only if at most 1 in R points reached its size."""
    policy = AlarmPolicy(threshold=3, k=2, n=3, recover=1, recover_n=1, instant=5, rarity=rarity)
    rule = AlarmRule(policy.validate())
    opened = [i for i in range(1, 1011) if rule.step(8.0 if i % 25 == 0 else 0.0) == OPENED]
    if not rarity:
        assert len(opened) == 40  # every routine spike pages
    else:
        # at point 100 (2R judged) three 8s came before it: more than 100 / 50 = 2, so it is routine
        assert opened == [25, 50, 75]
    assert rule.step(8.2) == (OPENED if not rarity else NONE)  # in the same 5 % bin as the routine 8s
    assert rule.step(0) == (CLOSED if not rarity else NONE)
    assert rule.step(20.0) == OPENED  # larger than anything routine: pages at once
    assert rule.step(0) == CLOSED
    assert [rule.step(z) for z in (0, 4, 4)] == [NONE, NONE, OPENED]  # a run of 2 of 3: a size never seen in a run
    with pytest.raises(ValueError, match="rarity must be >= 0"):
        AlarmPolicy(rarity=-1).validate()


def test_rarity_max_tightens_the_rate_as_the_series_grows():
    """A spike every 60 points is rarer than 1 in 50 (it pages every time under rarity=50 alone) but not rarer
    than 1 in 100: with rarity_max=100 it stops paging once three came before it (two are always allowed)."""

    def run(**kw):
        rule = AlarmRule(AlarmPolicy(threshold=3, k=2, n=3, recover=1, recover_n=1, instant=5, rarity=50,
                                     **kw).validate())
        return [i for i in range(1, 1201) if rule.step(8.0 if i % 60 == 0 else 0.0) == OPENED], rule

    fixed, _ = run()
    assert len(fixed) == 20
    growing, rule = run(rarity_max=100)
    assert growing == [60, 120, 180]  # 60: before 2R points; 120 and 180: one and two earlier spikes
    assert rule.step(20.0) == OPENED  # larger than anything routine: still pages at once
    assert run(rarity_max=50)[0] == fixed  # rarity_max = rarity: the fixed rate
    with pytest.raises(ValueError, match="rarity_max must be 0"):
        AlarmPolicy(rarity=50, rarity_max=20).validate()


def test_rarity_stops_a_routine_burst_from_paging_but_not_a_larger_one_or_a_shift_that_lasts():
    rule = AlarmRule(AlarmPolicy(threshold=3, k=2, n=3, recover=1, recover_n=1, rarity=50).validate())
    # a 2-point burst every 25 points: a run of 2 of 3 hits at 6 sigmas
    opened = [i for i in range(1, 1011) if rule.step(6.0 if i % 25 in (0, 1) else 0.0) == OPENED]
    assert opened == [26, 51, 76]  # from point 100 (2R judged) on, bursts of that size are routine
    assert [rule.step(z) for z in (12, 12, 0)] == [NONE, OPENED, CLOSED]  # a larger burst pages at once
    assert [rule.step(0) for _ in range(2)] == [NONE, NONE]
    shift = [rule.step(6.0) for _ in range(RUN_ESCAPE + 1)]  # routine size, but it lasts
    assert shift == [NONE] * RUN_ESCAPE + [OPENED]
    off = AlarmRule(AlarmPolicy(threshold=3, k=2, n=3, recover=1, recover_n=1).validate())
    assert len([i for i in range(1, 1011) if off.step(6.0 if i % 25 in (0, 1) else 0.0) == OPENED]) == 40


def test_rearm_share_scales_the_period_with_the_points_judged():
    rule = AlarmRule(AlarmPolicy(threshold=3, recover=1, recover_n=1, instant=5, rearm=50,
                                 rearm_share=0.1).validate())
    for _ in range(39):
        assert rule.step(0) == NONE
    assert rule.step(6) == OPENED  # 40th point: a period of int(0.1 * 40) = 4
    assert [rule.step(z) for z in (0, 0, 6)] == [CLOSED, NONE, NONE]  # inside it: held back
    assert [rule.step(z) for z in (0, 6)] == [NONE, OPENED]  # the 5th point after it: over
    for _ in range(1000):
        rule.step(0)
    assert rule.step(6) == OPENED
    assert [rule.step(z) for z in [0] * 49 + [6]][-1] == NONE  # capped at rearm=50, not 0.1 * 1000
    assert rule.step(6) == OPENED
    with pytest.raises(ValueError, match="rearm must be >= 0"):
        AlarmPolicy(rearm=-1).validate()
    with pytest.raises(ValueError, match="rearm_share must be in"):
        AlarmPolicy(rearm_share=2).validate()


def test_direction_up_ignores_drops():
    rule = AlarmRule(AlarmPolicy(threshold=3, direction="up").validate())
    assert rule.step(-10) == NONE
    assert rule.step(10) == OPENED


# ------------------------------------------------------------ the processor
def _proc(**kw):
    kw.setdefault("refit", "inline")
    kw.setdefault("min_history", 30)
    return ThresholdProcessor(ThresholdConfig(**kw), emit_metrics=False)


def _opened(proc, y, step_s, metric="m"):
    """Indices of the points of ``y`` (``step_s`` apart) at which an alert opened (not escalated: an update
    of an open alert keeps its start)."""
    return [i for i, v in enumerate(y) for d in proc.observe(metric, {}, step_s * i, float(v))
            if d.end is None and d.start == step_s * i]


def test_online_default_needs_two_of_three_points():
    assert (ThresholdConfig().policy.k, ThresholdConfig().policy.n) == (2, 3)
    proc = _proc(model="robust")
    y = _series(60, seed=1)
    dets = [d for i, v in enumerate(y[:50]) for d in proc.observe("m", {}, float(i), float(v))]
    assert dets == []
    assert proc.observe("m", {}, 50.0, 100.0) == []  # one spike: no page
    assert proc.observe("m", {}, 51.0, 10.0) == []
    assert len(proc.observe("m", {}, 52.0, 100.0)) == 1  # second of the last three: page


def test_warm_up_has_no_alarms_then_a_spike_alarms():
    proc = _proc(model="robust", policy=AlarmPolicy())
    y = _series(60, seed=1)
    dets = []
    for i, v in enumerate(y[:29]):
        dets += proc.observe("queue_depth", {"gen_ai.request.model": "tiny"}, float(i), 1000.0 if i == 20 else v)
    assert dets == []  # a huge spike during warm-up does not alarm
    st = proc.states()[0]
    assert st.band is None
    for i, v in enumerate(y[29:50], start=29):
        dets += proc.observe("queue_depth", {"gen_ai.request.model": "tiny"}, float(i), v)
    assert st.band is not None
    assert dets == []
    dets = proc.observe("queue_depth", {"gen_ai.request.model": "tiny"}, 50.0, 100.0)
    assert len(dets) == 1
    d = dets[0]
    assert d.kind == "threshold" and d.active and d.level == 95.0
    assert d.series == 'queue_depth{gen_ai.request.model="tiny"}'
    assert d.band[0] < 10 < d.band[1] < 100
    assert 0.5 <= d.score < 1.0
    assert "above" in d.explanation
    # recovery closes it (hysteresis: recover_n calm points)
    closed = []
    for i in range(51, 60):
        closed += proc.observe("queue_depth", {"gen_ai.request.model": "tiny"}, float(i), 10.0)
    assert len(closed) == 1 and closed[0].end is not None and closed[0].fingerprint == d.fingerprint


def test_an_open_warning_that_grows_past_the_critical_level_is_escalated_once():
    proc = _proc(model="robust", policy=AlarmPolicy(threshold=4.5, recover=2.0))
    seen = proc.stream.subscribe()
    y = _series(50, seed=1)
    for i, v in enumerate(y):
        assert proc.observe("queue_depth", {}, float(i), float(v)) == []
    st = proc.states()[0]
    assert st.band.c is None  # a linear scale: z = (value - centre) / sigma
    level, sigma = float(st.band.tmean[0]), float(st.band.sup[0])  # a flat band: the same at every step
    warn = proc.observe("queue_depth", {}, 50.0, level + 6 * sigma)
    assert len(warn) == 1 and warn[0].end is None and warn[0].severity is Severity.WARNING
    assert st.last_event == OPENED
    events = []
    for i, k in enumerate((7, 12, 30, 60), start=51):  # it keeps growing: one escalation, at 12 sigmas
        events.append(proc.observe("queue_depth", {}, float(i), level + k * sigma))
        assert st.last_event == NONE  # not a new onset: the harness scores one alarm
    assert [len(e) for e in events] == [0, 1, 0, 0]
    crit = events[1][0]
    assert crit.severity is Severity.CRITICAL and crit.end is None
    assert (crit.start, crit.fingerprint) == (warn[0].start, warn[0].fingerprint)
    assert "escalated to critical" in crit.explanation and crit.score > warn[0].score
    closed = []
    for i in range(55, 62):
        closed += proc.observe("queue_depth", {}, float(i), level)
    assert len(closed) == 1 and closed[0].end is not None and closed[0].severity is Severity.CRITICAL
    assert [(d.severity, d.end is None) for d in seen.drain()] == [
        (Severity.WARNING, True), (Severity.CRITICAL, True), (Severity.CRITICAL, False)]


def test_heavy_tailed_series_are_modelled_on_a_log_scale():
    assert is_heavy_tailed(semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN)
    assert is_heavy_tailed(semconv.OTEL_LLM_TTFT)
    assert not is_heavy_tailed(semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION)
    proc = _proc(model="robust")
    rng = np.random.default_rng(3)
    for i, v in enumerate(rng.lognormal(np.log(0.1), 0.5, 200)):
        proc.observe(semconv.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, {}, float(i), float(v))
        proc.observe("requests", {}, float(i), float(v))
    ttft, plain = proc.states()
    assert ttft.log and not plain.log
    lo, mid, hi = ttft.current_band()
    assert hi - mid > 1.5 * (mid - lo)  # the band is skewed up, as a lognormal is
    assert lo > 0


def test_a_fit_failure_falls_back_and_is_counted_without_stopping_other_series(monkeypatch):
    real = _forecast._sf_model

    class Boom(RuntimeError):
        pass

    Boom.__qualname__ = "Boom"

    def flaky(model, season_length, n, h, conformal):
        m = real(model, season_length, n, h, conformal)

        class Wrapper:
            def fit(self, y):
                if y[0] == 777.0:
                    raise Boom("bad series")
                return m.fit(y)

        return Wrapper()

    monkeypatch.setattr(_forecast, "_sf_model", flaky)
    proc = _proc(model="auto_ets", min_history=30)
    y = _series(40)
    for i, v in enumerate(y):
        proc.observe("bad", {}, float(i), 777.0 if i == 0 else float(v))
        proc.observe("good", {}, float(i), float(v))
    bad, good = proc.states()
    assert bad.band is not None and bad.band.fallback == "Boom"
    assert good.band is not None and good.band.fallback is None
    assert proc.fit_failures["Boom"] == 1
    assert _selftelemetry.error_counts()[("thresholds.fit", "Boom")] == 1


def test_bad_input_is_dropped_and_counted():
    proc = _proc(model="robust")
    proc.observe("m", {}, 10.0, 1.0)
    proc.observe("m", {}, 11.0, math.nan)
    proc.observe("m", {}, 12.0, math.inf)
    proc.observe("m", {}, 9.0, 1.0)  # out of order
    proc.observe("m", {}, 11.0, 1.0)  # repeat of an accepted time? 11 > 10: accepted
    proc.observe("m", {}, 11.0, 1.0)  # duplicate time: out of order
    proc.observe("m", {}, 13.0, "x")
    assert proc.dropped == {"non_finite": 2, "out_of_order": 2, "not_a_number": 1}
    assert proc.states()[0].n == 2
    assert _selftelemetry.dropped_counts()[("thresholds", "non_finite")] == 2


def test_bands_and_scores_are_emitted_as_gauges(telemetry):
    proc = ThresholdProcessor(
        ThresholdConfig(model="robust", refit="inline", min_history=10), meter_provider=telemetry.meter_provider
    )
    for i, v in enumerate(_series(40)):
        proc.observe(semconv.OTEL_LLM_SERVER_REQUESTS_WAITING, {"gen_ai.request.model": "tiny"}, float(i), float(v))
    upper = telemetry.points(semconv.OTEL_LLM_THRESHOLD_UPPER)
    lower = telemetry.points(semconv.OTEL_LLM_THRESHOLD_LOWER)
    score = telemetry.points(semconv.OTEL_LLM_ANOMALY_SCORE)
    assert len(upper) == len(lower) == len(score) == 1
    attrs = dict(upper[0].attributes)
    assert attrs["gen_ai.request.model"] == "tiny"
    assert attrs[semconv.OTEL_LLM_METRIC] == semconv.OTEL_LLM_SERVER_REQUESTS_WAITING
    assert attrs[semconv.OTEL_LLM_LEVEL] == 95.0
    assert lower[0].value < upper[0].value
    assert 0.0 <= score[0].value < 1.0


def test_time_to_breach_alerts_before_a_saturating_series_hits_its_limit():
    proc = _proc(model="robust", min_history=20, update_every=5, breach_horizon_s=120)
    kv = semconv.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION
    rng = np.random.default_rng(0)
    found = None
    for i in range(200):
        value = 0.3 + 0.004 * i + rng.normal(0, 0.002)
        for d in proc.observe(kv, {"gen_ai.request.model": "tiny"}, float(i), value):
            if d.kind == "predictive" and found is None:
                found = (i, value, d)
    assert found is not None
    i, value, d = found
    assert value < 1.0  # alerted before the limit
    assert "forecast to reach its limit 1" in d.explanation
    assert (1.0 - value) / 0.004 <= 120 + 20  # within the configured horizon (+ one refit of slack)


def test_background_refit_is_off_the_hot_path_and_flushes():
    proc = ThresholdProcessor(ThresholdConfig(model="auto_ets", min_history=30), emit_metrics=False)
    try:
        for i, v in enumerate(_series(64)):
            proc.observe("m", {}, float(i), float(v))
        assert proc.force_flush(10_000)
        st = proc.states()[0]
        assert st.band is not None and st.fits >= 1
    finally:
        proc.shutdown()


def test_env_configuration_precedence_and_errors(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_MODEL", "robust")
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_LEVELS", "90,99")
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_Z", "3")
    cfg = ThresholdConfig.from_env()
    assert (cfg.model, cfg.levels, cfg.alarm_level, cfg.policy.threshold) == ("robust", (90.0, 99.0), 99.0, 3.0)
    assert ThresholdConfig.from_env(model="auto_ets").model == "auto_ets"  # argument wins
    assert cfg.policy.rarity == 0  # off unless asked for
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_RARITY", "500")
    cfg = ThresholdConfig.from_env()
    assert (cfg.policy.rarity, cfg.policy.threshold, cfg.policy.k, cfg.policy.n) == (500, 3.0, 2, 3)
    monkeypatch.delenv("OTEL_LLM_THRESHOLD_Z")
    assert ThresholdConfig.from_env().policy.threshold == ThresholdConfig().policy.threshold
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_RARITY", "-1")
    with pytest.raises(ValueError, match="OTEL_LLM_THRESHOLD_RARITY"):
        ThresholdConfig.from_env()
    monkeypatch.delenv("OTEL_LLM_THRESHOLD_RARITY")
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_MODEL", "prophet")
    with pytest.raises(ValueError, match="OTEL_LLM_THRESHOLD_MODEL.*auto_ets, mstl, robust"):
        ThresholdConfig.from_env()
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_MODEL", "robust")
    monkeypatch.setenv("OTEL_LLM_THRESHOLD_LEVELS", "95,250")
    with pytest.raises(ValueError, match="OTEL_LLM_THRESHOLD_LEVELS"):
        ThresholdConfig.from_env()


def test_optional_ewma_chart_catches_a_sustained_small_shift():
    plain = AlarmRule(AlarmPolicy(threshold=4).validate())
    chart = AlarmRule(AlarmPolicy(threshold=4, ewma=0.2).validate())
    assert [plain.step(2.5) for _ in range(30)].count(OPENED) == 0
    events = [chart.step(2.5) for _ in range(30)]
    assert OPENED in events and events.index(OPENED) < 15
    with pytest.raises(ValueError, match="ewma"):
        AlarmPolicy(ewma=1.5).validate()


@pytest.mark.parametrize("hold", [0, 100])
def test_hold_during_alarm_keeps_the_band_from_learning_the_fault(hold):
    proc = _proc(model="robust", robust_window=20, update_every=1, hold_during_alarm=hold, policy=AlarmPolicy())
    y = _series(60, seed=2, season=1000)
    events = []
    for i, v in enumerate(y):
        events += proc.observe("m", {}, float(i), float(v))
    for i in range(60, 120):  # a sustained fault: +10
        events += proc.observe("m", {}, float(i), float(y[i - 60]) + 10)
    opened = [d for d in events if d.active]
    closed = [d for d in events if not d.active]
    assert opened and opened[0].start == 60.0
    if hold:
        assert closed == []  # still reported at the end of the fault
    else:
        assert closed and closed[0].end < 100  # the band learned the new level


# ------------------------------------------------------- seasonal-robust band
_DAY = 288  # 5-minute points


def _daily(days=6, seed=0, noise=2.0):
    rng = np.random.default_rng(seed)
    phase = (np.arange(days * _DAY) % _DAY) / _DAY
    return np.where((phase > 0.3) & (phase < 0.7), 80.0, 20.0) + rng.normal(0, noise, days * _DAY)


def test_robust_band_follows_the_season_where_it_explains_the_series():
    y = _daily(days=5)[: 4 * _DAY + 50]  # the next points lie in the low phase (the last 256 hold both)
    flat = _forecast.robust_band(y, 4, [95])
    seasonal = _forecast.robust_band(y, 4, [95], season_length=_DAY)
    # the flat band spans both levels; the seasonal one is centred on the phase that comes next
    assert flat["lo-95"][0] < 25 and flat["hi-95"][0] > 75
    assert abs(seasonal["mean"][0] - 20.0) < 2.0
    assert seasonal["hi-95"][0] - seasonal["lo-95"][0] < 15.0
    assert _forecast.seasonal_gate(y, _DAY) is not None
    # white noise has no season to use: the gate keeps the flat band
    noise = np.random.default_rng(1).normal(50, 5, y.size)
    assert _forecast.seasonal_gate(noise, _DAY) is None
    np.testing.assert_allclose(
        _forecast.robust_band(noise, 4, [95], season_length=_DAY)["hi-95"], _forecast.robust_band(noise, 4, [95])["hi-95"],
    )
    # less history than one season plus the residual window: flat band
    assert _forecast.seasonal_gate(y[: _DAY + 250], _DAY) is None
    # one season held, not yet two: centred on yesterday's same phase
    short = y[: 2 * _DAY + 50]
    assert _forecast.seasonal_gate(short, _DAY) is not None
    one = _forecast.robust_band(short, 4, [95], season_length=_DAY)
    assert abs(one["mean"][0] - 20.0) < 2.0 and one["hi-95"][0] - one["lo-95"][0] < 15.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_third_daily_rise_is_judged_against_yesterday_before_two_days_are_held(seed):
    """A daily hump of 5-minute points (NAB's artificial shape). Before one day plus the residual window is
    held (578 points) the flat band pages on each rise; from then on the band follows yesterday, so the third
    day's rise (points 676-702) is quiet. With the two-season rule alone it paged there in every seed."""
    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    n = 3 * _DAY
    hump = ((np.arange(n) % _DAY > 100) & (np.arange(n) % _DAY < 200)).astype(float)
    y = 20.0 + 60.0 * hump + np.random.default_rng(seed).normal(0, 3.0, n)
    assert _forecast.seasonal_history_needed(_DAY, seasons=1) == 578 < 2 * _DAY + 100
    _, alarms = run_threshold(NabSeries("a/hump.csv", [], [300.0 * i for i in range(n)], list(y), []),
                              default_threshold_config())
    opened = [i for i, a in enumerate(alarms) if a]
    assert opened and all(i < 578 for i in opened)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_odd_day_does_not_turn_the_season_off_for_the_days_after(seed):
    """NAB's "jumps up" shape: a daily hump for a third of the day, one day 40 higher. The day alarms; the
    two regular days after it stay quiet. With the median-deviation gate alone the season was dropped after
    the odd day (the hump is a minority of the points) and the flat band paged on the next humps."""
    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    n, odd = 14 * _DAY, 11 * _DAY
    hump = ((np.arange(n) % _DAY > 100) & (np.arange(n) % _DAY < 200)).astype(float)
    y = 20.0 + 60.0 * hump + np.random.default_rng(seed).normal(0, 3.0, n)
    y[odd : odd + _DAY] += 40.0 * hump[odd : odd + _DAY]
    _, alarms = run_threshold(NabSeries("a/jumpsup.csv", [], [300.0 * i for i in range(n)], list(y), []),
                              default_threshold_config())
    opened = [i for i, a in enumerate(alarms) if a]
    assert any(odd + 100 <= i < odd + 200 for i in opened)
    assert [i for i in opened if i >= odd + _DAY] == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_day_after_an_outage_does_not_page_on_its_normal_hour(seed):
    """The daily hump, and one hour of day 5 down at the base level. The outage alarms; the next two days
    are regular. Their centre at that hour is the median of the outage day and a regular one, halfway; the
    band widens where the two past days disagree, so the regular hour does not page. Without that it paged
    on both days after, in every seed."""
    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    n, out = 7 * _DAY, 4 * _DAY + 130
    hump = ((np.arange(n) % _DAY > 100) & (np.arange(n) % _DAY < 200)).astype(float)
    y = 20.0 + 60.0 * hump + np.random.default_rng(seed).normal(0, 3.0, n)
    y[out : out + 12] = 20.0 + np.random.default_rng(seed + 10).normal(0, 3.0, 12)
    _, alarms = run_threshold(NabSeries("a/outage.csv", [], [300.0 * i for i in range(n)], list(y), []),
                              default_threshold_config())
    opened = [i for i, a in enumerate(alarms) if a]
    assert any(out <= i < out + 12 for i in opened)
    assert [i for i in opened if i >= out + 12] == []


def _with_gaps(n, seed, start=2 * _DAY, gaps=12):
    """Row indexes of ``n`` 5-minute points with ``gaps`` runs of 5-36 points missing after ``start``."""
    rng = np.random.default_rng(100 + seed)
    keep = np.ones(n, bool)
    for a in rng.choice(np.arange(start, n - 40), gaps, replace=False):
        keep[a : a + rng.integers(5, 37)] = False
    return np.flatnonzero(keep)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gaps_in_the_timeline_keep_the_daily_season_in_phase(seed):
    """The daily hump again, one day 40 higher, and a dozen gaps of 25 minutes to 3 hours (a scraper
    down, hours missing from an export). The band finds "the same time yesterday" by position, so
    without filling the gaps every later day was shifted: the humps paged on regular days and the odd
    day could hide in the noise of a misaligned band. Filled one season back, the odd day alarms and
    the regular days after warm-up stay quiet."""
    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    n, odd = 14 * _DAY, 11 * _DAY
    hump = ((np.arange(n) % _DAY > 100) & (np.arange(n) % _DAY < 200)).astype(float)
    y = 20.0 + 60.0 * hump + np.random.default_rng(seed).normal(0, 3.0, n)
    y[odd : odd + _DAY] += 40.0 * hump[odd : odd + _DAY]
    rows = _with_gaps(n, seed)
    rows = rows[(rows < odd + 90) | (rows > odd + 210)]  # the odd hump itself is kept whole
    rows = np.union1d(rows, np.arange(odd + 90, odd + 211))
    _, alarms = run_threshold(NabSeries("a/gappy.csv", [], [300.0 * i for i in rows], list(y[rows]), []),
                              default_threshold_config())
    opened = rows[[i for i, a in enumerate(alarms) if a]]
    assert any(odd + 100 <= i < odd + 200 for i in opened)
    assert [i for i in opened if 3 * _DAY <= i < odd or i >= odd + _DAY] == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jittered_timestamps_keep_the_daily_season_in_phase(seed):
    """The odd-day hump series, each timestamp up to 90 s off its 5-minute slot (a busy scraper, a
    sensor that reports when it can). A running mean of the intervals wandered by a few percent, so
    the period, 86,400 s over the interval, moved by several points at every refit and the humps paged
    on regular days. The grid's interval is the time spanned over the slots held (the jitter cancels
    out) and each point is placed by its time: the odd day alarms and the regular days stay quiet."""
    from otel_llm.evaluation.anomaly import default_threshold_config

    n, odd = 14 * _DAY, 11 * _DAY
    rng = np.random.default_rng(seed)
    hump = ((np.arange(n) % _DAY > 100) & (np.arange(n) % _DAY < 200)).astype(float)
    y = 20.0 + 60.0 * hump + rng.normal(0, 3.0, n)
    y[odd : odd + _DAY] += 40.0 * hump[odd : odd + _DAY]
    t = 1.7e9 + 300.0 * np.arange(n) + rng.uniform(-90.0, 90.0, n)
    proc = ThresholdProcessor(replace(default_threshold_config(), refit="inline"), emit_metrics=False)
    h = proc.series("jittery")
    opened = []
    for i in range(n):
        h.observe(float(t[i]), float(y[i]))
        if h.state.last_event == OPENED:
            opened.append(i)
    assert abs(h.state.dt - 300.0) < 0.3
    assert h.state.filled <= 2 and abs(h.state.n - n) <= 2  # a slot or two while the interval was learned
    assert any(odd + 100 <= i < odd + 200 for i in opened)
    assert [i for i in opened if 3 * _DAY <= i < odd or i >= odd + _DAY] == []


def test_a_point_in_the_previous_slot_replaces_it_and_a_run_of_gaps_is_not_a_new_cadence():
    proc = _proc(model="robust", log_scale="off", history=4096)
    y = _daily(days=4, seed=5)
    s = proc.series("rps").state
    for i in range(3 * _DAY):
        proc.observe("rps", {}, 300.0 * i, float(y[i]))
    assert s.forecaster.season_ == _DAY
    n0, t = s.n, 300.0 * (3 * _DAY - 1)
    proc.observe("rps", {}, t + 20.0, 55.0)  # a second point in the last slot: its value replaces the first
    assert (s.n, s.hist[-1]) == (n0, 55.0)
    proc.observe("rps", {}, t + 300.0, 21.0)  # the next slot, in its place
    assert (s.n, s.filled) == (n0 + 1, 0)
    t += 300.0
    for k in range(1, CADENCE_CHANGE):  # a point missing before each of several in a row: gaps, one slot each
        proc.observe("rps", {}, t + 600.0 * k, 21.0)
    assert s.dt == 300.0 and s.filled == CADENCE_CHANGE - 1 and s.n == n0 + 1 + 2 * (CADENCE_CHANGE - 1)


def test_a_gap_is_filled_on_the_time_grid_and_a_new_sampling_interval_is_adopted():
    proc = _proc(model="robust", log_scale="off", history=4096)
    y = _daily(days=4, seed=5)
    s = proc.series("rps").state
    for i in range(300):
        proc.observe("rps", {}, 300.0 * i, float(y[i]))
    assert s.forecaster.season_ is None  # less than a day held: no season yet
    proc.observe("rps", {}, 300.0 * 310, float(y[310]))  # 10 points missing: held as NaN
    assert s.filled == 10 and np.isnan(list(s.hist)[-11:-1]).all()
    for i in range(311, 3 * _DAY):
        proc.observe("rps", {}, 300.0 * i, float(y[i]))
    assert s.forecaster.season_ == _DAY
    n0 = s.n
    proc.observe("rps", {}, 300.0 * (3 * _DAY + 30), float(y[3 * _DAY + 30]))  # 30 points missing
    assert (s.filled, s.n - n0) == (40, 31)
    assert list(s.hist)[-31:-1] == list(s.hist)[-31 - _DAY : -1 - _DAY]  # the season in use: one day earlier
    assert abs(s.dt - 300.0) < 1.0  # a gap is not a slower cadence
    t = 300.0 * (3 * _DAY + 30)
    for k in range(1, CADENCE_CHANGE + 3):  # the exporter now sends every 10 minutes: adopted after CADENCE_CHANGE
        proc.observe("rps", {}, t + 600.0 * k, 50.0)
    assert abs(s.dt - 600.0) < 1.0
    assert s.filled == 40 + CADENCE_CHANGE - 1
    lo, mid, hi = s.current_band()
    assert all(map(math.isfinite, (lo, mid, hi))) and lo < mid < hi


@pytest.mark.parametrize("model", ["robust", "auto_ets", "mstl"])
def test_band_forecaster_takes_missing_slots_and_the_stateless_forecast_refuses_them(model):
    y = _daily(days=3, seed=7)
    y[400:430] = np.nan  # a gap held on the time grid
    bf = BandForecaster(model, level=[95], season_length=_DAY).fit(y, h=8)
    band = bf.predict(8)
    assert bf.fallback_ is None
    assert all(np.isfinite(v).all() for v in band.values())
    assert abs(band["mean"][0] - 20.0) < 5.0  # the next points are in the low phase
    with pytest.raises(ValueError, match="NaN or inf"):
        forecast(y, 4, model=model, season_length=_DAY)


def test_detect_period_finds_a_repeating_shape_and_nothing_in_noise_walks_or_lines():
    rng = np.random.default_rng(11)
    i = np.arange(4032)
    hump = 20.0 + 60.0 * ((i % _DAY >= 100) & (i % _DAY < 200)) + rng.normal(0, 3.0, i.size)
    assert _forecast.detect_period(hump) == _DAY
    with_gaps = hump.copy()
    with_gaps[1000:1040] = np.nan
    assert _forecast.detect_period(with_gaps) == _DAY  # missing slots are left out
    assert _forecast.detect_period(50 + 30 * np.sin(2 * np.pi * i / 100) + rng.normal(0, 5.0, i.size)) == 100
    assert _forecast.detect_period(hump[: 2 * _DAY]) == _DAY  # two periods held
    assert _forecast.detect_period(hump[: 2 * _DAY - 20]) is None  # fewer
    assert _forecast.detect_period(hump, max_period=200) is None  # the day is longer than allowed
    assert _forecast.detect_period(rng.normal(size=4000)) is None
    assert _forecast.detect_period(np.cumsum(rng.normal(size=4000))) is None  # a random walk
    assert _forecast.detect_period(np.full(500, 3.0)) is None
    assert _forecast.detect_period(0.5 * np.arange(500.0)) is None


@pytest.mark.parametrize("found_season", [True, False])
def test_a_season_is_found_in_the_data_when_the_timestamps_name_no_calendar(found_season):
    """NAB's "no jump" shape (a daily hump, one day without it) with sequence-number stamps (1, 2, 3:
    read as seconds, so no day or week of points fits the history). With the period found in the data
    the regular humps stay quiet and the missing one alarms; judged against the flat band, the humps
    page and the day without one looks normal."""
    from dataclasses import replace

    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    n, odd = 14 * _DAY, 11 * _DAY
    hump = ((np.arange(n) % _DAY > 100) & (np.arange(n) % _DAY < 200)).astype(float)
    y = 20.0 + 60.0 * hump + np.random.default_rng(0).normal(0, 3.0, n)
    y[odd : odd + _DAY] -= 60.0 * hump[odd : odd + _DAY]
    cfg = replace(default_threshold_config(), found_season=found_season)
    _, alarms = run_threshold(NabSeries("a/seq.csv", [], [float(i + 1) for i in range(n)], list(y), []), cfg)
    opened = [i for i, a in enumerate(alarms) if a]
    regular = [i for i in opened if 3 * _DAY <= i < odd]
    missing_hump = [i for i in opened if odd + 100 <= i < odd + 200]
    if found_season:
        assert missing_hump and regular == []
    else:
        assert regular and missing_hump == []


def test_a_gap_in_a_series_without_a_season_adds_nothing():
    proc = _proc(model="auto_ets")
    for i in range(100):
        proc.observe("m", {}, float(i), 10.0 + i % 3)
    proc.observe("m", {}, 150.0, 11.0)
    s = proc.series("m").state
    assert (s.n, s.filled, len(s.hist)) == (101, 0, 101)


@pytest.mark.parametrize("daily_season", [True, False])
def test_a_day_that_loses_its_pattern_alarms_only_with_the_daily_season(daily_season):
    y = _daily(days=6, seed=3)
    a = 5 * _DAY + int(0.35 * _DAY)
    y[a : a + 80] = 50.0 + np.random.default_rng(4).normal(0, 2.0, 80)  # the high phase goes flat mid-level
    proc = _proc(model="robust", log_scale="off", history=2048, daily_season=daily_season, policy=AlarmPolicy(threshold=4.0))
    opened = _opened(proc, y, 300.0, "rps")
    in_fault = [i for i in opened if a <= i < a + 80]
    if daily_season:
        assert in_fault, "the flattened day must alarm with the daily season"
        assert in_fault[0] - a < 10  # promptly
        # and the regular days after warm-up stay quiet (seasonal band, not the flat one)
        assert len([i for i in opened if 4 * _DAY + 10 <= i < a]) <= 2
    else:
        assert not in_fault  # inside the flat band's range: invisible without the season


_WEEK_H = 168  # hourly points


def _weekly(weeks=5, seed=0):
    """Hourly traffic: a daily shape, and weekends (days 5, 6) at 40 % of the weekday level."""
    rng = np.random.default_rng(seed)
    i = np.arange(weeks * _WEEK_H)
    weekend = (i // 24) % 7 >= 5
    return np.where(weekend, 40.0, 100.0) * (1 + 0.3 * np.sin(2 * np.pi * (i % 24) / 24)) + rng.normal(0, 2.0, i.size)


def test_robust_band_picks_the_season_with_the_smaller_residuals():
    y = _weekly(weeks=4)[: 3 * _WEEK_H + 5 * 24 + 6]  # the next point is a Saturday 06:00
    daily = _forecast.robust_band(y, 1, [95], season_length=24)
    both = _forecast.robust_band(y, 1, [95], season_length=(24, _WEEK_H))
    assert abs(daily["mean"][0] - 130.0) < 10  # the days before say weekday level (100 x 1.3)
    assert abs(both["mean"][0] - 52.0) < 5  # the same hour last weeks says weekend level (40 x 1.3)
    with pytest.raises(ValueError, match="only for model 'robust'"):
        _forecast.BandForecaster("auto_ets", season_length=(24, _WEEK_H))
    assert _forecast.BandForecaster("auto_ets", season_length=(24,)).season_length == 24


def test_the_seasons_are_compared_over_the_same_points_so_a_friday_does_not_pick_the_daily_one():
    # Five-minute points: a day is 288, a week 2,016. The daily season's own residual window is its last
    # 288 points; on a Friday those are weekdays judged against weekdays, as good as the weekly season.
    # With weekend traffic noisier than weekday traffic, the daily season looks better on its own window.
    # Judged over the same week, it misses every weekend and Monday: the weekly one leaves under 0.6 x
    # its residuals there and is used.
    day, week = 288, 2016
    rng = np.random.default_rng(4)
    i = np.arange(4 * week)
    weekend = (i // day) % 7 >= 5
    shape = np.where(weekend, 60.0, 100.0) * (1 + 0.3 * np.sin(2 * np.pi * (i % day) / day))
    y = shape + rng.normal(0, 1.0, i.size) * np.where(weekend, 12.0, 6.0)
    friday_night = 3 * week + 5 * day - 1  # the next point is Saturday 00:00
    assert _forecast._robust(y[:friday_night], 1, [95], 256, (day, week))[2] == week
    # without a weekly pattern the week does no better than the day over the same points: nothing is
    # overridden, the season with the smaller residuals on its own window is used, as before
    daily = (100.0 * (1 + 0.3 * np.sin(2 * np.pi * (i % day) / day)) + rng.normal(0, 6.0, i.size))[:friday_night]
    for n in (friday_night - 3 * day, friday_night):
        own = {p: _forecast.seasonal_gate(daily[:n], p) for p in (day, week)}
        spread = {p: float(np.median(np.abs(r - np.median(r)))) for p, r in own.items()}
        assert _forecast._robust(daily[:n], 1, [95], 256, (day, week))[2] == min(spread, key=spread.get)


@pytest.mark.parametrize("seed", [0, 2])
def test_a_weekly_series_of_five_minute_points_does_not_page_every_saturday(seed):
    # Six weeks of five-minute traffic, weekends at 60 % and noisier, no fault, through the harness default.
    # Judging the daily season on its last day alone picked it on Fridays: an alert at every Saturday 00:00.
    from otel_llm.evaluation.anomaly import default_threshold_config

    day, week = 288, 2016
    rng = np.random.default_rng(seed)
    i = np.arange(6 * week)
    weekend = (i // day) % 7 >= 5
    shape = np.where(weekend, 60.0, 100.0) * (1 + 0.3 * np.sin(2 * np.pi * (i % day) / day))
    y = shape + rng.normal(0, 1.0, i.size) * np.where(weekend, 12.0, 6.0)
    proc = ThresholdProcessor(replace(default_threshold_config(), refit="inline"), emit_metrics=False)
    t0 = 4 * 86400.0  # 1970-01-05 00:00 UTC, a Monday: point 0 is a Monday
    opened = [k for k, v in enumerate(y) for d in proc.observe("rps", {}, t0 + 300.0 * k, float(v))
              if d.end is None and d.start == t0 + 300.0 * k]
    # once the weekly season is held (three weeks), no Saturday's first hour opens an alert
    saturdays = [k for k in opened if k >= 3 * week and (k // day) % 7 == 5 and k % day < 12]
    assert saturdays == [], opened


@pytest.mark.parametrize("weekly_season", [True, False])
def test_a_weekday_at_weekend_level_alarms_only_with_the_weekly_season(weekly_season):
    y = _weekly(weeks=5, seed=2)
    a = 4 * _WEEK_H + 2 * 24 + 8  # week 5, Wednesday 08:00: ten hours at the weekend level
    y[a : a + 10] *= 0.4
    proc = _proc(model="robust", log_scale="off", history=2048, weekly_season=weekly_season, policy=AlarmPolicy(threshold=4.0))
    opened = _opened(proc, y, 3600.0, "rps")
    in_fault = [i for i in opened if a <= i < a + 10]
    if weekly_season:
        assert in_fault and in_fault[0] - a < 3
        # weekends after warm-up are learned, not reported
        assert len([i for i in opened if i >= 4 * _WEEK_H and not a <= i < a + 12]) <= 1
    else:
        assert not in_fault  # the flat band spans weekend and weekday levels: invisible without the season


def test_a_sparse_counter_stepping_by_one_is_not_an_outlier_but_a_burst_is():
    # an error counter: mostly 0, now and then 1 (MAD 0); one step of its resolution is not 1e9 sigmas
    rng = np.random.default_rng(9)
    y = np.zeros(1500)
    y[rng.choice(1500, 45, replace=False)] = 1.0
    y[1200] = 9.0
    # (flatline=False: its long quiet stretches are the flatline check's business, tested below)
    proc = _proc(model="robust", log_scale="off", history=2048, flatline=False, policy=AlarmPolicy(threshold=4.0))
    opened = _opened(proc, y, 60.0, "errors")
    assert 1200 in opened
    assert len([i for i in opened if i != 1200]) <= 1, opened
    band = _forecast.robust_band(np.r_[np.zeros(250), np.ones(6)], 1, [95])
    assert _forecast._robust(np.r_[np.zeros(250), np.ones(6)], 1, [95], 256, None)[1] == 1.0
    assert band["mean"][0] == 0.0


def test_robust_sigma_is_symmetric_so_spikes_on_skewed_counts_alarm():
    # crash counts: mostly 0-2 with a long upper tail; the upper one-sided band width is the tail itself
    rng = np.random.default_rng(5)
    y = rng.poisson(1.0, 400).astype(float)
    y[rng.choice(400, 12, replace=False)] = rng.uniform(6, 9, 12)
    proc = _proc(model="robust", log_scale="off", policy=AlarmPolicy(threshold=4.0))
    for i, v in enumerate(y):
        proc.observe("crashes", {}, float(i), float(v))
    st = proc.states()[0]
    b = st.band
    assert b.sup[0] == b.sdn[0]  # one symmetric sigma
    half = (b.hi[0] - b.lo[0]) / 2 / _forecast.normal_quantile(95.0)
    assert b.sup[0] == pytest.approx(max(half, 1.4826 * np.median(np.abs(y[-256:] - np.median(y[-256:])))), rel=0.05)
    dets = proc.observe("crashes", {}, 400.0, 15.0)  # 15 crashes: far beyond 4 sigmas of the whole band
    assert [d for d in dets if d.end is None]


def test_tail_scale_widens_sigma_on_heavy_tailed_noise_only():
    # normal noise (sd 3) with routine short bursts on 2 % of the points, 4.5-6 sd high: rarer than the
    # 95 % band sees, so the MAD sigma alone makes every burst an alert
    rng = np.random.default_rng(12)
    normal = 100.0 + rng.normal(0, 3.0, 3000)
    bursty = normal.copy()
    at = rng.choice(np.arange(100, 3000), 60, replace=False)
    bursty[at] += rng.uniform(13.5, 18.0, at.size)

    def run(y, scale):
        proc = _proc(model="robust", log_scale="off", history=4096, tail_scale=scale, flatline=False,
                     policy=AlarmPolicy(threshold=4.0))
        opened = _opened(proc, y, 60.0)
        return opened, proc.series("m").state.tail

    plain, tail1 = run(bursty, 1.0)
    scaled, tail = run(bursty, 1.5)
    assert tail1 == 1.0 and tail > 1.3  # its (q99 - q1) / IQR is far above a normal's
    assert len(scaled) < 0.5 * len(plain)  # routine bursts stop paging
    _, tail_normal = run(normal, 1.5)
    assert tail_normal < 1.1  # a normal series keeps (nearly) its MAD sigma
    # a real fault still alarms on the bursty series
    y = bursty.copy()
    y[2500:2520] += 40.0
    opened, _ = run(y, 1.5)
    assert any(2500 <= i < 2503 for i in opened)


def test_a_stuck_value_alarms_as_a_flatline_but_a_constant_series_does_not():
    rng = np.random.default_rng(7)
    y = 100 + rng.normal(0, 5, 600)
    y[400:460] = y[400]  # the exporter repeats its last value for 60 points
    proc = _proc(model="robust", log_scale="off", policy=AlarmPolicy(threshold=4.0))
    opened = []
    for i, v in enumerate(y):
        opened += [(i, d) for d in proc.observe("rps", {}, float(i), float(v)) if d.end is None]
    stuck = [(i, d) for i, d in opened if 400 <= i < 460]
    assert stuck, "a flatline inside the band must still alarm"
    i, d = stuck[0]
    assert i - 400 <= 14  # flatline_min (12) points after it starts, plus the one that started it
    assert "flatline" in d.explanation
    assert not [i for i, _ in opened if 30 <= i < 400]  # normal noise never looks stuck
    # a series that has always been constant (an idle counter) is not "stuck"
    quiet = _proc(model="robust", log_scale="off", policy=AlarmPolicy(threshold=4.0))
    assert not [d for i in range(300) for d in quiet.observe("errors", {}, float(i), 0.0)]
    # and the check can be turned off
    off = _proc(model="robust", log_scale="off", flatline=False, policy=AlarmPolicy(threshold=4.0))
    assert not [d for i, v in enumerate(y[:460]) for d in off.observe("rps", {}, float(i), float(v)) if d.end is None
                and i >= 400]
