"""The package layout the design card asks for: one import path, no generic top-level names."""

from __future__ import annotations

import importlib
import importlib.util

import pytest


@pytest.mark.parametrize(
    "module",
    ["otel_llm", "otel_llm.collectors", "otel_llm.processors", "otel_llm.exporters",
     "otel_llm.dashboards", "otel_llm.alert_rules", "otel_llm.semconv"],
)
def test_imports_as_otel_llm(module):
    assert importlib.import_module(module).__name__ == module


def test_wheel_installs_only_otel_llm(tmp_path):
    """Build the wheel: every module lands under otel_llm/, artifacts ship as package data."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(root)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("otel_llm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"otel_llm", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for sub in ("collectors", "processors", "exporters", "dashboards", "alert_rules"):
        assert f"otel_llm/{sub}/__init__.py" in names
    assert "otel_llm/models/_corpus.txt" in names


def test_generic_names_are_not_importable():
    for name in ("collectors", "processors", "exporters", "dashboards", "alert_rules"):
        spec = importlib.util.find_spec(name)
        assert spec is None or "site-packages" not in (spec.origin or "")


def test_processors_and_collectors_import_without_heavy_dependencies():
    import subprocess
    import sys

    code = (
        "import sys, otel_llm.processors, otel_llm.collectors, otel_llm.exporters; "
        "heavy = [m for m in ('statsforecast', 'pyod', 'torch', 'transformers', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
