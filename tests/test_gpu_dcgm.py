"""The DCGM source against a fake DCGM field-value source (no DCGM or GPU here), and source selection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from otel_llm.collectors import F, NullCollector, create_collector
from otel_llm.collectors._dcgm import PROFILING_FIELDS, DcgmCollector, load_bindings

from otel_llm import semconv as sc


class FakeValue:
    def __init__(self, value, blank=False):
        self.value, self.isBlank, self.ts = value, blank, 0


class FakeDcgm:
    """A pydcgm look-alike: a host engine holding field values per GPU id."""

    DCGM_OPERATION_MODE_AUTO = 1
    DCGM_GROUP_DEFAULT = 0
    DCGM_FE_GPU = 1

    def __init__(self, gpus, *, profiling_ok=True, reachable=True):
        self.gpus = gpus  # gid -> (uuid, name, {fid: value or None(blank)})
        self.profiling_ok = profiling_ok
        self.reachable = reachable
        self.watched = []
        self.handles = []
        self.fail_reads = False
        fake = self

        class DcgmHandle:
            def __init__(self, ipAddress=None, opMode=None):
                if not fake.reachable:
                    raise ConnectionError("DCGM_ST_CONNECTION_NOT_VALID")
                fake.handles.append(ipAddress)

            def GetSystem(self):
                def attrs(gid):
                    uuid, name, _ = fake.gpus[gid]
                    return SimpleNamespace(identifiers=SimpleNamespace(uuid=uuid.encode(), deviceName=name,
                                                                       driverVersion="580.105.08"))

                return SimpleNamespace(discovery=SimpleNamespace(GetGpuAttributes=attrs))

            def Shutdown(self):
                pass

        class Samples:
            def WatchFields(self, fg, usec, max_age, max_samples):
                if not fake.profiling_ok and set(fg.fieldIds) & set(PROFILING_FIELDS):
                    raise RuntimeError("DCGM_ST_PROFILING_NOT_SUPPORTED")
                fake.watched.append((tuple(fg.fieldIds), usec))

            def GetLatest_v2(self, fg):
                if fake.fail_reads:
                    raise ConnectionError("host engine went away")
                per_gpu = {
                    gid: {fid: [FakeValue(0 if v is None else v, blank=v is None)]
                          for fid, v in values.items() if fid in fg.fieldIds}
                    for gid, (_, _, values) in fake.gpus.items()
                }
                return SimpleNamespace(values={fake.DCGM_FE_GPU: per_gpu})

        class DcgmGroup:
            def __init__(self, handle, groupName=None, groupType=None):
                self.samples = Samples()

            def GetGpuIds(self):
                return list(fake.gpus)

            def Delete(self):
                pass

        class DcgmFieldGroup:
            def __init__(self, handle, name, fieldIds):
                self.fieldIds = list(fieldIds)

            def Delete(self):
                pass

        self.bindings = SimpleNamespace(
            pydcgm=SimpleNamespace(DcgmHandle=DcgmHandle, DcgmGroup=DcgmGroup, DcgmFieldGroup=DcgmFieldGroup),
            dcgm_structs=SimpleNamespace(DCGM_OPERATION_MODE_AUTO=1, DCGM_GROUP_DEFAULT=0),
            dcgm_fields=SimpleNamespace(DCGM_FE_GPU=1),
        )


def _two_gpus():
    return {
        0: ("GPU-0000", "NVIDIA H100 80GB HBM3",
            {F.POWER_USAGE: 412.5, F.GPU_TEMP: 61, F.SM_ACTIVE: 0.82, F.XID: None, F.CLOCKS_EVENT_REASONS: 0}),
        1: ("GPU-1111", "NVIDIA H100 80GB HBM3", {F.POWER_USAGE: 70.1, F.GPU_TEMP: 29, F.SM_ACTIVE: 0.0}),
    }


def test_reads_latest_values_by_field_id_and_skips_blanks():
    fake = FakeDcgm(_two_gpus())
    col = DcgmCollector("10.0.0.5:5555", interval_s=2.0, bindings=fake.bindings, host="node-a")
    samples = {s.uuid: s for s in col.collect()}
    assert fake.handles == ["10.0.0.5:5555"]
    fields, usec = fake.watched[0]
    assert usec == 2_000_000 and F.SM_ACTIVE in fields and F.XID in fields
    g0 = samples["GPU-0000"]
    assert g0.fields == {F.POWER_USAGE: 412.5, F.GPU_TEMP: 61.0, F.SM_ACTIVE: 0.82, F.CLOCKS_EVENT_REASONS: 0.0}
    assert F.XID not in g0.fields  # blank = no data point, never 0
    assert (g0.index, g0.model, g0.host) == (0, "NVIDIA H100 80GB HBM3", "node-a")
    assert g0.labels[sc.HW_DRIVER_VERSION] == "580.105.08"
    col.close()


def test_profiling_fields_dropped_when_unsupported():
    fake = FakeDcgm(_two_gpus(), profiling_ok=False)
    col = DcgmCollector("embedded", bindings=fake.bindings)
    assert fake.handles == [None]  # embedded host engine
    assert not set(fake.watched[-1][0]) & set(PROFILING_FIELDS)
    assert F.SM_ACTIVE not in col.collect()[0].fields


def test_read_failure_returns_nothing_and_counts():
    fake = FakeDcgm(_two_gpus())
    col = DcgmCollector(bindings=fake.bindings)
    fake.fail_reads = True
    assert col.collect() == [] and col.last_collect_ok is False
    assert col.scrape_errors["ConnectionError"] == 1
    fake.fail_reads = False
    assert len(col.collect()) == 2 and col.last_collect_ok


def test_a_gpu_whose_values_all_go_blank_vanishes():
    gpus = _two_gpus()
    fake = FakeDcgm(gpus)
    col = DcgmCollector(bindings=fake.bindings)
    gpus[1] = (gpus[1][0], gpus[1][1], dict.fromkeys(gpus[1][2]))
    assert [s.uuid for s in col.collect()] == ["GPU-0000"]


def test_unreachable_host_engine_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_DCGM_HOSTENGINE", "gpu-host:5555")
    with pytest.raises(RuntimeError, match="gpu-host:5555.*nv-hostengine"):
        DcgmCollector(bindings=FakeDcgm({}, reachable=False).bindings)


def test_missing_bindings_name_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGM_BINDINGS_PATH", str(tmp_path))
    with pytest.raises(ImportError, match="datacenter-gpu-manager-4-core.*DCGM_BINDINGS_PATH"):
        load_bindings()


def test_bindings_found_through_dcgm_bindings_path(tmp_path, monkeypatch):
    for mod in ("pydcgm", "dcgm_structs", "dcgm_fields"):
        (tmp_path / f"{mod}.py").write_text(f"NAME = {mod!r}\n")
        monkeypatch.delitem(__import__("sys").modules, mod, raising=False)
    monkeypatch.setenv("DCGM_BINDINGS_PATH", str(tmp_path))
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    try:
        b = load_bindings()
        assert b.pydcgm.NAME == "pydcgm" and b.dcgm_structs.NAME == "dcgm_structs"
    finally:
        for mod in ("pydcgm", "dcgm_structs", "dcgm_fields"):
            __import__("sys").modules.pop(mod, None)


def test_auto_falls_back_to_exporter_url_then_none(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("DCGM_BINDINGS_PATH", str(tmp_path))  # no DCGM here
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)  # and no NVML
    col = create_collector("auto", url="http://127.0.0.1:9/metrics")
    assert col.name == "dcgm-exporter" and col.url == "http://127.0.0.1:9/metrics"
    col.close()
    with caplog.at_level("INFO", logger="otel_llm.collectors"):
        none = create_collector("auto")
    assert isinstance(none, NullCollector) and none.collect() == []
    lines = [r.message for r in caplog.records if "No GPU telemetry source" in r.message]
    assert len(lines) == 1 and "DCGM" in lines[0] and "NVML" in lines[0]


def test_explicit_sources_fail_clearly_and_sim_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    with pytest.raises(ImportError, match="nvidia-ml-py"):
        create_collector("nvml")
    monkeypatch.setenv("DCGM_BINDINGS_PATH", str(tmp_path))
    with pytest.raises(ImportError, match="pydcgm"):
        create_collector("dcgm")
    with pytest.raises(ValueError, match="OTEL_LLM_GPU_SOURCE"):
        create_collector("gpu-magic")
    monkeypatch.setenv("OTEL_LLM_GPU_SOURCE", "sim")
    assert create_collector(sim_gpus=2, sim_model="L4").name == "sim"
