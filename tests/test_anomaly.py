"""PyOD over requests: estimator contract, quality floor, attribution, rate aggregation, SDK processor."""

from __future__ import annotations

import math

import numpy as np
import pytest
from otel_llm.processors._anomaly import RequestAnomalyProcessor
from otel_llm.processors._features import FEATURES, request_features
from otel_llm.processors._model import Severity
from otel_llm.processors._outlier import VALID_DETECTORS, OutlierDetector
from otel_llm.processors._sdk import DetectorSpanProcessor, SpanSeriesFeed
from otel_llm.processors._spans import KIND_SERVER, SpanRecord
from otel_llm.processors._stream import DetectionStream
from otel_llm.processors._thresholds import ThresholdConfig, ThresholdProcessor

from otel_llm import semconv

TPOT = FEATURES.index("tpot")


def _rows(n, rng):
    X = np.full((n, len(FEATURES)), np.nan)
    X[:, 1] = rng.lognormal(np.log(0.05), 0.3, n)  # ttft
    X[:, 2] = rng.lognormal(np.log(0.02), 0.2, n)  # tpot
    X[:, 3] = X[:, 2] * rng.lognormal(0.5, 0.2, n)  # gap p99
    X[:, 4] = X[:, 3] * 1.2  # gap max
    X[:, 5] = rng.integers(10, 500, n)
    X[:, 6] = rng.integers(16, 256, n)
    X[:, 7] = rng.lognormal(np.log(0.005), 0.5, n)
    X[:, 0] = X[:, 1] + X[:, 2] * X[:, 6] + X[:, 7]
    return X


def _anomalies(n, rng):
    X = _rows(n, rng)
    X[:, TPOT] *= 5  # stalled decode
    X[:, 3] = X[:, TPOT] * 1.6
    X[:, 4] = X[:, 3] * 1.2
    X[:, 0] = X[:, 1] + X[:, TPOT] * X[:, 6] + X[:, 7]
    return X


@pytest.mark.parametrize("name", VALID_DETECTORS)
def test_estimator_contract_ranges_and_quality_floor(name):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    train, normal, bad = _rows(400, rng), _rows(100, rng), _anomalies(10, rng)
    det = OutlierDetector(name, 0.02, feature_names=FEATURES)
    assert not [k for k in vars(det) if k.endswith("_") and not k.startswith("_")]  # nothing learned yet
    assert det.fit(train) is det
    assert det.features_in_ == FEATURES[:8]  # GPU columns absent -> left out
    X = np.vstack([normal, bad])
    before = det.train_scores_.copy()
    s1 = det.score(X)
    s2 = det.score(X)
    np.testing.assert_array_equal(s1, s2)  # scoring is pure
    np.testing.assert_array_equal(before, det.train_scores_)
    # each row's score is its own (not a function of the batch)
    assert det.score(X[-1:])[0] == pytest.approx(s1[-1])
    assert s1.shape == (110,) and np.all((s1 >= 0) & (s1 <= 1))
    assert set(np.unique(det.predict(X))) <= {0, 1}
    auc = roc_auc_score(np.r_[np.zeros(100), np.ones(10)], s1)
    assert auc >= 0.8, f"{name}: AUC {auc:.3f} below the 0.8 floor"


@pytest.mark.parametrize("name", VALID_DETECTORS)
def test_contamination_is_the_share_of_normal_rows_flagged(name):
    # the score is the larger of two calibrations (detector, |z| guard); taken as it was, a normal row
    # passed 1 - contamination on either one, about twice as often as the setting said
    rng = np.random.default_rng(8)
    det = OutlierDetector(name, 0.04, feature_names=FEATURES).fit(_rows(800, rng))
    flagged = float(np.mean(det.predict(_rows(5000, rng))))
    assert 0.025 <= flagged <= 0.055, f"{name}: {flagged:.3f} of normal rows flagged at contamination 0.04"


@pytest.mark.parametrize("name", ["iforest", "loda"])
def test_randomised_detectors_fit_the_same_rows_the_same_way(name):
    rng = np.random.default_rng(5)
    train, test = _rows(400, rng), np.vstack([_rows(50, rng), _anomalies(10, rng)])
    a = OutlierDetector(name, 0.04, feature_names=FEATURES).fit(train).decision_function(test)
    np.random.seed(12345)  # whatever the global generator holds
    b = OutlierDetector(name, 0.04, feature_names=FEATURES).fit(train).decision_function(test)
    np.testing.assert_array_equal(a, b)


