"""Which GPU(s) serve this process (or this request): the key that joins spans to GPU samples.

Instrumentors stamp ``otel_llm.gpu.uuids`` on every request span from
:func:`current_gpu_uuids`. Resolution order:

1. a per-request override set with :func:`use_gpus` (a server that routes a
   request to one GPU, or a simulator in the demo);
2. :func:`set_process_gpu_uuids` (configuration / ``configure(gpu_uuids=...)``);
3. ``OTEL_LLM_GPU_UUIDS`` (comma-separated);
4. discovery by ``otel_llm.collectors._identity.discover()`` (CUDA_VISIBLE_DEVICES /
   the torch device through NVML), cached once per process;
5. ``()`` when there is no GPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import threading
from collections.abc import Iterable, Iterator

from otel_llm import environment_variables as ev

_request_gpus: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "otel_llm_request_gpus", default=None
)
_lock = threading.Lock()
_process: tuple[str, ...] | None = None
_discovered: tuple[str, ...] | None = None


def set_process_gpu_uuids(uuids: Iterable[str] | None) -> None:
    """Pin the process's GPUs (None returns to env/discovery)."""
    global _process
    with _lock:
        _process = tuple(uuids) if uuids is not None else None


@contextlib.contextmanager
def use_gpus(uuids: Iterable[str]) -> Iterator[None]:
    """Within this block (this request), spans are stamped with ``uuids``."""
    token = _request_gpus.set(tuple(uuids))
    try:
        yield
    finally:
        _request_gpus.reset(token)


def current_gpu_uuids() -> tuple[str, ...]:
    req = _request_gpus.get()
    if req is not None:
        return req
    if _process is not None:
        return _process
    env = _env_uuids(os.environ.get(ev.OTEL_LLM_GPU_UUIDS))
    if env:
        return env
    return _discover()


@functools.lru_cache(maxsize=8)
def _env_uuids(raw: str | None) -> tuple[str, ...]:
    """``OTEL_LLM_GPU_UUIDS`` parsed once per distinct value (this runs on every request span)."""
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _discover() -> tuple[str, ...]:
    global _discovered
    if _discovered is None:
        with _lock:
            if _discovered is None:
                try:
                    from otel_llm.collectors._identity import discover

                    _discovered = tuple(discover())
                except Exception:  # no GPU library, no GPU: nothing to stamp
                    _discovered = ()
    return _discovered


def _reset_for_tests() -> None:
    global _process, _discovered
    with _lock:
        _process = None
        _discovered = None
