"""The reference OpenAI-compatible server (``otel-llm serve``) and a helper to run ASGI apps in a thread."""

from otel_llm.server._runner import ServerHandle, run_in_thread

__all__ = ["ServerHandle", "run_in_thread"]
