"""Workload replay: trace parsing, time compression, thinning, token scaling, bounded replay."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from otel_llm.demo._workload import (
    ReplayStats,
    RequestResult,
    WorkloadRequest,
    WorkloadSpec,
    dispersion,
    plan_workload,
    read_trace,
    replay,
)
from otel_llm.workloads import ATTRIBUTION, default_workload_path


@pytest.fixture(scope="module")
def rows():
    return read_trace(default_workload_path())


def test_embedded_slice_is_the_azure_trace_with_its_licence(rows):
    folder = default_workload_path().parent
    assert "Attribution 4.0 International" in (folder / "LICENSE.CC-BY-4.0.txt").read_text()[:64]
    readme = (folder / "README.md").read_text()
    assert "CC BY 4.0" in readme and "AzurePublicDataset" in readme and "Splitwise" in readme
    assert "CC BY 4.0" in ATTRIBUTION
    assert len(rows) == 6033
    assert 1190 < rows[-1].offset <= 1200  # a 20-minute slice
    assert rows == sorted(rows, key=lambda r: r.offset)
    assert default_workload_path().stat().st_size < 300_000


def test_time_compression_keeps_the_arrival_pattern(rows):
    spec = WorkloadSpec(speedup=4.0, max_rate=None)
    plan = plan_workload(rows, spec, duration_s=60.0)
    expected = [r.offset / 4.0 for r in rows if r.offset / 4.0 < 60.0]
    assert [p.at for p in plan] == pytest.approx(expected)
    # burstiness of the compressed stream equals the source's at the matching window size
    src = [r.offset for r in rows if r.offset < 240.0]
    assert dispersion([p.at for p in plan], 1.0) == pytest.approx(dispersion(src, 4.0), rel=1e-9)


def test_thinning_caps_the_rate_and_keeps_burstiness(rows):
    full = plan_workload(rows, WorkloadSpec(speedup=4.0, max_rate=None), duration_s=300.0)
    thin = plan_workload(rows, WorkloadSpec(speedup=4.0, max_rate=3.0, seed=1), duration_s=300.0)
    rate = len(thin) / 300.0
    assert 2.5 < rate < 3.5
    assert len(full) / 300.0 > 15
    # independent thinning of a (near-)Poisson stream keeps its rate curve: the per-30 s counts
    # of the thinned stream track the full stream's (correlation), and it stays at least Poisson-like
    def counts(plan):
        c = [0] * 10
        for p in plan:
            c[int(p.at // 30)] += 1
        return c

    assert statistics.correlation(counts(full), counts(thin)) > 0.6
    assert dispersion([p.at for p in thin], 5.0) > 0.7


def test_token_scaling_keeps_shape_and_caps(rows):
    spec = WorkloadSpec(speedup=4.0, max_rate=None)
    plan = plan_workload(rows, spec, duration_s=300.0)
    src_ctx = sorted(p.source_context_tokens for p in plan)
    ctx = sorted(p.prompt_tokens for p in plan)
    out = [p.max_tokens for p in plan]
    assert max(ctx) <= spec.prompt_cap and min(ctx) >= spec.min_prompt_tokens
    assert max(out) <= spec.output_cap and min(out) >= spec.min_output_tokens
    med_src = statistics.median(src_ctx)
    assert statistics.median(ctx) == pytest.approx(med_src * spec.prompt_scale, rel=0.1)
    # monotone mapping: ranks are kept (shape of the distribution)
    pairs = sorted((p.source_context_tokens, p.prompt_tokens) for p in plan)
    assert all(a[1] <= b[1] for a, b in zip(pairs, pairs[1:], strict=False))
    assert 0.2 < sum(p.retrieval for p in plan) / len(plan) < 0.4


def test_wraps_around_when_the_run_outlasts_the_trace(rows):
    plan = plan_workload(rows[:100], WorkloadSpec(speedup=1.0, max_rate=None), duration_s=rows[99].offset * 2.5)
    assert len(plan) > 200
    assert all(b.at >= a.at for a, b in zip(plan, plan[1:], strict=False))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46.6805900,3\n", "missing column(s) GeneratedTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,3,4\n2023-11-16 18:15:46,3,4\n", "line 2"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,-3,4\n2023-11-16 18:15:47,3,4\n", ">= 0"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,4\n", "at least 2"),
    ],
)
def test_bad_trace_files_get_clear_errors(tmp_path, content, message):
    f = tmp_path / "t.csv"
    f.write_text(content)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_trace(f)


def test_any_csv_with_the_three_columns_and_unix_timestamps(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens,Extra\n100.0,10,5,x\n100.5,20,6,y\n102.0,30,7,z\n")
    rows = read_trace(f)
    assert [r.offset for r in rows] == [0.0, 0.5, 2.0]


@pytest.mark.parametrize("kw", [{"speedup": 0}, {"max_rate": -1}, {"retrieval_fraction": 2}, {"prompt_scale": 0}])
def test_spec_validation(kw):
    with pytest.raises(ValueError):
        WorkloadSpec(**kw)


async def test_replay_is_open_loop_bounded_and_counts_drops():
    in_flight = 0
    peak = 0

    async def send(req: WorkloadRequest) -> RequestResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return RequestResult(req, sent_at=time.time(), status=200)

    plan = [WorkloadRequest(at=0.001 * i, prompt_tokens=4, max_tokens=4) for i in range(40)]
    stats = await replay(plan, send, concurrency=4, max_pending=10)
    assert peak <= 4
    assert stats.sent + stats.dropped == 40
    assert stats.dropped > 0 and stats.ok == stats.sent


async def test_replay_stops_and_abandons_in_flight_within_the_drain_timeout():
    async def send(req: WorkloadRequest) -> RequestResult:
        await asyncio.sleep(10)
        return RequestResult(req, sent_at=time.time(), status=200)

    stop = asyncio.Event()
    plan = [WorkloadRequest(at=0.01 * i, prompt_tokens=4, max_tokens=4) for i in range(5)] + [
        WorkloadRequest(at=30.0, prompt_tokens=4, max_tokens=4)]
    asyncio.get_running_loop().call_later(0.2, stop.set)
    t = time.monotonic()
    stats: ReplayStats = await replay(plan, send, stop=stop, drain_timeout_s=0.2)
    assert time.monotonic() - t < 2.0
    assert stats.sent == 5 and stats.abandoned == 5
