"""OpenTelemetry for OpenAI-compatible HTTP servers (any Starlette / FastAPI app).

* :class:`OpenAIServerMiddleware` -- pure ASGI: a SERVER span per
  ``POST /v1/completions``, ``/v1/chat/completions``, ``/v1/embeddings``
  with the GenAI request attributes, response ``usage`` / ``finish_reason``,
  and, for ``stream=true``, time to first token, time per output token and
  the inter-token gap distribution measured on the SSE chunks as they pass
  (never buffered, never delayed); ``gen_ai.server.*`` metrics.
* :class:`OpenAIServerInstrumentor` -- ``instrument()`` for every app
  (``opentelemetry-instrument`` entry point ``otel_llm_openai_server``), or
  ``OpenAIServerInstrumentor.instrument_app(app)`` for one.
"""

from otel_llm.instrumentation.openai_server._instrumentor import OpenAIServerInstrumentor
from otel_llm.instrumentation.openai_server._middleware import DEFAULT_PATHS, OpenAIServerMiddleware

__all__ = ["DEFAULT_PATHS", "OpenAIServerInstrumentor", "OpenAIServerMiddleware"]
