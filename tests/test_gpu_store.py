"""GpuStateStore: "state of GPU U at time t", bounded memory, events for RCA."""

from __future__ import annotations

import pytest
from otel_llm.collectors import F, GpuEvent, GpuSample, GpuStateStore


def _s(uuid, t, temp, **labels):
    return GpuSample(uuid=uuid, timestamp=t, fields={F.GPU_TEMP: temp}, labels=labels)


def test_at_returns_the_newest_sample_at_or_before_t():
    store = GpuStateStore()
    store.add([_s("GPU-a", 10, 40), _s("GPU-b", 10, 50)])
    store.add([_s("GPU-a", 15, 41)])
    store.add([_s("GPU-a", 20, 42)])
    assert store.at("GPU-a", 9.9) is None
    assert store.at("GPU-a", 10).fields[F.GPU_TEMP] == 40
    assert store.at("GPU-a", 17.5).fields[F.GPU_TEMP] == 41
    assert store.at("GPU-a", 1e9).fields[F.GPU_TEMP] == 42
    assert store.at("GPU-a", 40, max_age_s=5) is None  # silent for 20 s: unknown, not "fine"
    assert store.at("GPU-b", 12).fields[F.GPU_TEMP] == 50
    assert store.at("GPU-zzz", 12) is None
    assert [s.timestamp for s in store.window("GPU-a", 12, 20)] == [15, 20]
    assert store.latest("GPU-a").timestamp == 20


def test_memory_is_bounded():
    store = GpuStateStore(max_samples=3, max_gpus=2)
    for t in range(10):
        store.add([_s("GPU-a", t, t), _s("GPU-b", t, t), _s("GPU-c", t, t)])
    assert len(store) == 6 and store.dropped == 10
    assert [s.timestamp for s in store.window("GPU-a", 0, 100)] == [7, 8, 9]
    assert store.at("GPU-a", 5) is None  # evicted
    assert store.uuids() == ["GPU-a", "GPU-b"]


def test_out_of_order_samples_are_ignored_and_mig_instances_resolve():
    store = GpuStateStore()
    store.add([_s("GPU-a", 10, 40)])
    store.add([_s("GPU-a", 5, 99)])
    assert store.at("GPU-a", 7) is None and len(store) == 1
    store.add([_s("GPU-m", 10, 60, **{"otel_llm.gpu.mig.instance": "7"})])
    assert store.at("GPU-m/7", 11).fields[F.GPU_TEMP] == 60
    assert store.at("GPU-m", 11).fields[F.GPU_TEMP] == 60  # parent UUID finds its (first) instance


def test_events_filter_by_gpu_and_time():
    store = GpuStateStore(max_events=3)
    evs = [GpuEvent(1, "GPU-a", "xid", {"xid": 48}), GpuEvent(2, "GPU-b", "lost"),
           GpuEvent(3, "GPU-a", "throttle_start", {"reasons": ["sw_thermal_slowdown"]}),
           GpuEvent(4, "GPU-a/1", "xid", {"xid": 94})]
    store.add([], evs)
    assert [e.timestamp for e in store.events()] == [2, 3, 4]  # bounded: oldest dropped
    assert [e.kind for e in store.events("GPU-a")] == ["throttle_start", "xid"]
    assert [e.key for e in store.events(t0=2, t1=2)] == ["GPU-b"]


def test_bad_bounds_rejected():
    with pytest.raises(ValueError):
        GpuStateStore(max_samples=0)
