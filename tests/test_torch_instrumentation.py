"""TorchInstrumentor: opt-in module forward spans (CPU) and CUDA memory metrics (silent on CPU)."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

from otel_llm import _selftelemetry  # noqa: E402
from otel_llm import semconv as sc  # noqa: E402
from otel_llm.instrumentation.torch import TorchInstrumentor  # noqa: E402

TORCH_METRICS = {
    sc.OTEL_LLM_TORCH_MEMORY_ALLOCATED, sc.OTEL_LLM_TORCH_MEMORY_RESERVED,
    sc.OTEL_LLM_TORCH_MEMORY_PEAK, sc.OTEL_LLM_TORCH_OOM,
}


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, fail: bool = False):
        if fail:
            raise FloatingPointError("bad activations")
        return self.lin(x)


class SubBlock(Block):  # inherits forward
    pass


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = Block()
        self.b = Block()

    def forward(self, x):
        return self.b(self.a(x))


@pytest.fixture
def instr(telemetry):
    created = []

    def make(**kw):
        i = TorchInstrumentor()
        i.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider, **kw)
        created.append(i)
        return i

    yield make
    for i in created:
        i.uninstrument()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cpu_only_registers_nothing_and_logs_nothing(instr, telemetry, caplog):
    caplog.set_level(logging.DEBUG, logger="otel_llm")
    errors_before = _selftelemetry.error_counts()
    inst = instr()
    assert inst.memory_metrics_registered is False
    assert not TORCH_METRICS & set(telemetry.metrics())
    assert telemetry.spans() == []  # no modules chosen: nothing wrapped
    assert "forward" not in Net.__dict__ or not getattr(Net.forward, "_otel_llm_forward", False)
    assert _selftelemetry.error_counts() == errors_before
    assert not [r for r in caplog.records if r.name.startswith("otel_llm")]


def test_class_forward_spans_nest_under_parent(instr, telemetry):
    original = Block.__dict__["forward"]
    instr(modules=[Block, Net])
    Net()(torch.ones(1, 4))
    spans = telemetry.spans()
    assert [s.name for s in spans] == ["forward Block", "forward Block", "forward Net"]
    net = spans[-1]
    assert all(s.parent.span_id == net.context.span_id for s in spans[:2])
    assert spans[0].attributes[sc.OTEL_LLM_TORCH_MODULE] == "Block"
    TorchInstrumentor().uninstrument()
    assert Block.__dict__["forward"] is original
    assert "forward" in Net.__dict__ and not getattr(Net.__dict__["forward"], "_otel_llm_forward", False)


def test_inherited_forward_restored_by_removal(instr, telemetry):
    instr(modules=[SubBlock])
    SubBlock()(torch.ones(1, 4))
    Block()(torch.ones(1, 4))  # the parent class is not chosen
    assert [s.name for s in telemetry.spans()] == ["forward SubBlock"]
    TorchInstrumentor().uninstrument()
    assert "forward" not in SubBlock.__dict__


def test_instance_only(instr, telemetry):
    net = Net()
    instr(modules=[net.a])
    out = net(torch.ones(1, 4))
    assert out.shape == (1, 4)
    assert [s.name for s in telemetry.spans()] == ["forward Block"]
    TorchInstrumentor().uninstrument()
    assert "forward" not in net.a.__dict__


def test_forward_exception_propagates_with_error_type(instr, telemetry):
    instr(modules=[Block])
    with pytest.raises(FloatingPointError, match="bad activations"):
        Block()(torch.ones(1, 4), fail=True)
    (span,) = telemetry.spans()
    assert span.attributes[sc.ERROR_TYPE] == "FloatingPointError"
    assert span.status.status_code.name == "ERROR"


def test_real_model_layers_by_dotted_path_and_env(instr, telemetry, tiny_model, monkeypatch):
    model, tok = tiny_model
    monkeypatch.setenv("OTEL_LLM_TORCH_MODULES", "transformers.models.llama.modeling_llama.LlamaDecoderLayer")
    instr()
    with torch.no_grad():
        model(**tok("hello", return_tensors="pt"))
    names = [s.name for s in telemetry.spans()]
    assert names == ["forward LlamaDecoderLayer"] * model.config.num_hidden_layers


def test_bare_class_name_and_bad_names(instr, telemetry):
    instr(modules=["Net"])
    Net()(torch.ones(1, 4))
    assert [s.name for s in telemetry.spans()] == ["forward Net"]
    TorchInstrumentor().uninstrument()
    with pytest.raises(ValueError, match="dotted path"):
        TorchInstrumentor().instrument(modules=["NoSuchModuleAnywhere"])
    with pytest.raises(ValueError, match="not an nn.Module"):
        TorchInstrumentor().instrument(modules=[42])
    assert not TorchInstrumentor().is_instrumented_by_opentelemetry


class FakeCuda:
    """Simulates the GPU only: two devices with allocator statistics."""

    def __init__(self, initialized=True):
        self._init = initialized

    def available(self):
        return True

    def initialized(self):
        return self._init

    def devices(self):
        return [(0, "GPU-aaaa"), (1, "GPU-bbbb")]

    def stats(self, index):
        return {"allocated": 1000 + index, "reserved": 4096, "peak": 2000 + index, "ooms": index}


def test_memory_metrics_with_cuda_source(instr, telemetry):
    inst = instr(cuda_source=FakeCuda())
    assert inst.memory_metrics_registered is True
    allocated = {p.attributes[sc.HW_ID]: p.value for p in telemetry.points(sc.OTEL_LLM_TORCH_MEMORY_ALLOCATED)}
    assert allocated == {"GPU-aaaa": 1000, "GPU-bbbb": 1001}
    peak = {p.attributes[sc.OTEL_LLM_GPU_INDEX]: p.value for p in telemetry.points(sc.OTEL_LLM_TORCH_MEMORY_PEAK)}
    assert peak == {0: 2000, 1: 2001}
    assert sorted(p.value for p in telemetry.points(sc.OTEL_LLM_TORCH_OOM)) == [0, 1]
    assert {p.value for p in telemetry.points(sc.OTEL_LLM_TORCH_MEMORY_RESERVED)} == {4096}


def test_memory_metrics_wait_for_cuda_initialisation(instr, telemetry):
    instr(cuda_source=FakeCuda(initialized=False))
    assert not TORCH_METRICS & {k for k, v in telemetry.metrics().items() if v}


def test_failing_cuda_probe_is_counted_not_raised(instr, telemetry):
    class Broken(FakeCuda):
        def stats(self, index):
            raise RuntimeError("driver went away")

    before = _selftelemetry.error_counts().get(("torch.memory", "RuntimeError"), 0)
    instr(cuda_source=Broken())
    telemetry.metrics()
    assert _selftelemetry.error_counts()[("torch.memory", "RuntimeError")] > before
