"""Real dcgm-exporter scrapes served over loopback HTTP, scraped and parsed to the values in the files."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from otel_llm.collectors import (
    DcgmExporterCollector,
    ExpositionServer,
    F,
    ParseStats,
    field_id,
    field_name,
    parse_exposition,
)

from otel_llm import semconv as sc

SCRAPES = Path(__file__).parent / "fixtures" / "dcgm" / "scrapes"


def _text(name: str) -> str:
    return (SCRAPES / name).read_text()


def _scrape(text: str) -> tuple[list, DcgmExporterCollector]:
    with ExpositionServer(lambda: text) as server:
        collector = DcgmExporterCollector(server.url)
        try:
            samples = collector.collect()
        finally:
            collector.close()
    return samples, collector


def _one(samples):
    assert len(samples) == 1
    return samples[0]


def test_t4_at_its_power_cap():
    samples, col = _scrape(_text("t4-loaded-gpu-operator.prom"))
    s = _one(samples)
    assert col.last_collect_ok and col.malformed_lines == 0
    assert s.uuid == "GPU-6d5c0ac5-74d7-3130-46f1-e93ed57f469a"
    assert (s.index, s.model, s.host) == (0, "Tesla T4", "cp-bm14r7")
    assert s.labels[sc.HW_DRIVER_VERSION] == "590.48.01"
    f = s.fields
    assert f[F.POWER_USAGE] == pytest.approx(68.244)
    assert f[F.SM_CLOCK] == 660 and f[F.MEM_CLOCK] == 5000 and f[F.GPU_TEMP] == 74
    assert f[F.GPU_UTIL] == 91 and f[F.MEM_COPY_UTIL] == 73
    assert f[F.TOTAL_ENERGY] == 15152422938
    assert (f[F.FB_FREE], f[F.FB_USED], f[F.FB_RESERVED]) == (9791, 5120, 447)
    assert f[F.GR_ENGINE_ACTIVE] == pytest.approx(0.156205)
    assert f[F.PCIE_RX_BYTES] == 6935930
    assert F.ROW_REMAP_FAILED not in f  # Turing: no row remapping series in the scrape
    assert F.XID not in f


@pytest.mark.parametrize(
    "name, model, host, power, temp, fb_free, fb_reserved",
    [
        ("l40s-idle-helm-default.prom", "NVIDIA L40S", "gpu1-wl8sg", 35.686, 32, 45459, 608),
        ("l4-idle-kops.prom", "NVIDIA L4", None, 16.365, 31, 22563, 470),
    ],
)
def test_idle_boards_with_help_and_type(name, model, host, power, temp, fb_free, fb_reserved):
    samples, col = _scrape(_text(name))
    s = _one(samples)
    assert s.model == model and (host is None or s.host == host)
    assert s.fields[F.POWER_USAGE] == pytest.approx(power)
    assert s.fields[F.GPU_TEMP] == temp
    assert s.fields[F.FB_FREE] == fb_free and s.fields[F.FB_RESERVED] == fb_reserved
    assert s.fields[F.MEMORY_TEMP] == 0  # GDDR boards print a literal 0: kept as the raw field
    assert s.fields[F.ROW_REMAP_FAILED] == 0
    # counters keep their names despite the parser's counter renaming (no _total ids)
    assert F.TOTAL_ENERGY in s.fields and F.PCIE_REPLAY in s.fields
    assert set(s.fields) <= set(range(0, 2000))
    assert 1091 not in s.fields and 1092 not in s.fields
    assert col.unknown_metrics == 0


def test_l40s_energy_and_profiling_values():
    s = _one(_scrape(_text("l40s-idle-helm-default.prom"))[0])
    assert s.fields[F.TOTAL_ENERGY] == 5551899580
    assert s.fields[F.DRAM_ACTIVE] == pytest.approx(0.000131)
    assert s.fields[F.PCIE_TX_BYTES] == 175084
    assert s.fields[F.VGPU_LICENSE_STATUS] == 0


def test_vgpu_guest_has_no_power_or_temperature_fields():
    s = _one(_scrape(_text("grid-a100-40c-vgpu.prom"))[0])
    assert s.model == "GRID A100-40C"
    for missing in (F.POWER_USAGE, F.GPU_TEMP, F.TOTAL_ENERGY):
        assert missing not in s.fields  # absent, never 0
    assert s.fields[F.FB_FREE] == 37739 and s.fields[F.FB_RESERVED] == 3220
    assert s.fields[F.VGPU_LICENSE_STATUS] == 1
    assert s.fields[F.SM_CLOCK] == 1410


def test_h100_node_with_kubernetes_labels_and_partial_series():
    samples, _ = _scrape(_text("h100x8-k8s-vllm-sampled.prom"))
    assert len(samples) == 8
    by_index = {s.index: s for s in samples}
    g0 = by_index[0]
    assert g0.uuid == "GPU-c4529c8d-69c4-b61d-e0bc-7b2460096005"
    assert g0.model == "NVIDIA H100 80GB HBM3" and g0.host == "gpu-node-1"
    assert g0.fields[F.POWER_USAGE] == pytest.approx(113.611) and g0.fields[F.GPU_TEMP] == 30
    assert g0.labels[sc.K8S_POD_NAME] == "vllm-agg-0-vllmdecodeworker-s65j5"
    assert g0.labels[sc.K8S_NAMESPACE_NAME] == "dynamo-workload"
    assert g0.labels[sc.K8S_CONTAINER_NAME] == "main"
    assert sc.K8S_POD_NAME not in by_index[1].labels
    assert by_index[1].fields[F.POWER_USAGE] == pytest.approx(68.347)
    assert by_index[7].fields[F.POWER_USAGE] == pytest.approx(66.997)
    # MEM_COPY_UTIL stops at GPU 5 in the source: missing means missing
    assert F.MEM_COPY_UTIL in by_index[5].fields
    assert F.MEM_COPY_UTIL not in by_index[6].fields and F.MEM_COPY_UTIL not in by_index[7].fields


def _rename_to_dcgm46(text: str) -> str:
    def repl(m):
        fid = field_id(m.group(0))
        return field_name(fid, "dcgm46") if fid is not None else m.group(0)

    return re.sub(r"\bDCGM_FI_(?:DEV|PROF)_[A-Z0-9_]+\b", repl, text)


@pytest.mark.parametrize("name", sorted(p.name for p in SCRAPES.glob("*.prom")))
def test_dcgm46_names_parse_to_the_same_ids(name):
    text = _text(name)
    renamed = _rename_to_dcgm46(text)
    assert "DCGM_FI_DEV_BOARD_POWER_WATTS" in renamed or "DCGM_FI_DEV_POWER_USAGE" not in text
    old = {s.key: dict(s.fields) for s in parse_exposition(text)}
    new = {s.key: dict(s.fields) for s in parse_exposition(renamed)}
    assert old == new and old


def test_label_spelling_variants_and_legacy_names():
    text = (
        'dcgm_gpu_temp{gpu="0",uuid="GPU-aaaa",hostname="n1",modelName="Tesla T4",pod_name="p",'
        'pod_namespace="ns",container_name="c"} 61\n'
        'dcgm_power_usage{gpu="0",uuid="GPU-aaaa",hostname="n1"} 55.5\n'
        'dcgm_fi_prof_sm_active{gpu="0",uuid="GPU-aaaa"} 0.25\n'
        'DCGM_FI_DEV_GPU_TEMP{gpu="1",UUID="GPU-bbbb",Hostname="n2",container="",namespace="",pod=""} 40\n'
    )
    samples = {s.uuid: s for s in parse_exposition(text)}
    a, b = samples["GPU-aaaa"], samples["GPU-bbbb"]
    assert a.fields == {F.GPU_TEMP: 61, F.POWER_USAGE: 55.5, F.SM_ACTIVE: 0.25}
    assert a.host == "n1" and a.labels[sc.K8S_POD_NAME] == "p" and a.labels[sc.K8S_NAMESPACE_NAME] == "ns"
    assert a.labels[sc.K8S_CONTAINER_NAME] == "c"
    assert b.host == "n2" and sc.K8S_POD_NAME not in b.labels  # empty pod labels mean "no pod"


def test_mig_instances_are_separate_series():
    line = 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",UUID="GPU-m",GPU_I_PROFILE="%s",GPU_I_ID="%s",Hostname="h"} %s\n'
    text = line % ("1g.10gb", "7", "0.5") + line % ("3g.40gb", "1", "0.1")
    samples = {s.key: s for s in parse_exposition(text)}
    assert set(samples) == {"GPU-m/7", "GPU-m/1"}
    assert samples["GPU-m/7"].labels[sc.OTEL_LLM_GPU_MIG_PROFILE] == "1g.10gb"
    assert samples["GPU-m/1"].fields[F.GR_ENGINE_ACTIVE] == pytest.approx(0.1)


def test_malformed_lines_are_skipped_counted_and_the_rest_used():
    good = _text("t4-loaded-gpu-operator.prom").splitlines()
    bad = good[:3] + ["DCGM_FI_DEV_GPU_TEMP{gpu=\"0\",UUID=\"x\" 74", "garbage line here", "{}{} 1"] + good[3:]
    bad.append('DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-6d5c0ac5-74d7-3130-46f1-e93ed57f469a"} notanumber')
    samples, col = _scrape("\n".join(bad) + "\n")
    s = _one(samples)
    assert col.malformed_lines == 4
    assert s.fields[F.POWER_USAGE] == pytest.approx(68.244) and s.fields[F.GPU_UTIL] == 91
    assert len(s.fields) == 20


def test_unknown_metrics_and_series_without_uuid_are_counted_not_fatal():
    stats = ParseStats()
    text = ('DCGM_EXP_XID_ERRORS_COUNT{gpu="0",UUID="GPU-1",xid="79"} 1\n'
            'DCGM_FI_DEV_GPU_TEMP{gpu="0"} 50\n'
            'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1"} NaN\n'
            'DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-1"} 100.5\n')
    samples = parse_exposition(text, stats=stats)
    assert (stats.unknown_metric, stats.no_uuid, stats.non_finite) == (1, 1, 1)
    assert samples[0].fields == {F.POWER_USAGE: 100.5}


def test_unreachable_exporter_backs_off_warns_once_and_counts(caplog):
    now = [0.0]
    transport_calls = []

    def handler(request):
        transport_calls.append(request.url)
        raise httpx.ConnectError("connection refused")

    client = httpx.Client(transport=httpx.MockTransport(handler))
    col = DcgmExporterCollector("http://127.0.0.1:9/metrics", client=client, clock=lambda: now[0],
                                backoff_initial_s=1.0, backoff_max_s=8.0)
    with caplog.at_level("WARNING", logger="otel_llm.collectors"):
        assert col.collect() == []
        assert col.collect() == []  # still backing off: no new attempt
        now[0] = 1.1
        assert col.collect() == []
        now[0] = 10.0
        assert col.collect() == []
    assert len(transport_calls) == 3
    assert col.scrape_errors["ConnectError"] == 3 and not col.last_collect_ok
    assert len([r for r in caplog.records if "cannot be scraped" in r.message]) == 1


def test_real_refused_port_then_recovery():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now
    now = [0.0]
    col = DcgmExporterCollector(f"http://127.0.0.1:{port}/metrics", clock=lambda: now[0], timeout_s=0.5)
    assert col.collect() == [] and col.scrape_error_total == 1
    text = _text("l4-idle-kops.prom")
    server = ExpositionServer(lambda: text, port=port)
    with server:
        now[0] = 100.0
        samples = col.collect()
    col.close()
    assert col.last_collect_ok and _one(samples).fields[F.POWER_USAGE] == pytest.approx(16.365)


def test_http_error_status_counts_as_a_failed_scrape():
    def boom():
        raise RuntimeError("exporter restarting")

    with ExpositionServer(boom) as server:
        col = DcgmExporterCollector(server.url)
        assert col.collect() == []
        col.close()
    assert col.scrape_errors["HTTPStatusError"] == 1


def test_bad_url_is_rejected_at_construction():
    with pytest.raises(ValueError, match="http"):
        DcgmExporterCollector("localhost:9400/metrics")


def test_more_label_spellings_and_renamed_clock_event_field():
    text = ('DCGM_FI_DEV_CLOCKS_EVENT_REASONS{GPU="3",GPU_UUID="GPU-cccc",HOST="n3",MODEL_NAME="NVIDIA L4"} 36\n'
            'DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu="4",uuid="GPU-dddd"} 4\n'
            'DCGM_FI_DEV_GPU_TEMP_CELSIUS{gpu="4",uuid="GPU-dddd"} 88\n')
    samples = {s.uuid: s for s in parse_exposition(text)}
    c, d = samples["GPU-cccc"], samples["GPU-dddd"]
    assert (c.index, c.host, c.model) == (3, "n3", "NVIDIA L4")
    assert c.fields == {F.CLOCKS_EVENT_REASONS: 36}
    assert d.fields == {F.CLOCKS_EVENT_REASONS: 4, F.GPU_TEMP: 88}
