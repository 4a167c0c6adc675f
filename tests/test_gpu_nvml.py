"""The NVML source and GPU identity discovery against a fake NVML (no GPU here); the span-to-GPU stamp."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from otel_llm.collectors import F, GpuTracker
from otel_llm.collectors._identity import discover
from otel_llm.collectors._nvml import NvmlCollector

from otel_llm import _gpu
from otel_llm import semconv as sc


class NVMLError_NotSupported(Exception):
    pass


class NVMLError_GpuIsLost(Exception):
    pass


class NVMLError_Timeout(Exception):
    pass


class NVMLError_LibraryNotFound(Exception):
    pass


def fake_nvml(uuids=("GPU-aaaa", "GPU-bbbb"), *, init_error=None):
    """A pynvml look-alike: GPU 0 supports everything, GPU 1 has no ECC and no row remapping."""
    state = SimpleNamespace(lost=set(), xids=[], inits=0, shutdowns=0, registered=[])

    def handle(i):
        return SimpleNamespace(i=i)

    def only_gpu0(value):
        def fn(h, *a):
            if h.i in state.lost:
                raise NVMLError_GpuIsLost("GPU is lost")
            if h.i != 0:
                raise NVMLError_NotSupported("Not Supported")
            return value(h, *a) if callable(value) else value

        return fn

    def every(value):
        def fn(h, *a):
            if h.i in state.lost:
                raise NVMLError_GpuIsLost("GPU is lost")
            return value(h, *a) if callable(value) else value

        return fn

    def init():
        if init_error:
            raise init_error
        state.inits += 1

    def wait(es, timeout_ms):
        if not state.xids:
            raise NVMLError_Timeout("Timeout")
        i, code = state.xids.pop(0)
        return SimpleNamespace(device=handle(i), eventData=code, eventType=8)

    nv = SimpleNamespace(
        state=state,
        NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1, NVML_CLOCK_MEM=2,
        NVML_MEMORY_ERROR_TYPE_CORRECTED=0, NVML_MEMORY_ERROR_TYPE_UNCORRECTED=1, NVML_VOLATILE_ECC=0,
        nvmlEventTypeXidCriticalError=8,
        nvmlInit=init,
        nvmlShutdown=lambda: setattr(state, "shutdowns", state.shutdowns + 1),
        nvmlSystemGetDriverVersion=lambda: "580.105.08",
        nvmlDeviceGetCount=lambda: len(uuids),
        nvmlDeviceGetHandleByIndex=handle,
        nvmlDeviceGetUUID=lambda h: uuids[h.i].encode(),
        nvmlDeviceGetName=lambda h: "NVIDIA L4",
        nvmlDeviceGetUtilizationRates=every(lambda h: SimpleNamespace(gpu=87 - h.i, memory=40)),
        nvmlDeviceGetEncoderUtilization=every((0, 167000)),
        nvmlDeviceGetDecoderUtilization=every((3, 167000)),
        nvmlDeviceGetMemoryInfo=every(SimpleNamespace(total=24152899584, used=10 * 2**30, free=24152899584 - 10 * 2**30)),
        nvmlDeviceGetPowerUsage=every(lambda h: 68244 - 1000 * h.i),
        nvmlDeviceGetEnforcedPowerLimit=every(72000),
        nvmlDeviceGetTotalEnergyConsumption=every(4742776),
        nvmlDeviceGetTemperature=every(lambda h, sensor: 71),
        nvmlDeviceGetClockInfo=every(lambda h, clk: {1: 1650, 2: 6251}[clk]),
        nvmlDeviceGetCurrentClocksEventReasons=every(0x4),
        nvmlDeviceGetTotalEccErrors=only_gpu0(lambda h, kind, counter: {0: 12, 1: 1}[kind]),
        nvmlDeviceGetPcieReplayCounter=every(3),
        nvmlDeviceGetRemappedRows=only_gpu0((0, 1, 1, 0)),
        nvmlEventSetCreate=lambda: "event-set",
        nvmlDeviceRegisterEvents=lambda h, mask, es: state.registered.append((h.i, mask)),
        nvmlEventSetWait_v2=wait,
        nvmlEventSetFree=lambda es: None,
    )
    return nv


def test_nvml_values_in_dcgm_ids_and_units():
    nv = fake_nvml()
    col = NvmlCollector(nv, host="n1")
    s0, s1 = col.collect()
    f = s0.fields
    assert f[F.POWER_USAGE] == pytest.approx(68.244)  # mW -> W
    assert f[F.POWER_LIMIT_ENFORCED] == 72.0 and f[F.TOTAL_ENERGY] == 4742776
    assert f[F.GPU_UTIL] == 87 and f[F.MEM_COPY_UTIL] == 40 and f[F.DEC_UTIL] == 3
    assert f[F.FB_USED] == 10 * 1024 and f[F.FB_TOTAL] == pytest.approx(24152899584 / 2**20)
    assert f[F.GPU_TEMP] == 71 and f[F.SM_CLOCK] == 1650 and f[F.MEM_CLOCK] == 6251
    assert f[F.CLOCKS_EVENT_REASONS] == 0x4 and f[F.PCIE_REPLAY] == 3
    assert (f[F.ECC_SBE_VOL], f[F.ECC_DBE_VOL]) == (12, 1)
    assert (f[F.ROW_REMAP_UNCORRECTABLE], f[F.ROW_REMAP_PENDING], f[F.ROW_REMAP_FAILED]) == (1, 1, 0)
    assert (s0.uuid, s0.model, s0.host, s0.index) == ("GPU-aaaa", "NVIDIA L4", "n1", 0)
    assert s0.labels[sc.HW_DRIVER_VERSION] == "580.105.08"
    # unsupported queries: absent (never 0) and not asked again
    assert F.ECC_DBE_VOL not in s1.fields and F.ROW_REMAP_PENDING not in s1.fields
    assert (1, "ecc_sbe") in col._unsupported
    assert nv.state.registered == [(0, 8), (1, 8)]


def test_xids_arrive_through_the_event_set_as_the_last_code():
    nv = fake_nvml()
    col = NvmlCollector(nv)
    tracker = GpuTracker()
    tracker.update(col.collect())
    nv.state.xids += [(1, 13), (1, 79)]
    samples = {s.uuid: s for s in col.collect()}
    assert samples["GPU-bbbb"].fields[F.XID] == 79 and F.XID not in samples["GPU-aaaa"].fields
    events = tracker.update(list(samples.values()))
    assert [e.attributes["xid"] for e in events if e.kind == "xid"] == [79]


def test_a_lost_gpu_vanishes_and_is_reported():
    nv = fake_nvml()
    col = NvmlCollector(nv)
    tracker = GpuTracker()
    tracker.update(col.collect())
    nv.state.lost.add(1)
    samples = col.collect()
    assert [s.uuid for s in samples] == ["GPU-aaaa"] and col.scrape_errors["NVMLError_GpuIsLost"] == 1
    events = tracker.update(samples, ok=col.last_collect_ok)
    assert [e.kind for e in events] == ["lost"] and tracker.state("GPU-bbbb") == "failed"
    col.close()
    assert nv.state.shutdowns == 1


def test_missing_library_or_driver_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(ImportError, match="pip install nvidia-ml-py"):
        NvmlCollector()
    with pytest.raises(RuntimeError, match="NVIDIA driver"):
        NvmlCollector(fake_nvml(init_error=NVMLError_LibraryNotFound("NVML Shared Library Not Found")))


@pytest.mark.parametrize(
    "visible, expected",
    [
        ("1,0", ["GPU-bbbb", "GPU-aaaa"]),
        (None, ["GPU-aaaa", "GPU-bbbb"]),
        ("GPU-1234-abcd", ["GPU-1234-abcd"]),
        ("MIG-5b3b9d8c-0000-0000-0000-000000000001", ["MIG-5b3b9d8c-0000-0000-0000-000000000001"]),
        ("", []),
        ("-1", []),
        ("0,-1,1", ["GPU-aaaa"]),
    ],
)
def test_discover_from_cuda_visible_devices(visible, expected):
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert discover(env=env, nvml=fake_nvml()) == expected


def test_discover_uses_torch_current_device_and_never_raises():
    torch = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True,
                                                 current_device=lambda: 1))
    assert discover(env={"CUDA_VISIBLE_DEVICES": "0,1"}, nvml=fake_nvml(), torch_module=torch) == ["GPU-bbbb"]
    no_driver = fake_nvml(init_error=NVMLError_LibraryNotFound("no NVML"))
    assert discover(env={"CUDA_VISIBLE_DEVICES": "0"}, nvml=no_driver) == []
    cpu_torch = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False))
    assert discover(env={}, nvml=no_driver, torch_module=cpu_torch) == []


@pytest.fixture
def fresh_gpu_identity(monkeypatch):
    _gpu._reset_for_tests()
    monkeypatch.delenv("OTEL_LLM_GPU_UUIDS", raising=False)
    yield
    _gpu._reset_for_tests()


def test_request_spans_are_stamped_with_discovered_gpu_uuids(monkeypatch, telemetry, tiny_model, fresh_gpu_identity):
    from otel_llm.instrumentation.transformers import TransformersInstrumentor

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(("GPU-aaaa", "GPU-bbbb", "GPU-cccc")))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    inst = TransformersInstrumentor()
    inst.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        model, tok = tiny_model
        model.generate(**tok("hello", return_tensors="pt"), max_new_tokens=4, do_sample=False)
        with _gpu.use_gpus(["GPU-routed"]):
            model.generate(**tok("again", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    finally:
        inst.uninstrument()
    stamped = [tuple(s.attributes.get(sc.OTEL_LLM_GPU_UUIDS, ())) for s in telemetry.spans()
               if s.attributes.get(sc.OTEL_LLM_GPU_UUIDS)]
    assert stamped == [("GPU-cccc",), ("GPU-routed",)]


def test_no_gpu_means_no_stamp(monkeypatch, fresh_gpu_identity):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert _gpu.current_gpu_uuids() == ()