def test_each_feature_is_judged_in_its_own_unit():
    # seconds or milliseconds: the same requests, the same scores and deviations (log1p(x) is nearly
    # linear for sub-second x, so in seconds a latency's log scale was lost)
    rng = np.random.default_rng(3)
    train, test = _rows(500, rng), _anomalies(20, rng)
    ms = np.ones(len(FEATURES))
    ms[[0, 1, 2, 3, 4, 7]] = 1000.0
    a = OutlierDetector("iforest", 0.04, feature_names=FEATURES).fit(train)
    b = OutlierDetector("iforest", 0.04, feature_names=FEATURES).fit(train * ms)
    np.testing.assert_allclose(a.score(test), b.score(test * ms))
    for x in test[:3]:
        da, db = a.deviation(x), b.deviation(x * ms)
        assert da == pytest.approx(db)
        assert list(a.explain(x)) == list(b.explain(x * ms))


def test_bad_names_and_settings_list_valid_choices():
    with pytest.raises(ValueError, match="ecod, iforest, hbos, copod, loda"):
        OutlierDetector("knn")
    with pytest.raises(ValueError, match="contamination"):
        OutlierDetector("ecod", contamination=0.9)
    with pytest.raises(ValueError, match="ecod, iforest, hbos, copod, loda"):
        RequestAnomalyProcessor("lof", emit_metrics=False, refit="inline")


@pytest.mark.parametrize("feature", ["tpot", "queue_time", "input_tokens"])
def test_attribution_names_the_perturbed_feature(feature):
    rng = np.random.default_rng(1)
    det = OutlierDetector("ecod", 0.02, feature_names=FEATURES).fit(_rows(500, rng))
    row = _rows(1, rng)[0]
    j = FEATURES.index(feature)
    row[j] = row[j] * 40 + 5000 if feature == "input_tokens" else row[j] * 40
    assert det.score([row])[0] >= det.threshold_
    contributions = det.explain(row)
    assert next(iter(contributions)) == feature
    assert sum(contributions.values()) == pytest.approx(1.0, abs=1e-3)
    assert det.deviation(row)[feature] > 3


def test_attribution_past_the_training_range_ranks_by_how_far_out():
    # Two features past everything seen in training: the empirical tail probability is 0 for both,
    # so only the fitted tail can tell the value just past the edge from the one far out.
    rng = np.random.default_rng(3)
    train = _rows(500, rng)
    det = OutlierDetector("ecod", 0.02, feature_names=FEATURES).fit(train)
    row = np.nanmedian(train, axis=0)
    ttft, queue = FEATURES.index("ttft"), FEATURES.index("queue_time")
    row[ttft] = train[:, ttft].max() * 1.02  # just past the edge (listed first in FEATURES)
    row[queue] = train[:, queue].max() * 4  # far out
    contributions = det.explain(row)
    assert list(contributions)[:2] == ["queue_time", "ttft"]
    assert contributions["queue_time"] > 1.5 * contributions["ttft"]
    assert sum(contributions.values()) == pytest.approx(1.0, abs=1e-3)
    # below the range counts the same way
    row[queue] = np.nanmedian(train[:, queue])
    row[ttft] = train[:, ttft].min() / 4
    assert next(iter(det.explain(row))) == "ttft"


# ------------------------------------------------------------ the processor
def _span(i, rng, *, tpot_factor=1.0, t0=1_000.0, gpu=None, model="tiny"):
    tpot = float(rng.lognormal(np.log(0.02), 0.2)) * tpot_factor
    ttft = float(rng.lognormal(np.log(0.05), 0.3))
    out = int(rng.integers(16, 64))
    attrs = {
        semconv.GEN_AI_OPERATION_NAME: "chat", semconv.GEN_AI_REQUEST_MODEL: model,
        semconv.OTEL_LLM_TTFT: ttft, semconv.OTEL_LLM_TPOT: tpot, semconv.OTEL_LLM_GAP_P99: tpot * 1.5,
        semconv.OTEL_LLM_GAP_MAX: tpot * 2, semconv.GEN_AI_USAGE_INPUT_TOKENS: int(rng.integers(10, 200)),
        semconv.GEN_AI_USAGE_OUTPUT_TOKENS: out, semconv.OTEL_LLM_QUEUE_TIME: float(rng.lognormal(np.log(0.003), 0.3)),
    }
    if gpu:
        attrs[semconv.OTEL_LLM_GPU_UUIDS] = (gpu,)
    start = t0 + i * 0.5
    return SpanRecord(f"{i:032x}", f"{i:016x}", None, "chat tiny", "llm", start, start + ttft + tpot * out,
                      kind=KIND_SERVER, attributes=attrs)


