"""Self-telemetry: otel-llm's own failures, logged once and counted.

Instrumentation code calls :func:`report_error` at its boundary (the
``except Exception`` around our own work inside a wrapper). The host's
exceptions never pass through here: wrappers record them with ``error.type``
and re-raise them unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from opentelemetry import metrics

from otel_llm import semconv

_logger = logging.getLogger("otel_llm")
_lock = threading.Lock()
_seen: set[tuple[str, str]] = set()
_counts: Counter[tuple[str, str]] = Counter()
_dropped: Counter[tuple[str, str]] = Counter()
_instruments: dict[str, object] = {}


def _counter(name: str, description: str):
    inst = _instruments.get(name)
    if inst is None:
        meter = metrics.get_meter("otel_llm.self")
        inst = meter.create_counter(name, unit="1", description=description)
        _instruments[name] = inst
    return inst


def report_error(component: str, exc: BaseException, *, logger: logging.Logger | None = None) -> None:
    """Log the first failure of each (component, error type) with its traceback; count every one."""
    etype = type(exc).__qualname__
    key = (component, etype)
    with _lock:
        _counts[key] += 1
        first = key not in _seen
        _seen.add(key)
    if first:
        (logger or _logger).warning(
            "otel-llm %s failed (%s: %s); the host is unaffected. Further %s errors here are counted in %s.",
            component, etype, exc, etype, semconv.OTEL_LLM_INSTRUMENTATION_ERRORS, exc_info=exc,
        )
    try:
        _counter(semconv.OTEL_LLM_INSTRUMENTATION_ERRORS, "Errors inside otel-llm (never the host's)").add(
            1, {semconv.OTEL_LLM_COMPONENT: component, semconv.ERROR_TYPE: etype}
        )
    except Exception:  # pragma: no cover - metrics must never break the caller
        pass


def report_dropped(component: str, reason: str, count: int = 1) -> None:
    """Count data dropped on purpose (bad value, full queue, eviction)."""
    if count <= 0:
        return
    with _lock:
        _dropped[(component, reason)] += count
    try:
        _counter(semconv.OTEL_LLM_DROPPED, "Data otel-llm dropped, by component and reason").add(
            count, {semconv.OTEL_LLM_COMPONENT: component, semconv.OTEL_LLM_REASON: reason}
        )
    except Exception:  # pragma: no cover
        pass


def error_counts() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(_counts)


def dropped_counts() -> dict[tuple[str, str], int]:
    with _lock:
        return dict(_dropped)


def _reset_for_tests() -> None:
    with _lock:
        _seen.clear()
        _counts.clear()
        _dropped.clear()
        _instruments.clear()
