"""Fault injection for the reference server: make it slow or failing on purpose, per stage.

The demo and benchmarks use it to reproduce what a throttled or faulty GPU
does to a real server (longer prefill, slower decode steps, failed requests)
without a GPU. ``create_app()`` puts one on ``app.state.faults``; change it at
any time, from any thread::

    app.state.faults.set(prefill_delay_s=0.2, decode_delay_per_token_s=0.01)
    app.state.faults.set(fail_rate=0.1)
    app.state.faults.reset()

Delays are real sleeps inside the generation worker, so every layer sees
them exactly as it would see a slow GPU: the queue grows, the prefill and
decode spans stretch, TTFT / TPOT histograms shift, the KV-cache gauge stays
high longer.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields

__all__ = ["InjectedFault", "SlowdownController"]


class InjectedFault(RuntimeError):
    """Raised inside the generation worker when ``fail_rate`` picks a request (answered with HTTP 500)."""


@dataclass
class SlowdownController:
    """Per-stage latency and failure injection (all zero by default). Thread-safe.

    * ``prefill_delay_s`` -- added once per request before the first token;
    * ``decode_delay_per_token_s`` -- added after every generated token;
    * ``fail_rate`` -- probability (0..1) that a request fails in prefill with
      :class:`InjectedFault`; drawn from a generator seeded with ``seed``.
    """

    prefill_delay_s: float = 0.0
    decode_delay_per_token_s: float = 0.0
    fail_rate: float = 0.0
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate(self.prefill_delay_s, self.decode_delay_per_token_s, self.fail_rate)
        self._rng = random.Random(self.seed)

    @staticmethod
    def _validate(prefill: float, decode: float, fail: float) -> None:
        if prefill < 0 or decode < 0:
            raise ValueError("delays must be >= 0 seconds")
        if not 0.0 <= fail <= 1.0:
            raise ValueError(f"fail_rate must be within 0..1, got {fail}")

    def set(self, **changes: float) -> None:
        """Change any of ``prefill_delay_s``, ``decode_delay_per_token_s``, ``fail_rate`` at once."""
        allowed = {f.name for f in fields(self) if not f.name.startswith("_") and f.name != "seed"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown fault setting(s) {sorted(unknown)}; use {sorted(allowed)}")
        merged = {k: changes.get(k, getattr(self, k)) for k in allowed}
        self._validate(merged["prefill_delay_s"], merged["decode_delay_per_token_s"], merged["fail_rate"])
        with self._lock:
            for k, v in changes.items():
                setattr(self, k, float(v))

    def reset(self) -> None:
        self.set(prefill_delay_s=0.0, decode_delay_per_token_s=0.0, fail_rate=0.0)

    def should_fail(self) -> bool:
        with self._lock:
            return self.fail_rate > 0 and self._rng.random() < self.fail_rate
