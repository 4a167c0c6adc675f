"""``otel-llm eval anomaly`` end to end on the small NAB fixture."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from otel_llm.cli._app import build_app

FIXTURE = Path(__file__).parent / "fixtures" / "nab"
KEY = "middle-tier-api-dependency-latency/outbound-01.csv"


@pytest.mark.parametrize("detector", ["threshold", "pyod"])
def test_eval_anomaly_end_to_end(tmp_path, detector):
    out = tmp_path / "results"
    result = CliRunner().invoke(
        build_app(), ["eval", "anomaly", "--nab", str(FIXTURE), "--detector", detector, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert summary["detector"] == detector and summary["series"] == 1 and summary["points"] == 720
    assert set(summary["nab"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    for v in summary["nab"].values():
        assert -1000 < v <= 100
    for k in ("precision", "recall", "f1"):
        assert 0.0 <= summary["pointwise"][k] <= 1.0
        assert 0.0 <= summary["event"][k] <= 1.0
    assert summary["seconds_per_10k_points"] > 0
    rows = list(csv.DictReader((out / KEY).open()))
    assert len(rows) == 720
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "alarm"]
    assert {r["alarm"] for r in rows} <= {"0", "1"}
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert all(r["alarm"] == "0" for r in rows[:30])  # warm-up: no alarms
    # the scorer sees exactly the alarms written
    from otel_llm.evaluation.nab import load_nab, score_series, summarize

    series = load_nab(FIXTURE)[0]
    rescored = summarize([score_series([int(r["alarm"]) for r in rows], series.windows, series.times)])
    assert rescored["nab"]["standard"] == pytest.approx(summary["nab"]["standard"])


def test_no_look_ahead_the_prefix_run_matches_the_full_run():
    from dataclasses import replace

    from otel_llm.evaluation.anomaly import run_threshold
    from otel_llm.evaluation.nab import load_nab

    s = load_nab(FIXTURE)[0]
    full_scores, full_alarms = run_threshold(s)
    cut = replace(s, timestamps=s.timestamps[:400], times=s.times[:400], values=s.values[:400])
    scores, alarms = run_threshold(cut)
    assert scores == full_scores[:400] and alarms == full_alarms[:400]


def test_bad_arguments_list_valid_choices(tmp_path):
    runner = CliRunner()
    r = runner.invoke(build_app(), ["eval", "anomaly", "--nab", str(FIXTURE), "--detector", "magic"])
    assert r.exit_code != 0 and "threshold, pyod" in r.output
    r = runner.invoke(build_app(), ["eval", "anomaly", "--nab", str(tmp_path)])
    assert r.exit_code == 2 and "data" in r.output


def test_exported_csv_quirks_are_read_and_label_mismatches_are_reported(tmp_path):
    # A spreadsheet export: byte-order mark, CRLF line ends, capitalised header with spaces, an extra column.
    data = tmp_path / "data" / "g"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = [f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{1.0 + (i % 3) + (40.0 if i == 150 else 0.0)},0" for i in range(200)]
    text = "\r\n".join(["Timestamp, Value ,label", *rows]) + "\r\n"
    (data / "export.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (data / "unlabelled.csv").write_text("timestamp,value\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    window = [["2024-01-01 02:25:00.000000", "2024-01-01 02:35:00.000000"]]
    (tmp_path / "labels" / "combined_windows.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"g/export.csv": window, "g/renamed.csv": window}).encode()
    )
    out = tmp_path / "results"
    result = CliRunner().invoke(build_app(), ["eval", "anomaly", "--nab", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 series have no entry" in result.stderr and "g/unlabelled.csv" in result.stderr
    assert "1 label entries name no file" in result.stderr and "g/renamed.csv" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["labels"] == {"labels_file": True, "series_without_entry": 1, "entries_without_data": ["g/renamed.csv"]}
    assert summary["event"]["windows"] == 1 and summary["event"]["detected"] == 1  # the spike at row 150
    written = (out / "g" / "export.csv").read_bytes()
    assert b"\r" not in written and written.startswith(b"timestamp,value,anomaly_score,alarm\n")
    assert written.count(b"\n") == 201 and b"2024-01-01 00:00:00,1.0," in written
    # no labels file at all: said once, and every series is scored as having no windows
    (tmp_path / "labels" / "combined_windows.json").unlink()
    result = CliRunner().invoke(build_app(), ["eval", "anomaly", "--nab", str(tmp_path)])
    assert result.exit_code == 0 and "no " in result.stderr and "combined_windows.json" in result.stderr
    assert json.loads(result.stdout)["labels"]["labels_file"] is False


def test_naive_windows_over_data_with_utc_offsets_are_read_in_the_data_clock(tmp_path):
    from otel_llm.evaluation.nab import load_nab

    data = tmp_path / "data" / "g"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    # hourly points in local time; the clocks go forward (+01:00 -> +02:00) after 24 points
    stamps = [f"2024-03-{30 + i // 24}T{i % 24:02d}:00:00{'+01:00' if i < 24 else '+02:00'}" for i in range(48)]
    (data / "local.csv").write_text("timestamp,value\n" + "\n".join(f"{s},{i}" for i, s in enumerate(stamps)) + "\n")
    (data / "utc.csv").write_text("timestamp,value\n" + "\n".join(f"2024-03-30 {i:02d}:00:00,{i}" for i in range(24)) + "\n")
    labels = {
        "g/local.csv": [["2024-03-30 10:00:00", "2024-03-30 12:00:00"],  # naive: the data's clock (+01:00)
                        ["2024-03-31 05:00:00", "2024-03-31 06:00:00"],  # after the change (+02:00)
                        ["2024-03-31T20:00:00Z", "2024-03-31T21:00:00Z"]],  # an offset of its own: as written
        "g/utc.csv": [["2024-03-30 10:00:00", "2024-03-30 12:00:00"]],  # naive data: naive = UTC, as before
    }
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    by_key = {s.key: s for s in load_nab(tmp_path)}
    assert by_key["g/local.csv"].windows == [(10, 12), (29, 30), (46, 47)]
    assert by_key["g/utc.csv"].windows == [(10, 12)]


def test_odd_series_do_not_break_the_harness(tmp_path):
    import math

    from otel_llm.evaluation.anomaly import evaluate

    data = tmp_path / "data" / "odd"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    series = {
        "constant.csv": [5.0] * 200,
        "short.csv": [1.0, 2.0, 3.0],
        "gaps.csv": [math.nan if i % 17 == 0 else float(i % 5) for i in range(200)],
        "negative.csv": [-1000.0 + (i % 7) for i in range(200)],
        "huge.csv": [1e300 if i == 150 else 1.0 + (i % 3) for i in range(200)],
    }
    for name, values in series.items():
        rows = ["timestamp,value"] + [
            f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{'' if math.isnan(v) else v!r}" for i, v in enumerate(values)
        ]
        (data / name).write_text("\n".join(rows) + "\n")
    (tmp_path / "labels" / "combined_windows.json").write_text(
        json.dumps({"odd/huge.csv": [["2024-01-01 02:28:00.000000", "2024-01-01 02:32:00.000000"]]})
    )
    for detector in ("threshold", "pyod"):
        out = evaluate(tmp_path, detector, tmp_path / f"res-{detector}")
        assert out["series"] == 5 and out["points"] == 803
        rows = list(csv.DictReader((tmp_path / f"res-{detector}" / "odd" / "constant.csv").open()))
        assert len(rows) == 200
    thr = evaluate(tmp_path, "threshold")
    assert thr["event"]["detected"] == 1  # the 1e300 spike inside its window
    assert thr["input"]["dropped"] == {"non_finite": 12}  # the empty values of gaps.csv, counted
    # each of them but the first leaves a one-minute hole, held on the time grid
    assert (thr["input"]["gap_slots"], thr["input"]["series_with_gaps"]) == (11, 1)


def test_the_harness_reports_gaps_it_kept_on_the_time_grid(tmp_path):
    """Five-minute points over three days with two holes (2 h and 25 min), a repeated stamp and a
    point 50 s after the one before."""
    from otel_llm.evaluation.anomaly import evaluate

    data = tmp_path / "data" / "g"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = [i for i in range(3 * 288) if not (400 <= i < 424 or 700 <= i < 705)]
    lines = [f"2024-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00,{20.0 + (i * 7919 % 13) / 13!r}"
             for i in rows]
    lines.insert(100, lines[99])  # the same row twice: not later than the one before
    at = rows.index(500) + 2
    lines.insert(at, lines[at - 1].replace(":00,", ":50,", 1))  # 50 s after a point: its slot, shared
    (data / "s.csv").write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({"g/s.csv": []}))
    out = evaluate(tmp_path, "threshold", tmp_path / "res")
    assert out["input"] == {"dropped": {"out_of_order": 1}, "gap_slots": 29, "series_with_gaps": 1,
                            "shared_slots": 1, "series_with_drops": 1,
                            "series_dropping": [{"series": "g/s.csv", "rows": len(lines), "dropped": {"out_of_order": 1}}]}
    assert len((tmp_path / "res" / "g" / "s.csv").read_text().splitlines()) == len(lines) + 1


def test_a_file_newest_first_is_named_with_the_fix_not_just_counted(tmp_path):
    """Streaming keeps a point only if it is later than the one before: a file exported newest first loses all
    rows but one. The harness scores on, and says which file, why, and what to do."""
    data = tmp_path / "data" / "g"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = [f"2024-01-01 {i // 60:02d}:{i % 60:02d}:00,{1.0 + i % 3}" for i in range(300)]
    (data / "newest-first.csv").write_text("timestamp,value\n" + "\n".join(reversed(rows)) + "\n")
    (data / "fine.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    one_empty = rows[:]
    one_empty[200] = one_empty[200].rsplit(",", 1)[0] + ","
    (data / "one-empty.csv").write_text("timestamp,value\n" + "\n".join(one_empty) + "\n")
    (tmp_path / "labels" / "combined_windows.json").write_text(
        json.dumps({f"g/{n}.csv": [] for n in ("newest-first", "fine", "one-empty")}))
    result = CliRunner().invoke(build_app(), ["eval", "anomaly", "--nab", str(tmp_path)])
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert "g/newest-first.csv: 299 of 300 rows dropped" in err and "sort it oldest first" in err
    assert "one-empty.csv: 1 of" not in err  # one row in 300 is under the share worth a warning; it is still counted
    summary = json.loads(result.stdout)
    assert summary["input"]["dropped"] == {"non_finite": 1, "out_of_order": 299}
    assert summary["input"]["series_with_drops"] == 2
    assert [d["series"] for d in summary["input"]["series_dropping"]] == ["g/newest-first.csv", "g/one-empty.csv"]


@pytest.mark.parametrize("stamp", [lambda i: str(i + 1), lambda i: str(1_416_726_000 + 3600 * i),
                                   lambda i: str(1_416_726_000_000 + 3_600_000 * i)],
                         ids=["sequence-numbers", "unix-seconds", "unix-milliseconds"])
def test_numeric_timestamps_are_read_in_data_and_labels(tmp_path, stamp):
    """Benchmarks converted to the NAB layout often keep numeric stamps (1, 2, 3 or unix time)."""
    from otel_llm.evaluation.anomaly import evaluate
    from otel_llm.evaluation.nab import load_nab

    n, spike = 600, 400
    data = tmp_path / "data" / "num"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    values = [10.0 + (i * 7919 % 13) / 13.0 + (60.0 if spike <= i < spike + 3 else 0.0) for i in range(n)]
    (data / "s.csv").write_text("timestamp,value\n" + "".join(f"{stamp(i)},{v!r}\n" for i, v in enumerate(values)))
    window = [stamp(spike - 20), stamp(spike + 20)]
    # windows as JSON numbers here (strings, as NAB writes them, in the next tests)
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps({"num/s.csv": [[int(w) for w in window]]}))
    s = load_nab(tmp_path)[0]
    assert s.windows == [(spike - 20, spike + 20)]
    assert all(b > a for a, b in zip(s.times, s.times[1:], strict=False))
    assert 1.0 <= s.times[1] - s.times[0] <= 3600.0
    out = evaluate(tmp_path, "threshold", tmp_path / "res")
    assert out["event"]["detected"] == 1 and out["nab"]["standard"] > 50
    assert (tmp_path / "res" / "num" / "s.csv").read_text().splitlines()[1].startswith(f"{stamp(0)},")


def test_unreadable_timestamps_name_the_file_and_the_accepted_forms(tmp_path):
    from otel_llm.evaluation.nab import load_nab

    data = tmp_path / "data" / "g"
    data.mkdir(parents=True)
    (data / "bad.csv").write_text("timestamp,value\nyesterday,1\nnoon,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv: cannot read the timestamp column .*2014-04-01 00:00:00"):
        load_nab(tmp_path)


def test_a_series_windows_are_read_in_its_datas_timestamp_form(tmp_path):
    """Four-digit window stamps of numeric data stay numbers (not years), and YYYYMMDD data stay dates."""
    from otel_llm.evaluation.nab import load_nab

    data = tmp_path / "data" / "g"
    data.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (data / "seq.csv").write_text("timestamp,value\n" + "".join(f"{i},{i % 7}\n" for i in range(1, 12_001)))
    days = [f"201404{d:02d}" for d in range(1, 31)]
    (data / "days.csv").write_text("timestamp,value\n" + "".join(f"{d},1.0\n" for d in days))
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(
        {"g/seq.csv": [[1500, 1600], ["9000", "11000"]], "g/days.csv": [["2014-04-10 00:00:00.000000", "20140412"]]}))
    by_key = {s.key: s for s in load_nab(tmp_path)}
    assert by_key["g/seq.csv"].windows == [(1499, 1599), (8999, 10999)]
    d = by_key["g/days.csv"]
    assert d.times[1] - d.times[0] == 86400.0 and d.windows == [(9, 11)]


def test_the_harness_default_re_arms_so_a_repeating_spike_is_not_paged_every_time():
    """Routine spikes of one size page once per re-arm period; a larger one pages at once."""
    from dataclasses import replace

    import numpy as np

    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    rng = np.random.default_rng(3)
    values = 10 + rng.normal(0, 0.5, 3000)
    spikes = list(range(1000, 2900, 15))
    values[spikes] += 8.0
    values[2950] += 16.0  # twice the size: worse than anything since the last page
    times = [60.0 * i for i in range(3000)]
    s = NabSeries("g/s.csv", [str(t) for t in times], times, [float(v) for v in values])
    cfg = default_threshold_config()
    assert cfg.policy.rearm > 0 and cfg.policy.rearm_share > 0
    cfg = replace(cfg, policy=replace(cfg.policy, rarity=0))  # re-arm alone (rarity: the next test)
    _, rearmed = run_threshold(s, cfg)
    _, every = run_threshold(s, replace(cfg, policy=replace(cfg.policy, rearm=0)))
    assert rearmed[2950] == 1 and every[2950] == 1
    assert sum(every[i] for i in spikes) > 1.5 * sum(rearmed[i] for i in spikes) > 0
    assert sum(rearmed) < sum(every)


def test_the_harness_default_stops_paging_on_lone_spikes_the_series_shows_routinely():
    """Spikes of a size seen every ~40 points stop paging once 1,000 points are judged; a far larger one pages."""
    from dataclasses import replace

    import numpy as np

    from otel_llm.evaluation.anomaly import default_threshold_config, run_threshold
    from otel_llm.evaluation.nab import NabSeries

    rng = np.random.default_rng(5)
    values = 10 + rng.normal(0, 0.5, 6000)
    spikes = list(range(200, 5900, 40))
    values[spikes] += rng.uniform(6.0, 9.0, len(spikes))
    values[5950] += 30.0
    times = [60.0 * i for i in range(6000)]
    s = NabSeries("g/s.csv", [str(t) for t in times], times, [float(v) for v in values])
    cfg = default_threshold_config()
    assert cfg.policy.rarity > 0
    _, rare = run_threshold(s, cfg)
    _, every = run_threshold(s, replace(cfg, policy=replace(cfg.policy, rarity=0)))
    assert rare[5950] == 1 and every[5950] == 1
    late = [i for i in spikes if i > 2000]  # well past the 2 x 500 points the rarity needs
    assert sum(every[i] for i in late) >= 10
    assert sum(rare[i] for i in late) <= 1
    assert sum(rare[i] for i in spikes if i < 800) == sum(every[i] for i in spikes if i < 800) > 0  # young: unchanged


def test_the_nab_like_artificial_set_is_one_sparse_window_per_series(tmp_path):
    import runpy

    from otel_llm.evaluation.nab import load_nab

    script = Path(__file__).parent.parent / "scripts" / "nab_like_artificial.py"
    assert runpy.run_path(str(script))["write"](tmp_path) == 24
    series = load_nab(tmp_path)
    assert len(series) == 24 and {len(s.values) for s in series} == {4032}
    for s in series:
        (a, b), = s.windows
        assert b - a == 402  # 10 % of the rows, NAB's window width for one anomaly


def test_the_gapped_and_jittered_copies_keep_values_and_windows(tmp_path):
    """The development copies of a dataset (scripts/with_gaps.py, scripts/with_jitter.py) load in the
    harness, keep every value (gaps: in order, fewer rows) and the windows, and move each jittered
    stamp by less than the amplitude, in order."""
    import runpy

    from otel_llm.evaluation.nab import load_nab

    src = tmp_path / "src"
    (src / "data" / "g").mkdir(parents=True)
    (src / "labels").mkdir()
    rows = [f"2024-01-{1 + i // 288:02d} {i % 288 // 12:02d}:{i % 12 * 5:02d}:00,{i * 0.5!r}" for i in range(3 * 288)]
    (src / "data" / "g" / "s.csv").write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    windows = {"g/s.csv": [["2024-01-02 10:00:00", "2024-01-02 12:00:00"]]}
    (src / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    scripts = Path(__file__).parent.parent / "scripts"
    (clean,) = load_nab(src)

    runpy.run_path(str(scripts / "with_jitter.py"))["copy_with_jitter"](src, tmp_path / "jit", 0.3, 1)
    (jit,) = load_nab(tmp_path / "jit")
    assert jit.values == clean.values and jit.windows == clean.windows
    moved = [abs(a - b) for a, b in zip(jit.times, clean.times, strict=True)]
    assert moved[0] == 0.0 and max(moved) <= 0.3 * 300 + 1 and sum(m > 30 for m in moved) > 400
    assert all(b > a for a, b in zip(jit.times, jit.times[1:], strict=False))
    with pytest.raises(ValueError, match="outside"):
        runpy.run_path(str(scripts / "with_jitter.py"))["copy_with_jitter"](src, tmp_path / "bad", 0.6)

    read, written = runpy.run_path(str(scripts / "with_gaps.py"))["copy_with_gaps"](src, tmp_path / "gap", 3)
    (gap,) = load_nab(tmp_path / "gap")
    assert read == len(clean.values) > written == len(gap.values) and gap.windows == clean.windows
    kept = dict(zip(clean.times, clean.values, strict=True))
    assert all(kept[t] == v for t, v in zip(gap.times, gap.values, strict=True))