def _opened(dets):
    """The detections that open an alert (an escalation publishes the open one again, with its start)."""
    first: dict = {}
    for d in dets:
        if d.active:
            first.setdefault((d.fingerprint, d.start), d)
    return list(first.values())


def test_one_outlier_does_not_page_but_a_burst_does():
    rng = np.random.default_rng(2)
    stream = DetectionStream()
    sub = stream.subscribe()
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", min_fit=100, rate_window_s=30, rate_threshold=0.2,
                                   min_anomalies=3, stream=stream, emit_metrics=False)
    dets = []
    for i in range(200):
        dets += proc.observe(_span(i, rng))
    assert proc.model is not None
    one = proc.score_span(_span(200, rng, tpot_factor=8), learn=False)
    assert one is not None and one.anomalous and "tpot" in one.explanation
    dets += proc.observe(_span(201, rng, tpot_factor=8))
    assert [d for d in dets if d.active] == []  # one abnormal request: no page
    for i in range(202, 222):
        dets += proc.observe(_span(i, rng, tpot_factor=8 if i % 2 else 1))
    opened = [d for d in _opened(dets) if d.kind == "anomaly"]
    assert len(opened) == 1
    d = opened[0]
    assert d.series == 'otel_llm.anomaly.requests{gen_ai.request.model="tiny",service.name="llm"}'
    assert next(iter(d.contributions)) in {"tpot", "gap_p99", "gap_max", "duration"}
    assert "tpot" in d.explanation and d.trace_ids and all(len(t) == 32 for t in d.trace_ids)
    assert 0 < d.score <= 1
    assert d in sub.drain()


def test_a_rate_alert_that_doubles_past_its_threshold_escalates_to_critical_once():
    rng = np.random.default_rng(2)
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", min_fit=100, rate_window_s=30, rate_threshold=0.2,
                                   min_anomalies=3, emit_metrics=False)
    for i in range(200):
        proc.observe(_span(i, rng))
    dets = []
    i = 200
    while not dets:  # every other request slow: it opens just past 20 %, a warning
        dets += proc.observe(_span(i, rng, tpot_factor=8 if i % 2 else 1))
        i += 1
    (warn,) = dets
    assert warn.active and warn.severity is Severity.WARNING
    for j in range(i, i + 60):  # then every request: the rate climbs past 40 %
        dets += proc.observe(_span(j, rng, tpot_factor=8))
    assert len(dets) == 2 and len(_opened(dets)) == 1
    crit = dets[1]
    assert crit.active and crit.severity is Severity.CRITICAL and crit.value > 0.4
    assert (crit.start, crit.fingerprint) == (warn.start, warn.fingerprint) and "escalated" in crit.explanation
    for j in range(i + 60, i + 200):
        dets += proc.observe(_span(j, rng))
    assert len(dets) == 3 and not dets[2].active and dets[2].severity is Severity.CRITICAL


def test_gpu_state_lookup_adds_gpu_features_and_a_throttled_gpu_is_named():
    from otel_llm.collectors._model import GpuSample

    calls = []

    def gpu_state(uuid, t):
        calls.append((uuid, t))
        throttled = t > 1_000.0 + 150 * 0.5
        return GpuSample(uuid, t, {1002: 0.6, 203: 80.0, 252: 10_000.0, 155: 300.0, 150: 65.0,
                                   112: 0x40 if throttled else 0x0})

    rng = np.random.default_rng(4)
    span = _span(0, rng, gpu="GPU-1")
    row = request_features(span, gpu_state)
    assert calls == [("GPU-1", span.end)]
    assert row["gpu_throttle"] == 0.0 and row["gpu_power"] == 300.0 and row["gpu_sm_active"] == 0.6
    assert math.isnan(request_features(_span(0, rng))["gpu_power"])
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", min_fit=100, gpu_state=gpu_state,
                                   emit_metrics=False)
    for i in range(150):
        proc.observe(_span(i, rng, gpu="GPU-1"))
    res = proc.score_span(_span(151, rng, gpu="GPU-1"), learn=False)
    assert res is not None and res.anomalous
    assert next(iter(res.contributions)) == "gpu_throttle"


