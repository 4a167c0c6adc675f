"""Supported versions of the instrumented library (read by ``instrumentation_dependencies()``)."""

_instruments = ("torch >= 2.1",)
