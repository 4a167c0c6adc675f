"""Shared fixtures.

* ``telemetry`` -- fresh in-memory tracer/meter providers (otel_llm.testing).
* ``tiny_model`` -- the seeded tiny model and tokenizer, built once per session.
* ``require`` -- skip locally when an optional dependency or binary is missing,
  but fail loudly under ``CI=true`` (CI must never silently skip).
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest

from otel_llm.testing import Telemetry

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(what: str, hint: str) -> None:
    message = f"{what} is missing: {hint}"
    if IN_CI:
        pytest.fail(message + " (CI=true: missing dependencies fail instead of skipping)")
    pytest.skip(message)


@pytest.fixture
def require():
    """``require.module("pyod")`` / ``require.binary("promtool")``."""

    class _Require:
        @staticmethod
        def module(name: str, hint: str | None = None):
            try:
                return importlib.import_module(name)
            except ImportError:
                _missing(f"Python module {name!r}", hint or "pip install -e '.[dev]'")

        @staticmethod
        def binary(*names: str, hint: str = "apt-get install prometheus prometheus-alertmanager") -> str:
            for name in names:
                path = shutil.which(name)
                if path:
                    return path
            _missing(f"binary {' or '.join(names)!r}", hint)
            return ""  # unreachable

    return _Require()


@pytest.fixture
def telemetry():
    tel = Telemetry()
    yield tel
    tel.shutdown()


@pytest.fixture(scope="session")
def tiny_model():
    from otel_llm.models import build_tiny_model

    return build_tiny_model(seed=0)