def test_sdk_span_processor_runs_off_the_host_thread(telemetry):
    from opentelemetry.trace import SpanKind

    stream = DetectionStream()
    anomaly = RequestAnomalyProcessor("hbos", 0.05, refit="inline", min_fit=30, stream=stream, emit_metrics=False)
    thresholds = ThresholdProcessor(ThresholdConfig(model="robust", refit="inline", min_history=5), stream=stream,
                                    emit_metrics=False)
    feed = SpanSeriesFeed(thresholds, interval_s=1.0)
    sp = DetectorSpanProcessor(anomaly, feed, max_queue_size=1000)
    telemetry.tracer_provider.add_span_processor(sp)
    tracer = telemetry.tracer_provider.get_tracer("test")
    rng = np.random.default_rng(5)
    t0 = 1_700_000_000 * 10**9
    for i in range(60):
        start = t0 + i * 250_000_000
        span = tracer.start_span("chat tiny", kind=SpanKind.SERVER, start_time=start, attributes={
            semconv.GEN_AI_OPERATION_NAME: "chat", semconv.GEN_AI_REQUEST_MODEL: "tiny",
            semconv.OTEL_LLM_TTFT: float(rng.lognormal(np.log(0.05), 0.2)),
            semconv.OTEL_LLM_TPOT: float(rng.lognormal(np.log(0.02), 0.2)),
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: 32,
        })
        span.end(end_time=start + 100_000_000)
        with tracer.start_as_current_span("not a request"):
            pass
    assert sp.force_flush(10_000)
    assert sp.processed == 60 and sp.dropped == 0
    assert anomaly.scored > 0
    keys = {s.key for s in thresholds.states()}
    assert ('gen_ai.server.time_to_first_token{gen_ai.request.model="tiny",otel_llm.statistic="p95",'
            'service.name="otel-llm-test"}') in keys
    sp.shutdown()


def test_a_full_queue_drops_and_counts_instead_of_blocking():
    import threading

    gate = threading.Event()

    class Slow:
        def observe(self, record):
            gate.wait(5)

    sp = DetectorSpanProcessor(Slow(), max_queue_size=2)

    class FakeSpan:
        attributes = {semconv.GEN_AI_OPERATION_NAME: "chat"}

    from unittest import mock

    with mock.patch("otel_llm.processors._sdk.from_readable_span", lambda s: s):
        for _ in range(10):
            sp.on_end(FakeSpan())
    assert sp.dropped >= 7
    gate.set()
    assert sp.force_flush(5_000)
    sp.shutdown()


def test_detection_stream_is_bounded_and_survives_bad_subscribers():
    from otel_llm.processors._model import Detection

    stream = DetectionStream(history=3)
    small = stream.subscribe(maxsize=2)
    got = []

    def bad(d):
        got.append(d)
        raise RuntimeError("exporter down")

    cb = stream.subscribe(bad)
    dets = [Detection("threshold", f"s{i}", float(i)) for i in range(5)]
    stream.publish(dets)
    assert [d.series for d in small.drain()] == ["s3", "s4"] and small.dropped == 3
    assert cb.flush(2.0)
    assert len(got) == 5
    assert [d.series for d in stream.recent()] == ["s2", "s3", "s4"]
    stream.close()


