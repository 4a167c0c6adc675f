"""``OpenAIServerInstrumentor``: the middleware on every Starlette / FastAPI app, or on one.

``instrument()`` wraps ``Starlette.__call__`` (FastAPI -- hence vLLM's and
SGLang's API servers and llama-cpp-python's server -- calls it too): an app
that has not served its first request yet builds its middleware stack there
(through its own ``build_middleware_stack``) with
:class:`OpenAIServerMiddleware` as the outermost layer. ``uninstrument()``
restores the original method and turns the middleware of apps already
started into a pass-through.

``OpenAIServerInstrumentor.instrument_app(app, ...)`` instruments one app
explicitly (like contrib's ``FastAPIInstrumentor.instrument_app``); an app
instrumented that way is left alone by the global patch (never traced twice).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from otel_llm import semconv as sc
from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation.openai_server._middleware import OpenAIServerMiddleware, _Shared

__all__ = ["OpenAIServerInstrumentor"]

_FLAG = "_otel_llm_instrumented"


class OpenAIServerInstrumentor(BaseInstrumentor):
    """Instrument OpenAI-compatible Starlette/FastAPI servers.

    Options (``instrument()`` and ``instrument_app()``): ``tracer_provider``,
    ``meter_provider``, ``provider_name`` (``gen_ai.provider.name``, default
    ``openai_compatible``; e.g. ``vllm`` for vLLM's server), ``capture_content``,
    ``stall_threshold_ms``, ``paths`` (path suffix -> operation name), ``record_metrics``
    (``False``: spans only, e.g. in vLLM's server when its ``/metrics`` is bridged).
    """

    _active = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("starlette >= 0.20",)

    def _instrument(self, **kwargs: Any) -> None:
        import wrapt

        shared = _Shared(
            kwargs.get("tracer_provider"), kwargs.get("meter_provider"),
            kwargs.get("provider_name", sc.PROVIDER_OPENAI_COMPATIBLE), kwargs.get("capture_content"),
            kwargs.get("stall_threshold_ms"), kwargs.get("record_metrics", True),
        )
        paths = kwargs.get("paths")
        instrumentor = self

        async def call(wrapped, instance, args, kw):
            # First request of an app not instrumented explicitly: build its middleware stack here
            # (through the subclass's own build_middleware_stack, e.g. FastAPI's) and put ours on top.
            if instance.middleware_stack is None and not getattr(instance, _FLAG, False):
                try:
                    stack = instance.build_middleware_stack()
                    instance.middleware_stack = OpenAIServerMiddleware(
                        stack, paths=paths, enabled=lambda: instrumentor._active, _shared=shared
                    )
                    setattr(instance, _FLAG, True)
                except Exception as exc:
                    report_error("openai_server.instrument", exc)
            return await wrapped(*args, **kw)

        wrapt.wrap_function_wrapper("starlette.applications", "Starlette.__call__", call)
        type(self)._active = True

    def _uninstrument(self, **kwargs: Any) -> None:
        from starlette.applications import Starlette

        type(self)._active = False
        unwrap(Starlette, "__call__")

    @staticmethod
    def instrument_app(app, **kwargs: Any) -> None:
        """Add the middleware to ``app`` (before it serves its first request); idempotent."""
        if getattr(app, _FLAG, False):
            return
        app.add_middleware(OpenAIServerMiddleware, **kwargs)
        setattr(app, _FLAG, True)

    @staticmethod
    def uninstrument_app(app) -> None:
        """Remove the middleware added by :meth:`instrument_app` (takes effect on the next build)."""
        app.user_middleware = [m for m in app.user_middleware if m.cls is not OpenAIServerMiddleware]
        app.middleware_stack = None
        setattr(app, _FLAG, False)
