"""The reference OpenAI-compatible server (``otel-llm serve``) and a helper to run ASGI apps in a thread.

``create_app()`` builds the Starlette app (tiny offline model by default);
``run_in_thread(app)`` serves it on a free loopback port for tests, benchmarks
and the demo; ``SlowdownController`` (``app.state.faults``) injects per-stage
latency and failures. See ``docs/server.md``.
"""

from otel_llm.server._app import DEFAULT_MAX_TOKENS, create_app
from otel_llm.server._faults import InjectedFault, SlowdownController
from otel_llm.server._runner import ServerHandle, run_in_thread

__all__ = ["DEFAULT_MAX_TOKENS", "InjectedFault", "ServerHandle", "SlowdownController", "create_app", "run_in_thread"]
