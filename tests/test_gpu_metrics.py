"""GpuMetrics: OTel names, units and attributes from real scrapes; XID counting; lost GPUs; resets; dropouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from otel_llm.collectors import (
    DcgmExporterCollector,
    ExpositionServer,
    F,
    GpuMetrics,
    GpuSample,
    GpuStateStore,
    SimulatedGpus,
    parse_exposition,
)

from otel_llm import semconv as sc

SCRAPES = Path(__file__).parent / "fixtures" / "dcgm" / "scrapes"


class Scripted:
    """A collector that replays (samples, ok) polls."""

    name = "scripted"

    def __init__(self, polls):
        self.polls = list(polls)
        self.last_collect_ok = True
        self.closed = False

    def collect(self):
        samples, self.last_collect_ok = self.polls.pop(0)
        return samples

    def close(self):
        self.closed = True


def _s(uuid="GPU-1", t=0.0, index=0, **fields):
    return GpuSample(uuid=uuid, timestamp=t, fields={getattr(F, k): float(v) for k, v in fields.items()},
                     index=index, model="Tesla T4", host="h")


def _points(telemetry, name, **attrs):
    return [p for p in telemetry.points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]


def _value(telemetry, name, **attrs):
    pts = _points(telemetry, name, **attrs)
    assert len(pts) == 1, (name, attrs, pts)
    return pts[0].value


def test_t4_scrape_as_otel_metrics(telemetry):
    text = (SCRAPES / "t4-loaded-gpu-operator.prom").read_text()
    with ExpositionServer(lambda: text) as server:
        m = GpuMetrics(DcgmExporterCollector(server.url), telemetry.meter_provider, interval_s=1)
        m.poll()
        m.shutdown()
    v = lambda name, **a: _value(telemetry, name, **a)  # noqa: E731
    assert v(sc.HW_POWER) == pytest.approx(68.244)
    assert v(sc.HW_GPU_UTILIZATION, **{sc.HW_GPU_TASK: "general"}) == pytest.approx(0.91)
    assert v(sc.HW_ENERGY) == pytest.approx(15152422.938)
    assert v(sc.HW_TEMPERATURE, **{sc.HW_SENSOR_LOCATION: "gpu"}) == 74
    assert _points(telemetry, sc.HW_TEMPERATURE, **{sc.HW_SENSOR_LOCATION: "memory"}) == []  # a 0 C sensor is no sensor
    assert v(sc.HW_GPU_MEMORY_USAGE) == 5120 * 2**20
    assert v(sc.HW_GPU_MEMORY_LIMIT) == (5120 + 9791 + 447) * 2**20
    assert v(sc.HW_GPU_MEMORY_UTILIZATION) == pytest.approx(5120 / 15358)
    assert v(sc.OTEL_LLM_GPU_CLOCK_SM) == 660e6
    assert v(sc.OTEL_LLM_GPU_GRAPHICS_ACTIVE) == pytest.approx(0.156205)
    assert v(sc.OTEL_LLM_GPU_MEMORY_COPY_UTILIZATION) == pytest.approx(0.73)
    assert v(sc.OTEL_LLM_GPU_PCIE_IO, **{sc.NETWORK_IO_DIRECTION: "receive"}) == 6935930
    assert v(sc.HW_STATUS, **{sc.HW_STATE: "ok"}) == 1 and v(sc.HW_STATUS, **{sc.HW_STATE: "failed"}) == 0
    attrs = telemetry.points(sc.HW_POWER)[0].attributes
    assert attrs[sc.HW_ID] == "GPU-6d5c0ac5-74d7-3130-46f1-e93ed57f469a"
    assert attrs[sc.HW_NAME] == "Tesla T4" and attrs[sc.HW_TYPE] == "gpu" and attrs[sc.HOST_NAME] == "cp-bm14r7"
    assert attrs[sc.OTEL_LLM_GPU_INDEX] == 0 and attrs[sc.HW_DRIVER_VERSION] == "590.48.01"
    assert "pci_bus_id" not in attrs  # not a metric attribute
    assert m.collector._owns_client and telemetry.points(sc.OTEL_LLM_GPU_SCRAPE_ERRORS) == []


def test_vgpu_has_no_power_points_and_h100_carries_k8s_attributes(telemetry):
    vgpu = parse_exposition((SCRAPES / "grid-a100-40c-vgpu.prom").read_text())
    h100 = parse_exposition((SCRAPES / "h100x8-k8s-vllm-sampled.prom").read_text())
    m = GpuMetrics(Scripted([(vgpu + h100, True)]), telemetry.meter_provider, interval_s=1)
    m.poll()
    power_ids = {p.attributes[sc.HW_ID] for p in telemetry.points(sc.HW_POWER)}
    assert vgpu[0].uuid not in power_ids and len(power_ids) == 8
    pod = _points(telemetry, sc.HW_POWER, **{sc.K8S_POD_NAME: "vllm-agg-0-vllmdecodeworker-s65j5"})
    assert len(pod) == 1 and pod[0].value == pytest.approx(113.611)
    assert pod[0].attributes[sc.K8S_NAMESPACE_NAME] == "dynamo-workload"
    assert pod[0].attributes[sc.K8S_CONTAINER_NAME] == "main"


def test_xid_field_changes_are_counted_with_the_code(telemetry, caplog):
    polls = [([_s(t=i, XID=x)], True) for i, x in enumerate([0, 48, 48, 94, 94, 48, 48])]
    polls.insert(0, ([_s(t=-1)], True))  # no XID series yet (the exporter drops blank fields)
    m = GpuMetrics(Scripted(polls), telemetry.meter_provider, interval_s=1)
    with caplog.at_level("WARNING", logger="otel_llm.collectors"):
        for _ in polls:
            m.poll()
    assert _value(telemetry, sc.OTEL_LLM_GPU_XID_EVENTS, **{sc.OTEL_LLM_GPU_XID: 48}) == 2
    assert _value(telemetry, sc.OTEL_LLM_GPU_XID_EVENTS, **{sc.OTEL_LLM_GPU_XID: 94}) == 1
    assert _value(telemetry, sc.HW_ERRORS, **{sc.ERROR_TYPE: "xid"}) == 3
    assert len([r for r in caplog.records if "XID" in r.message]) == 3


def test_counters_stay_monotonic_across_resets(telemetry):
    energies = [1000, 5000, 900, 2900]  # driver reload between poll 2 and 3
    polls = [([_s(t=i, TOTAL_ENERGY=e, PCIE_REPLAY=r)], True) for i, (e, r) in enumerate(zip(energies, [3, 5, 0, 2], strict=True))]
    m = GpuMetrics(Scripted(polls), telemetry.meter_provider, interval_s=1)
    seen = []
    for _ in polls:
        m.poll()
        seen.append((_value(telemetry, sc.HW_ENERGY), _value(telemetry, sc.OTEL_LLM_GPU_PCIE_REPLAYS)))
    assert [e for e, _ in seen] == pytest.approx([1.0, 5.0, 5.9, 7.9])
    assert [r for _, r in seen] == [3, 5, 5, 7]


def test_lost_gpu_reports_failed_status_and_an_event(telemetry, caplog):
    a, b = _s("GPU-a", index=0, GPU_TEMP=50), _s("GPU-b", index=1, GPU_TEMP=51)
    store = GpuStateStore()
    m = GpuMetrics(Scripted([([a, b], True), ([a], True), ([a], True)]), telemetry.meter_provider, interval_s=1,
                   store=store)
    m.poll()
    with caplog.at_level("WARNING", logger="otel_llm.collectors"):
        m.poll()
    assert _value(telemetry, sc.HW_STATUS, **{sc.HW_ID: "GPU-b", sc.HW_STATE: "failed"}) == 1
    assert _value(telemetry, sc.HW_STATUS, **{sc.HW_ID: "GPU-b", sc.HW_STATE: "ok"}) == 0
    assert _value(telemetry, sc.HW_ERRORS, **{sc.HW_ID: "GPU-b", sc.ERROR_TYPE: "gpu_lost"}) == 1
    assert _points(telemetry, sc.HW_TEMPERATURE, **{sc.HW_ID: "GPU-b"}) == []  # no stale values
    assert _value(telemetry, sc.HW_STATUS, **{sc.HW_ID: "GPU-a", sc.HW_STATE: "ok"}) == 1
    assert [e.kind for e in store.events("GPU-b")] == ["lost"]
    assert any("disappeared" in r.message for r in caplog.records)
    m.poll()  # still lost, no second event
    assert [e.kind for e in store.events("GPU-b")] == ["lost"]


def test_failed_poll_exports_no_gpu_points_and_loses_nobody(telemetry):
    a = _s("GPU-a", GPU_TEMP=50)
    col = Scripted([([a], True), ([], False), ([a], True)])
    col.scrape_errors = {"ConnectError": 1}
    m = GpuMetrics(col, telemetry.meter_provider, interval_s=1)
    m.poll()
    m.poll()
    assert telemetry.points(sc.HW_TEMPERATURE) == [] and telemetry.points(sc.HW_STATUS) == []
    assert _value(telemetry, sc.OTEL_LLM_GPU_SCRAPE_ERRORS, **{sc.ERROR_TYPE: "ConnectError"}) == 1
    assert not m.tracker.lost and m.failed_polls == 1
    m.poll()
    assert _value(telemetry, sc.HW_TEMPERATURE) == 50


def test_throttle_state_set_from_bitmask_and_from_violation_counters(telemetry):
    polls = [
        ([_s("GPU-a", CLOCKS_EVENT_REASONS=0x4 | 0x20), _s("GPU-b", index=1, THERMAL_VIOLATION=10)], True),
        ([_s("GPU-a", CLOCKS_EVENT_REASONS=0x4 | 0x20), _s("GPU-b", index=1, THERMAL_VIOLATION=5e9)], True),
    ]
    m = GpuMetrics(Scripted(polls), telemetry.meter_provider, interval_s=1)
    m.poll()
    m.poll()
    active = {(p.attributes[sc.HW_ID], p.attributes[sc.OTEL_LLM_GPU_THROTTLE_REASON])
              for p in telemetry.points(sc.OTEL_LLM_GPU_THROTTLE) if p.value == 1}
    assert active == {("GPU-a", "sw_power_cap"), ("GPU-a", "sw_thermal_slowdown"), ("GPU-b", "sw_thermal_slowdown")}


def test_cardinality_is_bounded(telemetry):
    gpus = [_s(f"GPU-{i}", index=i, GPU_TEMP=40) for i in range(5)]
    m = GpuMetrics(Scripted([(gpus, True)]), telemetry.meter_provider, interval_s=1, max_gpus=3)
    m.poll()
    assert len({p.attributes[sc.HW_ID] for p in telemetry.points(sc.HW_TEMPERATURE)}) == 3
    assert m.tracker.overflow == 2


def test_a_failing_collector_or_listener_never_raises(telemetry):
    class Broken(Scripted):
        def collect(self):
            raise RuntimeError("driver exploded")

    m = GpuMetrics(Broken([]), telemetry.meter_provider, interval_s=1)
    assert m.poll() == []

    def bad_listener(samples, events):
        raise ValueError("listener bug")

    m2 = GpuMetrics(Scripted([([_s(GPU_TEMP=1)], True)]), telemetry.meter_provider, interval_s=1,
                    listeners=[bad_listener])
    assert len(m2.poll()) == 1


def test_background_poller_with_the_simulator_and_shutdown(telemetry):
    sim = SimulatedGpus(2, "L4", seed=3)
    store = GpuStateStore()
    m = GpuMetrics(sim, telemetry.meter_provider, interval_s=0.02, store=store).start()
    import time

    deadline = time.time() + 2
    while m.polls < 3 and time.time() < deadline:
        time.sleep(0.01)
    m.shutdown()
    m.shutdown()  # idempotent
    assert m.polls >= 3
    assert len({p.attributes[sc.HW_ID] for p in telemetry.points(sc.HW_POWER)}) == 2
    assert store.latest(sim.uuids[0]) is not None


def test_interval_validation(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_GPU_POLL_INTERVAL", "soon")
    with pytest.raises(ValueError, match="OTEL_LLM_GPU_POLL_INTERVAL"):
        GpuMetrics(Scripted([]))


def test_start_gpu_metrics_one_call(telemetry, monkeypatch, tmp_path):
    import time

    from otel_llm.collectors import start_gpu_metrics

    monkeypatch.setenv("DCGM_BINDINGS_PATH", str(tmp_path))
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    assert start_gpu_metrics("auto", meter_provider=telemetry.meter_provider) is None  # no source: off, no crash
    assert start_gpu_metrics("nvml", meter_provider=telemetry.meter_provider) is None  # logged, host unaffected
    m = start_gpu_metrics("sim", meter_provider=telemetry.meter_provider, interval_s=0.02, sim_gpus=2)
    try:
        deadline = time.time() + 2
        while m.polls < 2 and time.time() < deadline:
            time.sleep(0.01)
    finally:
        m.shutdown()
    assert len({p.attributes[sc.HW_ID] for p in telemetry.points(sc.HW_STATUS)}) == 2


def test_old_xid79_on_a_reporting_gpu_does_not_fail_it(telemetry):
    m = GpuMetrics(Scripted([([_s(XID=79, GPU_TEMP=40)], True)]), telemetry.meter_provider, interval_s=1)
    m.poll()
    assert _value(telemetry, sc.HW_STATUS, **{sc.HW_STATE: "ok"}) == 1
    assert _value(telemetry, sc.OTEL_LLM_GPU_XID_EVENTS, **{sc.OTEL_LLM_GPU_XID: 79}) == 1