def test_anomaly_settings_from_env(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_ANOMALY_DETECTOR", "iforest")
    monkeypatch.setenv("OTEL_LLM_ANOMALY_CONTAMINATION", "0.05")
    proc = RequestAnomalyProcessor(refit="inline", emit_metrics=False)
    assert (proc.detector, proc.contamination) == ("iforest", 0.05)
    assert RequestAnomalyProcessor("copod", refit="inline", emit_metrics=False).detector == "copod"
    monkeypatch.setenv("OTEL_LLM_ANOMALY_DETECTOR", "knn")
    with pytest.raises(ValueError, match="OTEL_LLM_ANOMALY_DETECTOR.*ecod, iforest, hbos, copod, loda"):
        RequestAnomalyProcessor(refit="inline", emit_metrics=False)


def test_span_series_feed_tolerates_late_spans_within_grace_and_counts_later_ones():
    thresholds = ThresholdProcessor(ThresholdConfig(model="robust", refit="inline", min_history=5), emit_metrics=False)
    feed = SpanSeriesFeed(thresholds, interval_s=10.0, grace_s=5.0)
    rng = np.random.default_rng(7)

    def at(end, i):
        s = _span(i, rng, t0=0.0)
        return SpanRecord(s.trace_id, s.span_id, None, s.name, s.service, end - 0.5, end, kind=KIND_SERVER,
                          attributes=s.attributes)

    feed.add(at(101.0, 0))
    feed.add(at(112.0, 1))
    feed.add(at(109.0, 2))  # late but within grace: interval [100, 110) still open
    assert feed.late == 0
    feed.add(at(116.0, 3))  # watermark 116 >= 110 + 5: closes [100, 110) with 2 requests
    count = next(s for s in thresholds.states() if s.metric.endswith(".count"))
    assert (count.n, count.value) == (1, 2.0)
    feed.add(at(105.0, 4))  # too late now: dropped and counted
    assert feed.late == 1
    feed.add(at(140.0, 5))  # closes [110, 120) (2 requests); [120, 130) had none: no points for it
    feed.flush(now=150.0)  # [140, 150) has ended: closed with its 1 request
    assert count.n == 3 and count.value == 1.0 and feed.partial == 0
    feed.add(at(151.0, 6))
    feed.flush(now=155.0)  # [150, 160) is still running: its count of 1 would read as a traffic drop
    assert count.n == 3 and feed.partial == 1
    feed.add(at(152.0, 7))  # and it stays closed
    assert feed.late == 2 and count.n == 3


def _gpu(util, power, sm, *, throttle=0x0):
    from otel_llm.collectors._model import GpuSample

    return lambda uuid, t: GpuSample(uuid, t, {1002: sm, 203: util, 252: 10_000.0, 155: power, 150: 60.0,
                                               112: throttle})


@pytest.mark.parametrize("load_features", [None, ()])
def test_a_busy_gpu_at_normal_latency_is_explained_but_does_not_page(load_features):
    """A traffic burst after a quiet window: every request is off the charts in GPU utilisation, SM activity
    and power, yet served at normal latency. Each is flagged and explained; none counts toward the page
    unless the load columns are switched off (``load_features=()``), which pages, so the rule is what holds."""
    rng = np.random.default_rng(6)
    quiet, busy = _gpu(3.0, 90.0, 0.05), _gpu(60.0, 390.0, 0.5)
    state = {"fn": quiet}
    kw = {} if load_features is None else {"load_features": load_features}
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", min_fit=100, refit_every=10_000, rate_window_s=30,
                                   rate_threshold=0.2, min_anomalies=3, emit_metrics=False,
                                   gpu_state=lambda u, t: state["fn"](u, t), **kw)
    for i in range(150):
        proc.observe(_span(i, rng, gpu="GPU-1"))
    state["fn"] = busy
    dets, scores = [], []
    for i in range(150, 190):
        span = _span(i, rng, gpu="GPU-1")
        scores.append(proc.score_span(span, learn=False))
        dets += proc.observe(span)
    assert all(s is not None and s.anomalous for s in scores)
    assert all({"gpu_util", "gpu_sm_active", "gpu_power"} <= set(list(s.contributions)[:4]) for s in scores)
    if load_features is None:
        assert all(s.load_only and not s.counts and "not paged" in s.explanation for s in scores)
        assert [d for d in dets if d.active] == []
        # the same burst on a throttled GPU with stalled decode still pages, and names the throttle
        state["fn"] = _gpu(60.0, 390.0, 0.5, throttle=0x40)
        for i in range(190, 220):
            dets += proc.observe(_span(i, rng, gpu="GPU-1", tpot_factor=6))
        opened = _opened(dets)
        assert len(opened) == 1 and "gpu_throttle" in opened[0].contributions
    else:
        assert not any(s.load_only for s in scores)
        assert len(_opened(dets)) == 1
    with pytest.raises(ValueError, match="gpu_util"):
        RequestAnomalyProcessor(refit="inline", emit_metrics=False, load_features=("gpu_utilisation",))


