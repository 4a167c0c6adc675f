"""Entry points: discovered by importlib.metadata and by ``opentelemetry-instrument``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

EXPECTED = {
    "otel_llm_transformers": "otel_llm.instrumentation.transformers:TransformersInstrumentor",
    "otel_llm_torch": "otel_llm.instrumentation.torch:TorchInstrumentor",
}


def test_instrumentor_entry_points_registered_and_loadable():
    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    for name, value in EXPECTED.items():
        assert name in found, f"{name} missing: reinstall with pip install -e ."
        assert found[name].value == value
        cls = found[name].load()
        assert issubclass(cls, BaseInstrumentor)
        assert get_dependency_conflicts(cls().instrumentation_dependencies()) is None


CONFIGURATOR_EP = "otel_llm = otel_llm._configuration:OtelLLMConfigurator"

# The app has no telemetry code at all: opentelemetry-instrument loads the configurator and the instrumentors.
APP = """
from otel_llm.models import build_tiny_model
model, tok = build_tiny_model()
model.generate(**tok("hello there", return_tensors="pt"), max_new_tokens=8, min_new_tokens=8, do_sample=False)
"""


def _json_objects(text: str) -> list[dict]:
    """The console exporters print one pretty JSON document after another."""
    decoder, i, out = json.JSONDecoder(), 0, []
    while True:
        start = text.find("{", i)
        if start < 0:
            return out
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        out.append(obj)
        i = end


@pytest.mark.slow
def test_opentelemetry_instrument_discovers_transformers(tmp_path: Path):
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    assert launcher.exists(), "opentelemetry-instrument is installed with opentelemetry-instrumentation"
    app = tmp_path / "app.py"
    app.write_text(APP)
    # Register the `opentelemetry_configurator` entry point the way an installed distribution does
    # (a dist-info on the path), so this test does not depend on how the package was installed.
    dist = tmp_path / "site" / "otel_llm_configurator-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: otel-llm-configurator\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(f"[opentelemetry_configurator]\n{CONFIGURATOR_EP}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "site"), env.get("PYTHONPATH")]))
    env.update(
        OTEL_PYTHON_CONFIGURATOR="otel_llm",
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="console",
        OTEL_SERVICE_NAME="entry-point-test",
        # only ours: keep the run focused and fast
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=",".join(
            ep.name for ep in entry_points(group="opentelemetry_instrumentor") if ep.name not in EXPECTED
        ),
    )
    proc = subprocess.run(
        [str(launcher), sys.executable, str(app)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = _json_objects(proc.stdout)
    spans = [d for d in docs if d.get("name") == "text_completion otel-llm-tiny"]
    assert len(spans) == 1, proc.stdout[-3000:]
    attrs = spans[0]["attributes"]
    assert attrs["gen_ai.usage.output_tokens"] == 8
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["otel_llm.response.time_to_first_token"] > 0
    assert spans[0]["resource"]["attributes"]["service.name"] == "entry-point-test"
    metric_names = {
        m["name"]
        for d in docs
        for rm in d.get("resource_metrics", [])
        for sm in rm["scope_metrics"]
        for m in sm["metrics"]
    }
    assert {"gen_ai.server.time_to_first_token", "otel_llm.server.token_gap"} <= metric_names
