"""docs/configuration.md lists every environment variable and CLI flag, generated from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_reference.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_environment_variable_is_documented():
    import otel_llm.environment_variables as ev

    text = (ROOT / "docs" / "configuration.md").read_text()
    names = [v for k, v in vars(ev).items() if k.isupper() and isinstance(v, str)]
    assert len(names) > 40
    assert [n for n in names if f"`{n}`" not in text] == []