def test_requests_faster_than_usual_are_explained_but_do_not_page():
    """A quiet spell after a busy hour: every request decodes five times faster than the model learned.
    Each is flagged and explained (tpot low) but does not count toward the page; the same share of requests
    five times *slower* pages once, naming tpot."""
    rng = np.random.default_rng(8)
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", min_fit=100, refit_every=10_000, rate_window_s=30,
                                   rate_threshold=0.2, min_anomalies=3, emit_metrics=False)
    for i in range(150):
        proc.observe(_span(i, rng))
    dets, scores = [], []
    for i in range(150, 190):
        span = _span(i, rng, tpot_factor=0.2)
        scores.append(proc.score_span(span, learn=False))
        dets += proc.observe(span)
    better = [s for s in scores if s is not None and s.better_only]
    assert len(better) >= 30  # the rest: normal, or abnormal at the base rate (contamination) for other reasons
    assert all(s.anomalous and not s.load_only and not s.counts for s in better)
    assert all("tpot=" in s.explanation and "(low)" in s.explanation for s in better)
    assert all("only lower than usual (" in s.explanation and "not paged" in s.explanation for s in better)
    assert sum(s.counts for s in scores) <= 4 and dets == []
    for i in range(190, 230):
        dets += proc.observe(_span(i, rng, tpot_factor=5))
    opened = _opened(dets)
    assert len(opened) == 1 and "tpot" in opened[0].contributions
    assert "not paged" not in opened[0].explanation.split("Example:")[1]


@pytest.mark.parametrize("min_fit", [None, 128])
def test_the_first_model_waits_for_enough_requests_to_see_a_server_fill_up(min_fit):
    """A server starting cold: its first requests decode alone, later ones in a growing batch (TPOT rises with
    concurrency, as continuous batching does). A first model fitted on the first 128 requests knows only the
    empty server and pages on the full one; the default waits for 512 and does not."""
    rng = np.random.default_rng(9)
    kw = {} if min_fit is None else {"min_fit": min_fit}
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", rate_window_s=30, emit_metrics=False, **kw)
    assert proc.min_fit == (512 if min_fit is None else min_fit)
    dets = []
    for i in range(900):
        dets += proc.observe(_span(i, rng, tpot_factor=1.0 + min(i, 300) / 150.0))
    opened = [d for d in dets if d.active]
    if min_fit is None:
        assert opened == [] and proc.scored == 900 - 512
    else:
        assert len(opened) >= 1 and "tpot" in opened[0].contributions


def test_rate_alarm_waits_for_enough_scored_requests_after_the_first_fit():
    rng = np.random.default_rng(5)
    proc = RequestAnomalyProcessor("ecod", 0.02, refit="inline", min_fit=100, refit_every=10_000, rate_window_s=60,
                                   rate_threshold=0.2, min_anomalies=3, emit_metrics=False)
    assert proc.min_scored == 20
    dets = []
    for i in range(100):  # unscored until the first fit
        dets += proc.observe(_span(i, rng))
    assert proc.model is not None and dets == [] and proc.scored == 0
    for i in range(100, 106):  # "5 of 6" right after the fit: too few scored requests to judge a rate
        dets += proc.observe(_span(i, rng, tpot_factor=8 if i % 6 else 1))
    assert proc.flagged >= 5 and dets == []
    for i in range(106, 130):
        dets += proc.observe(_span(i, rng, tpot_factor=8 if i % 2 else 1))
    opened = [d for d in dets if d.active]
    assert len(opened) == 1 and proc.scored >= 20
    assert int(opened[0].explanation.split(" of ")[1].split()[0]) >= 20
    with pytest.raises(ValueError, match="min_scored"):
        RequestAnomalyProcessor(refit="inline", emit_metrics=False, min_anomalies=5, min_scored=4)


def test_point_detector_finds_a_spike_and_stays_near_its_contamination_on_noise():
    """``--detector pyod`` of the harness: 2,700 scored points of Gaussian noise open about contamination x
    points alerts (0.002 x 2,700 = 5.4; at the former 0.005 it opened 14-22), and the 12-sigma spike opens one."""
    from otel_llm.processors._pointpyod import PointAnomalyDetector

    rng = np.random.default_rng(0)
    x = 100 + rng.normal(0, 5, 3000)
    x[2000] += 60
    det = PointAnomalyDetector()
    opened = [i for i, v in enumerate(x) if det.observe(float(i), float(v))[1]]
    assert 2000 in opened
    assert len([i for i in opened if i >= 300 and i != 2000]) <= 10
