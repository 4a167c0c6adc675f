"""Sinks for detections and incidents (``otel_llm.exporters``)."""

__all__: list[str] = []
