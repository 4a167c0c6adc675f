"""Fault schedules: YAML validation (table-driven), the default schedule, ground truth, clean intervals."""

from __future__ import annotations

import pytest

from otel_llm.demo._faults import (
    KINDS,
    Fault,
    clean_intervals,
    default_schedule,
    load_faults,
    parse_faults,
    random_schedule,
)
from otel_llm.demo._runner import apply_bursts
from otel_llm.demo._workload import WorkloadRequest

GPUS = ["GPU-aaaa", "GPU-bbbb"]


def test_full_yaml_example_parses(tmp_path):
    f = tmp_path / "faults.yaml"
    f.write_text(
        "faults:\n"
        "  - {kind: gpu_throttle, start: 60, duration: 40, gpu: 1}\n"
        "  - {kind: slow_dependency, start: '50%', end: '60%', factor: 8}\n"
        "  - {kind: gpu_xid, start: 120s, duration: 20, gpu: 0, xid: 79, name: bus drop}\n"
        "  - {kind: burst, start: 150, duration: 15, multiplier: 4}\n"
    )
    faults = load_faults(f, 180.0)
    assert [x.kind for x in faults] == ["gpu_throttle", "slow_dependency", "gpu_xid", "burst"]
    assert faults[1].start == 90.0 and faults[1].end == 108.0 and faults[1].params["factor"] == 8.0
    assert faults[2].label() == "bus drop" and faults[2].params == {"gpu": 0, "xid": 79}
    assert faults[0].root_cause(GPUS).gpu == "GPU-bbbb"
    assert faults[1].root_cause(GPUS).to_dict() == {"kind": "downstream", "service": "retrieval"}
    assert faults[3].root_cause(GPUS).operation == "queue"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"faults": [{"kind": "meteor", "start": 1, "duration": 2}]}, "kind 'meteor' is not one of"),
        ({"faults": [{"kind": "burst", "duration": 2}]}, "'start' is required"),
        ({"faults": [{"kind": "burst", "start": 5}]}, "'duration' \\(or 'end'\\) is required"),
        ({"faults": [{"kind": "burst", "start": 5, "end": 4}]}, "must end after it starts"),
        ({"faults": [{"kind": "burst", "start": 5, "end": 9, "duration": 4}]}, "not both"),
        ({"faults": [{"kind": "burst", "start": 500, "duration": 4}]}, "after the run ends"),
        ({"faults": [{"kind": "burst", "start": "soon", "duration": 4}]}, "must be seconds"),
        ({"faults": [{"kind": "burst", "start": "x%", "duration": 4}]}, "not a percentage"),
        ({"faults": [{"kind": "gpu_xid", "start": 5, "duration": 4, "gpu": 7}]}, "gpu must be a GPU index in 0..1"),
        ({"faults": [{"kind": "gpu_throttle", "start": 5, "duration": 4, "factor": 3}]}, "unknown key\\(s\\) \\['factor'\\]"),
        ({"faults": [{"kind": "slow_dependency", "start": 5, "duration": 4, "factor": 0.5}]}, "factor must be a number >= 1"),
        ({"faults": [{"kind": "slow_dependency", "start": 5, "duration": 4, "service": "db"}]}, "service must be 'retrieval'"),
        ({"faults": [{"kind": "gpu_xid", "start": 5, "duration": 4, "xid": "79"}]}, "xid must be a positive integer"),
        ({"faults": "burst"}, "must be a list"),
        ({"faults": ["burst"]}, "must be a mapping"),
        ({"fault": []}, "unknown top-level key"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(doc, message):
    with pytest.raises(ValueError, match=message):
        parse_faults(doc, 180.0, n_gpus=2, source="f.yaml")


def test_error_names_the_file_and_entry(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("faults:\n  - {kind: burst, start: 1, duration: 2}\n  - {kind: nope, start: 1, duration: 2}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: faults\[1\]"):
        load_faults(f, 60.0)
    f.write_text("faults: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_faults(f, 60.0)
    with pytest.raises(ValueError, match="not 'default', 'none' or an existing YAML file"):
        load_faults(tmp_path / "missing.yaml", 60.0)


def test_none_and_empty_schedules():
    assert load_faults("none", 180.0) == []
    assert parse_faults({"faults": []}, 180.0) == []
    assert parse_faults(None, 180.0) == []


@pytest.mark.parametrize("duration", [60.0, 180.0, 600.0])
def test_default_schedule_has_every_kind_after_a_clean_warmup_without_overlap(duration):
    faults = default_schedule(duration)
    assert sorted(f.kind for f in faults) == sorted(KINDS)
    assert faults[0].start >= 0.25 * duration
    assert all(a.end <= b.start for a, b in zip(faults, faults[1:], strict=False))
    assert faults[-1].end <= duration


@pytest.mark.parametrize("seed", range(5))
def test_random_schedules_are_seeded_and_valid(seed):
    a = random_schedule(180.0, seed=seed)
    assert a == random_schedule(180.0, seed=seed)
    assert sorted(f.kind for f in a) == sorted(KINDS)
    assert all(x.end <= y.start for x, y in zip(a, a[1:], strict=False))
    assert a[-1].end <= 180.0 and a[0].start >= 50.0


def test_clean_intervals_exclude_faults_and_their_settling_time():
    faults = [Fault("burst", 10, 20), Fault("gpu_xid", 25, 30, {"gpu": 0})]
    assert clean_intervals(faults, 60.0, settle_s=10.0) == [(0.0, 10), (40, 60.0)]


def test_bursts_multiply_arrivals_inside_the_window_only():
    plan = [WorkloadRequest(at=i * 0.5, prompt_tokens=4, max_tokens=4) for i in range(40)]
    out = apply_bursts(plan, [Fault("burst", 5.0, 10.0, {"multiplier": 4.0})], seed=0)
    inside = [r for r in out if 5.0 <= r.at < 10.0]
    assert len(inside) == 4 * 10
    assert len(out) - len(inside) == 30
    assert [r.index for r in out] == list(range(len(out)))
