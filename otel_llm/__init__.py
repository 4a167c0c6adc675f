"""otel-llm: OpenTelemetry-native observability for self-hosted LLM servers.

One line sets everything up from the standard ``OTEL_*`` variables::

    import otel_llm
    otel_llm.configure()

See ``README.md`` for the configuration reference.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "configure"]


def configure(**overrides: Any):
    """Set up tracer and meter providers (and instrumentors) from arguments, env vars and defaults.

    Precedence: argument > environment variable > default. Returns the
    :class:`otel_llm._configuration.Configured` handle (providers, shutdown()).
    """
    from otel_llm._configuration import configure as _configure

    return _configure(**overrides)
