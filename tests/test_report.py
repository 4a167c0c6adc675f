"""The HTML report: self-contained, plots present, and it renders in headless Chromium."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from otel_llm.processors._model import Detection, Incident, RootCauseCandidate, Severity

from otel_llm.demo import _series as S
from otel_llm.demo._faults import default_schedule
from otel_llm.demo._pipeline import PipelineRecord, RcaSnapshot
from otel_llm.demo._report import write_report
from otel_llm.demo._scorecard import score_run

T0 = 1_700_000_000.0
GPUS = ["GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-000000000000"]


def _record(duration: float) -> tuple[PipelineRecord, list]:
    faults = default_schedule(duration)
    rec = PipelineRecord()

    def series(metric: str, attrs: dict, base: float, bump: dict[str, float]) -> None:
        key = S.series_key(metric, attrs)
        rows = []
        for i in range(int(duration // 2)):
            t = 2.0 * (i + 1)
            v = base * (1 + 0.1 * math.sin(i))
            for f in faults:
                if f.start <= t < f.end and f.kind in bump:
                    v *= bump[f.kind]
            band = (base * 0.7, base, base * 1.4) if t > 40 else (math.nan,) * 3
            rows.append((T0 + t, v, *band))
        rec.bands[key] = rows

    gw = {"service.name": "llm-gateway"}
    series(S.REQUEST_RATE, gw, 3.0, {"burst": 4.0})
    series(S.TTFT_P95, gw, 0.05, {"gpu_throttle": 3.0, "slow_dependency": 5.0, "burst": 8.0})
    for i, g in enumerate(GPUS):
        series(S.TPOT_P95, {"service.name": "llm-server", S.INSTANCE: f"replica-{i}"}, 0.005, {"gpu_throttle": 1.8})
        series(S.GPU_TEMP, {"hw.id": g}, 45.0, {"gpu_throttle": 1.9})
        series(S.GPU_SM_CLOCK, {"hw.id": g}, 1.98e9, {"gpu_throttle": 0.55})
    series(S.QUEUE_P95, {"service.name": "llm-server"}, 0.01, {"burst": 30.0})
    series(S.DURATION_P95, {"service.name": "retrieval"}, 0.012, {"slow_dependency": 10.0})
    for f in faults:
        d = Detection(kind="threshold", series=S.series_key(S.TTFT_P95, gw), start=T0 + f.start + 4,
                      end=T0 + f.end + 2, score=0.8, severity=Severity.WARNING, metric=S.TTFT_P95,
                      explanation=f"TTFT above band during {f.kind}")
        rec.detections.append(d)
        cand = RootCauseCandidate(kind="downstream", name="retrieval:POST /search", score=0.9,
                                  reason="self time 10x its baseline", service="retrieval", operation="POST /search",
                                  evidence={"z": 12.3, "traces": 14})
        inc = Incident(id=f"inc-{f.kind}", start=d.start, detections=[d], candidates=[cand], end=d.end,
                       title=d.explanation)
        rec.incidents[inc.id] = inc
        rec.rca.append(RcaSnapshot(T0 + f.start + 6, inc.id, T0 + f.start, [cand]))
    return rec, faults


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, dict]:
    duration = 180.0
    rec, faults = _record(duration)
    out = tmp_path_factory.mktemp("report")
    run = SimpleNamespace(cfg=SimpleNamespace(duration_s=duration, speedup=4.0, faults=faults), t0_wall=T0,
                          gpus=SimpleNamespace(uuids=GPUS), stats=SimpleNamespace(sent=500),
                          sink=SimpleNamespace(readable=[]))
    card = score_run(faults=faults, detections=rec.detections, rca=rec.rca, gpu_uuids=GPUS, t0=T0,
                     duration_s=duration, speedup=4.0)
    card["run"] = {"components": {"server": "test"}}
    summary = {"traces": 500, "spans": 3500, "operations": []}
    path = write_report(run, SimpleNamespace(record=rec), card, summary, out)
    return path, card


def test_scorecard_matches_the_synthetic_truth(report):
    _, card = report
    s = card["summary"]
    assert s["faults"] == 4 and s["detected"] == 4 and s["false_alarms"] == 0
    # the single candidate names retrieval: right for the slow dependency only
    assert [f["rca_top1"] for f in card["faults"]] == [f["kind"] == "slow_dependency" for f in card["faults"]]
    assert all(f["delay_s"] == pytest.approx(4.0) for f in card["faults"])


def test_report_is_self_contained_with_plots(report):
    path, _ = report
    html = path.read_text()
    assert html.count("<svg") == 5  # four series figures + the incident timeline
    import re

    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html)  # nothing fetched from anywhere
    assert "<script" not in html
    for inc in ("inc-gpu_throttle", "inc-burst", "retrieval:POST /search"):
        assert inc in html


def _chromium(require) -> str:
    return require.binary("chromium", "chromium-browser", hint="apt-get install chromium")


def _run_chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


def test_report_renders_in_headless_chromium_with_visible_plots(report, require, tmp_path):
    binary = _chromium(require)
    path, _ = report
    shot = tmp_path / "shot.png"
    _run_chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", path.as_uri())
    assert shot.exists(), "chromium wrote no screenshot"
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(shot)[..., :3]
    assert img.shape[0] == 2400 and img.shape[1] == 1280
    # the dark header band is at the top; below it, plot areas are drawn (not a blank page)
    assert img[:60].mean() < 0.4
    body = img[400:2400]
    rows_with_ink = (np.abs(body - 1.0).sum(axis=2) > 0.3).mean(axis=1) > 0.02
    assert rows_with_ink.mean() > 0.5
    # coloured fault windows and series lines exist (not only greys)
    colour = (body.max(axis=2) - body.min(axis=2)) > 0.15
    assert colour.mean() > 0.01


def test_report_dom_in_chromium_has_the_plot_elements(report, require, tmp_path):
    binary = _chromium(require)
    path, _ = report
    dom = _run_chromium(binary, tmp_path, "--dump-dom", path.as_uri()).stdout
    assert dom.count("<svg") == 5
    assert dom.count("<path") > 100
    assert "Incidents and root-cause rankings" in dom


def test_a_detection_during_one_fault_does_not_count_for_the_next_that_follows_it():
    """The 2 s lead before a fault stops at the previous fault's interval (adjacent faults in the test demo)."""
    from otel_llm.demo import Fault

    faults = [Fault("slow_dependency", 11.0, 17.0, {"service": "retrieval", "factor": 12.0}),
              Fault("gpu_xid", 17.0, 22.0, {"gpu": 1, "xid": 79})]

    def det(t: float, series: str) -> Detection:
        return Detection(kind="threshold", series=series, start=T0 + t, severity=Severity.WARNING, score=0.8)

    during_first = det(16.7, "retrieval duration")  # 0.3 s before the XID, while the slowdown is on
    gpu = det(17.4, "hw.status")
    card = score_run(faults=faults, detections=[det(12.0, "ttft"), during_first, gpu], rca=[], gpu_uuids=GPUS,
                     t0=T0, duration_s=30.0, speedup=4.0)
    first, xid = card["faults"]
    assert first["detections"] == 2 and xid["detections"] == 1
    assert xid["first_detection"]["series"] == "hw.status" and xid["delay_s"] == pytest.approx(0.4)
    lone = score_run(faults=faults[1:], detections=[during_first, gpu], rca=[], gpu_uuids=GPUS, t0=T0,
                     duration_s=30.0, speedup=4.0)
    assert lone["faults"][0]["delay_s"] == pytest.approx(-0.3)  # with no fault before it, the lead still applies
