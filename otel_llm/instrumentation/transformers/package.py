"""Supported versions of the instrumented library (read by ``instrumentation_dependencies()``)."""

_instruments = ("transformers >= 4.45",)
