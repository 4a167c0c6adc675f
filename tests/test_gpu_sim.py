"""The GPU simulator: realistic values and labels, load following, and fault signatures real GPUs show."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from otel_llm.collectors import (
    DcgmExporterCollector,
    F,
    Fault,
    GpuTracker,
    SimulatedGpus,
    TelemetryDropout,
    parse_exposition,
)
from otel_llm.collectors._fields import supported_fields

SCRAPES = Path(__file__).parent / "fixtures" / "dcgm" / "scrapes"


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def _sim(count=2, model="H100", faults=(), load=0.8, **kw):
    clock = Clock()
    sim = SimulatedGpus(count, model, faults=faults, clock=clock, seed=kw.pop("seed", 1), host="sim-node", **kw)
    for i in range(count):
        sim.set_load(i, load, int(40e9) if model == "H100" else None)
    return sim, clock


def _by_index(samples):
    return {s.index: s for s in samples}


def _run(sim, clock, seconds, step=5.0):
    tracker = GpuTracker()
    events = []
    t = 0.0
    while t < seconds:
        clock.advance(step)
        t += step
        events += tracker.update(sim.collect(), ok=sim.last_collect_ok)
    return tracker, events


def test_exposition_round_trips_through_real_http_and_the_exporter_source():
    sim, clock = _sim(3, "H100", k8s={0: ("vllm-0", "llm", "main")})
    clock.advance(30)
    expected = {s.uuid: dict(s.fields) for s in sim.collect()}
    with sim.serve() as server:
        col = DcgmExporterCollector(server.url)
        got = col.collect()
        col.close()
    assert col.last_collect_ok and col.malformed_lines == 0 and col.unknown_metrics == 0
    assert {s.uuid: dict(s.fields) for s in got} == expected
    g0 = _by_index(got)[0]
    assert g0.model == "NVIDIA H100 80GB HBM3" and g0.host == "sim-node"
    assert g0.labels["k8s.pod.name"] == "vllm-0" and g0.labels["k8s.namespace.name"] == "llm"


def test_exposition_looks_like_the_real_scrapes():
    sim, clock = _sim(1, "L40S", load=0.0)
    clock.advance(10)
    text = sim.to_exposition()
    real = (SCRAPES / "l40s-idle-helm-default.prom").read_text()
    label_keys = lambda line: re.findall(r'(\w+)="', line.split("{", 1)[1].split("}")[0])  # noqa: E731
    real_line = next(line for line in real.splitlines() if line.startswith("DCGM_FI_DEV_POWER_USAGE{"))
    sim_line = next(line for line in text.splitlines() if line.startswith("DCGM_FI_DEV_POWER_USAGE{"))
    assert label_keys(sim_line) == label_keys(real_line)
    assert re.search(r"} \d+\.\d{6}$", sim_line)  # six-decimal floats
    assert re.search(r"} \d+$", next(x for x in text.splitlines() if x.startswith("DCGM_FI_DEV_FB_FREE{")))
    assert "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W)." in text
    assert "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter" in text
    assert "DCGM_FI_DEV_XID_ERRORS" not in text  # never had an XID: no series, like the real exporter
    # idle L40S values close to the real idle scrape
    s = parse_exposition(text)[0]
    real_s = parse_exposition(real)[0]
    assert s.fields[F.POWER_USAGE] == pytest.approx(real_s.fields[F.POWER_USAGE], rel=0.05)
    assert s.fields[F.SM_CLOCK] == real_s.fields[F.SM_CLOCK] == 210
    assert s.fields[F.FB_FREE] + s.fields[F.FB_RESERVED] == real_s.fields[F.FB_FREE] + real_s.fields[F.FB_RESERVED]
    assert s.fields[F.MEMORY_TEMP] == 0


@pytest.mark.parametrize("names", ["dcgm46", "legacy"])
def test_other_name_schemes_and_hostname_spelling_parse_to_the_same_ids(names):
    sim, clock = _sim(2, "A100")
    clock.advance(20)
    exporter = {s.uuid: dict(s.fields) for s in parse_exposition(sim.to_exposition())}
    other = parse_exposition(sim.to_exposition(names=names, hostname_label="hostname"))
    assert other and len(other) == 2
    for s in other:
        assert set(s.fields) <= set(exporter[s.uuid])
        for fid, value in s.fields.items():
            if fid not in (F.POWER_USAGE, F.GPU_UTIL) and fid < 1000 and fid not in (F.TOTAL_ENERGY, F.POWER_VIOLATION):
                assert value == pytest.approx(exporter[s.uuid][fid], rel=0.05, abs=2)
    if names == "dcgm46":
        assert "DCGM_FI_DEV_BOARD_POWER_WATTS" in sim.to_exposition(names=names)
        assert all(s.host == "sim-node" for s in other)


def test_only_supported_fields_are_emitted():
    t4, _ = _sim(1, "T4")
    assert not {F.ROW_REMAP_FAILED, F.ROW_REMAP_PENDING} & set(t4.fields)  # Turing: no row remapping
    l4 = SimulatedGpus(1, "L4", fields=(F.GPU_TEMP, F.FP64_ACTIVE, F.FP32_ACTIVE), seed=0)
    assert F.FP64_ACTIVE in supported_fields()["NVIDIA L4"][1]
    assert l4.fields == (F.GPU_TEMP, F.FP32_ACTIVE)
    h100, _ = _sim(1, "H100")
    assert {F.NVLINK_TX_BYTES, F.SM_ACTIVE, F.SM_OCCUPANCY, F.CLOCKS_EVENT_REASONS} <= set(h100.fields)
    assert len(h100.fields) >= 30


def test_load_drives_power_clocks_temperature_and_activity():
    sim, clock = _sim(2, "H100", load=0.0)
    sim.set_load(1, 0.9, int(60e9))
    _run(sim, clock, 120)
    g = _by_index(sim.collect())
    idle, busy = g[0].fields, g[1].fields
    assert 60 <= idle[F.POWER_USAGE] <= 75 and idle[F.SM_CLOCK] == 345  # like the idle H100s in the scrape
    assert busy[F.POWER_USAGE] > 4 * idle[F.POWER_USAGE] and busy[F.SM_CLOCK] == 1980
    assert busy[F.GPU_TEMP] > idle[F.GPU_TEMP] + 20
    assert busy[F.SM_ACTIVE] > 0.7 and idle[F.SM_ACTIVE] == 0
    assert busy[F.FB_USED] == pytest.approx(60e9 / 2**20, abs=1)
    assert int(idle[F.CLOCKS_EVENT_REASONS]) == 0x1 and int(busy[F.CLOCKS_EVENT_REASONS]) == 0


def test_observed_requests_raise_utilization():
    sim, clock = _sim(1, "L4", load=0.0)
    for _ in range(10):
        clock.advance(1.0)
        sim.observe_request(0, 0.6)
    s = sim.collect()[0]
    assert s.fields[F.GPU_UTIL] == pytest.approx(60, abs=4)
    clock.advance(60)  # requests left the window: idle again
    assert sim.collect()[0].fields[F.GPU_UTIL] == 0


def test_t4_under_full_load_power_caps_like_the_real_scrape():
    sim, clock = _sim(1, "T4", load=0.91)
    _run(sim, clock, 300)
    f = sim.collect()[0].fields
    assert f[F.POWER_USAGE] == pytest.approx(68.2, abs=1.0)  # real: 68.244 W at a 70 W limit
    assert f[F.SM_CLOCK] == pytest.approx(660, abs=60)  # real: 660 MHz
    assert f[F.GPU_TEMP] == pytest.approx(74, abs=3)  # real: 74 C
    assert f[F.MEM_CLOCK] == 5000
    assert int(f[F.CLOCKS_EVENT_REASONS]) & 0x4  # sw power cap
    assert sim.slowdown_factor(0) > 2.0


def test_thermal_fault_signature():
    sim, clock = _sim(2, "H100", faults=[Fault("thermal", gpu=1, start_s=30)], load=0.6)
    tracker, events = _run(sim, clock, 200)
    g = _by_index(sim.collect())
    hot, ok = g[1].fields, g[0].fields
    assert hot[F.GPU_TEMP] >= 87 > ok[F.GPU_TEMP]
    assert hot[F.SM_CLOCK] <= 0.55 * 1980 and ok[F.SM_CLOCK] == 1980
    assert int(hot[F.CLOCKS_EVENT_REASONS]) & 0x20 and not int(ok[F.CLOCKS_EVENT_REASONS]) & 0x20
    assert hot[F.THERMAL_VIOLATION] > 0 and ok[F.THERMAL_VIOLATION] == 0
    assert sim.slowdown_factor(1) > 1.5 and sim.slowdown_factor(0) == 1.0
    assert "sw_thermal_slowdown" in tracker.throttle[g[1].key]
    starts = [e for e in events if e.kind == "throttle_start"]
    assert [e.key for e in starts] == [g[1].uuid]


def test_power_cap_fault_pins_power_at_the_lowered_limit():
    sim, clock = _sim(1, "A100", faults=["power_cap:0@10"], load=0.3)
    clock.advance(5)
    before = sim.collect()[0].fields
    _run(sim, clock, 60)
    f = sim.collect()[0].fields
    assert f[F.POWER_USAGE] == pytest.approx(0.6 * 400 * 0.975, rel=0.02)
    assert f[F.SM_CLOCK] < before[F.SM_CLOCK]
    assert int(f[F.CLOCKS_EVENT_REASONS]) & 0x4 and not int(before[F.CLOCKS_EVENT_REASONS]) & 0x4
    assert f[F.POWER_VIOLATION] > before[F.POWER_VIOLATION]


def test_xid79_gpu_falls_off_the_bus():
    sim, clock = _sim(2, "H100", faults=["xid79:1@20"])
    tracker, events = _run(sim, clock, 15)
    assert len(tracker.latest) == 2
    uuid1 = sim.uuids[1]
    clock.advance(10)
    samples = sim.collect()
    events = tracker.update(samples, ok=sim.last_collect_ok)
    assert [s.index for s in samples] == [0]
    assert uuid1 not in sim.to_exposition()  # its series vanished from the exposition too
    assert [e.kind for e in events] == ["lost"] and events[0].key == uuid1
    assert tracker.state(uuid1) == "failed"
    assert sim.is_lost(1) and not sim.is_lost(0)
    assert math.isinf(sim.slowdown_factor(1))


@pytest.mark.parametrize(
    "kind, field, expected_state",
    [("xid48", F.ECC_DBE_VOL, "degraded"), ("xid94", F.ECC_DBE_VOL, "degraded"),
     ("xid95", F.ECC_DBE_VOL, "failed"), ("xid63", F.ROW_REMAP_UNCORRECTABLE, "degraded")],
)
def test_ecc_and_row_remap_xids(kind, field, expected_state):
    code = int(kind[3:])
    sim, clock = _sim(1, "H100", faults=[f"{kind}:0@20"])
    tracker, _ = _run(sim, clock, 15)
    before = sim.collect()[0].fields
    assert F.XID not in before and before[field] == 0
    tracker2, events = _run(sim, clock, 30)
    f = sim.collect()[0].fields
    assert f[F.XID] == code and f[field] == 1  # counted once, not once per poll
    assert [e.attributes["xid"] for e in events if e.kind == "xid"] == [code]
    assert tracker2.state(sim.uuids[0]) == expected_state
    if kind == "xid63":
        assert f[F.ROW_REMAP_PENDING] == 1


def test_xid64_row_remap_failure_fails_the_gpu():
    sim, clock = _sim(1, "A100", faults=["xid64:0@5"])
    tracker, _ = _run(sim, clock, 20)
    assert sim.collect()[0].fields[F.ROW_REMAP_FAILED] == 1
    assert tracker.state(sim.uuids[0]) == "failed"


def test_xid74_nvlink_errors_and_traffic_drop():
    sim, clock = _sim(2, "H100", faults=["xid74:0@10"])
    clock.advance(5)
    before = _by_index(sim.collect())[0].fields
    assert before[F.NVLINK_TX_BYTES] > 1e9
    _run(sim, clock, 30)
    f = _by_index(sim.collect())[0].fields
    assert f[F.XID] == 74 and f[F.NVLINK_CRC_FLIT_ERRORS] > 100 and f[F.NVLINK_REPLAY_ERRORS] > 10
    assert f[F.NVLINK_TX_BYTES] == 0
    assert sim.slowdown_factor(0) == pytest.approx(1.5) and sim.slowdown_factor(1) == 1.0


def test_pcie_replay_storm():
    sim, clock = _sim(1, "L40S", faults=["pcie_replay:0@0+60"])
    _run(sim, clock, 30)
    mid = sim.collect()[0].fields[F.PCIE_REPLAY]
    assert mid > 3000
    _run(sim, clock, 60)
    after = sim.collect()[0].fields[F.PCIE_REPLAY]
    assert after >= mid and after < mid + 200 * 35  # the storm ended at 60 s
    assert sim.slowdown_factor(0) == 1.0


def test_memory_growth_to_oom():
    sim, clock = _sim(1, "L4", faults=["memory_leak:0@0"], load=0.5)
    clock.advance(20)
    mid = sim.collect()[0].fields
    assert 0 < mid[F.FB_USED] < 23033 - 470 and not sim.is_out_of_memory(0)
    _run(sim, clock, 60)
    f = sim.collect()[0].fields
    assert f[F.FB_FREE] <= 1 and f[F.FB_USED] == pytest.approx(23033 - 470, abs=1)
    assert sim.is_out_of_memory(0)


def test_dropout_is_no_data_not_a_lost_gpu():
    sim, clock = _sim(2, "H100", faults=["dropout@20+10"])
    tracker, _ = _run(sim, clock, 15)
    clock.advance(10)
    assert sim.collect() == [] and sim.last_collect_ok is False
    events = tracker.update([], ok=False)
    assert events == [] and len(tracker.latest) == 2 and not tracker.lost
    with pytest.raises(TelemetryDropout):
        sim.to_exposition()
    with sim.serve() as server:
        col = DcgmExporterCollector(server.url)
        assert col.collect() == [] and col.scrape_errors["HTTPStatusError"] == 1
        clock.advance(20)  # dropout over
        col._next_attempt = 0.0  # skip the backoff wait in this test
        assert len(col.collect()) == 2
        col.close()
    assert sim.slowdown_factor(0) == 1.0


def test_seeded_and_deterministic():
    a, ca = _sim(2, "H100", seed=7)
    b, cb = _sim(2, "H100", seed=7)
    ca.advance(10)
    cb.advance(10)
    assert a.uuids == b.uuids
    assert [dict(s.fields) for s in a.collect()] == [dict(s.fields) for s in b.collect()]
    assert a.uuids != _sim(2, "H100", seed=8)[0].uuids


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError, match="unknown simulated GPU model"):
        SimulatedGpus(1, "V100")
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.parse("meltdown:0@1")
    with pytest.raises(ValueError):
        SimulatedGpus(0)
    f = Fault.parse("thermal:all@30+120")
    assert (f.kind, f.gpu, f.start_s, f.duration_s) == ("thermal", None, 30.0, 120.0)


def test_xid79_over_http_reaches_otel_as_a_failed_gpu(telemetry):
    from otel_llm.collectors import GpuMetrics, GpuStateStore

    from otel_llm import semconv as sc

    sim, clock = _sim(2, "H100", faults=["xid79:1@20", "thermal:0@0"])
    store = GpuStateStore()
    with sim.serve() as server:
        m = GpuMetrics(DcgmExporterCollector(server.url), telemetry.meter_provider, interval_s=1, store=store)
        for _ in range(12):
            clock.advance(5)
            m.poll()
        m.shutdown()
    status = {(p.attributes[sc.HW_ID], p.attributes[sc.HW_STATE]): p.value for p in telemetry.points(sc.HW_STATUS)}
    assert status[(sim.uuids[1], "failed")] == 1 and status[(sim.uuids[0], "ok")] == 1
    assert [e.kind for e in store.events(sim.uuids[1])] == ["lost"]
    assert "throttle_start" in [e.kind for e in store.events(sim.uuids[0])]
    t_lost = store.events(sim.uuids[1])[0].timestamp
    assert store.at(sim.uuids[1], t_lost).timestamp < t_lost  # the last sample before it vanished
