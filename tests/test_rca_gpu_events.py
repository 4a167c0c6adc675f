"""RCA GPU evidence lifecycle: open GPU detections end, stale XIDs are not new, lost GPUs rank on their own."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from otel_llm.processors import Detection, SpanRecord
from otel_llm.processors.rca import GpuAnomaly, RcaProcessor, rank_window
from otel_llm.processors.rca._gpu import events_from_samples, events_from_store

from otel_llm import semconv

GPU_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
GPU_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"


class _Sample:
    def __init__(self, uuid, t, fields):
        self.uuid, self.timestamp, self.fields, self.labels = uuid, t, fields, {}


def _gpu_detection(start, end=None):
    return Detection(kind="gpu", series=f'hw.status{{hw.id="{GPU_A}"}}', start=start, end=end, score=1.0,
                     attributes={semconv.HW_ID: GPU_A}, explanation="GPU throttling: hardware thermal slowdown")


# --------------------------------------------------------------------------- 1: open GPU detections end
def test_a_closed_gpu_detection_ends_its_anomaly():
    rca = RcaProcessor(quiet_period_s=1, self_detect=False)
    rca.on_detections([_gpu_detection(100.0)])
    rca.tick(101.0)
    assert [e.uuid for e in rca._gpu_in(100, 102)] == [GPU_A]
    rca.on_detections([_gpu_detection(100.0, end=130.0)])
    rca.tick(131.0)
    assert [(e.start, e.end) for e in rca._gpu_in(90, 140)] == [(100.0, 130.0)]
    # A later window (a later incident) no longer sees the old throttle.
    assert rca._gpu_in(200, 260) == []


def test_an_open_gpu_detection_without_news_goes_stale():
    rca = RcaProcessor(quiet_period_s=1, self_detect=False, gpu_stale_s=60)
    rca.on_detections([_gpu_detection(100.0)])
    rca.tick(100.0)
    rca.tick(150.0)
    assert rca._gpu_in(140, 150)  # still open and fresh
    rca.tick(170.0)
    assert [(e.start, e.end) for e in rca._gpu_in(0, 1000)] == [(100.0, 160.0)]
    assert rca._gpu_in(200, 300) == []
    with pytest.raises(ValueError):
        RcaProcessor(gpu_stale_s=0)


# --------------------------------------------------------------------------- 2: stale last-XID is not new
def test_only_a_change_of_the_xid_field_is_an_xid_event():
    samples = [_Sample(GPU_A, t, {230: x}) for t, x in enumerate([0, 0, 79, 79, 79, 79, 0, 43, 43, 79])]
    xids = [(e.start, e.reason) for e in events_from_samples(samples)]
    assert xids == [(2, "XID 79"), (7, "XID 43"), (9, "XID 79")]


def test_xid_state_carries_across_calls_and_a_returning_gpu_is_not_a_new_fault():
    rca = RcaProcessor(self_detect=False)
    rca.on_gpu_samples([_Sample(GPU_A, 10.0, {230: 79})])
    # The GPU comes back after a reset: DCGM still shows 79 as its last XID on every sample.
    for t in range(50, 60):
        rca.on_gpu_samples([_Sample(GPU_A, float(t), {230: 79})])
    assert [e.start for e in rca._gpu_in(0, 100)] == [10.0]
    assert rca._gpu_in(40, 100) == []


def test_store_window_with_a_stale_xid_before_it_has_no_xid_event():
    from otel_llm.collectors import GpuSample, GpuStateStore

    store = GpuStateStore()
    store.add([GpuSample(GPU_A, float(t), {230: 79 if t >= 5 else 0}) for t in range(0, 30)])
    assert [e.reason for e in events_from_store(store, [GPU_A], 0, 10) if e.reason.startswith("XID")] == ["XID 79"]
    assert [e for e in events_from_store(store, [GPU_A], 20, 30) if e.reason.startswith("XID")] == []


# --------------------------------------------------------------------------- 3: lost GPUs rank on their own
def _trace(rng, i, t0, gpu, *, failed=False, slow_retrieval=1.0):
    tid, j = f"{i:032x}", lambda x: x * rng.uniform(0.85, 1.15)
    db = j(0.01) * slow_retrieval
    llm = j(0.2)
    s = [
        SpanRecord(tid, "01", None, "POST /v1/ask", "gateway", t0, t0 + db + llm + 0.01, kind="server", error=failed),
        SpanRecord(tid, "02", "01", "vector search", "gateway", t0 + 0.001, t0 + 0.001 + db, kind="client",
                   attributes={semconv.PEER_SERVICE: "vector-db"}),
        SpanRecord(tid, "03", "01", "chat", "gateway", t0 + 0.002 + db, t0 + 0.004 + db + llm, kind="client",
                   error=failed),
        SpanRecord(tid, "04", "03", "chat tiny", "llm-server", t0 + 0.003 + db, t0 + 0.003 + db + llm,
                   kind="server", error=failed, attributes={semconv.OTEL_LLM_GPU_UUIDS: (gpu,)}),
    ]
    return s


def test_a_lost_gpu_ranks_first_on_its_failed_requests_not_its_excess_share():
    rng = random.Random(3)
    spans, t = [], 1000.0
    for i in range(300):  # normal: alternating GPUs
        spans += _trace(rng, i, t, GPU_A if i % 2 else GPU_B)
        t += 0.5
    start = t
    for i in range(300, 360):
        # GPU B falls off the bus: its first requests fail, then traffic moves to GPU A;
        # meanwhile retrieval is a bit slower (an unrelated excess that owns the latency share).
        lost_phase = i < 306
        gpu = GPU_B if lost_phase and i % 2 == 0 else GPU_A
        spans += _trace(rng, i, t, gpu, failed=gpu == GPU_B, slow_retrieval=2.5)
        t += 0.5
    lost = GpuAnomaly(GPU_B, start + 1.0, None, "GPU lost: its series vanished (XID 79 'fallen off the bus')", 1.0)
    cands = rank_window(spans, start, t, gpu_events=[lost])
    top = cands[0]
    assert top.kind == "gpu" and top.name == GPU_B, [(c.name, c.score) for c in cands[:4]]
    assert top.evidence["gpu_lost"] and top.evidence["failed_traces_on_gpu"] == 3
    assert top.evidence["excess_share"] < 0.1  # it did not win on latency share
    # The same GPU with a non-loss event and no failures stays low.
    calm = [replace(lost, reason="XID 13")]
    healthy = rank_window([s for s in spans if not s.error], start, t, gpu_events=calm)
    gpu = [c for c in healthy if c.kind == "gpu"]
    assert gpu and gpu[0].score < healthy[0].score
