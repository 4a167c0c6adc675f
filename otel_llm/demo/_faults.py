"""Fault schedules for the demo: what goes wrong, when, and what the true root cause is.

A schedule is a list of :class:`Fault`. Times are seconds of demo (wall-clock)
time after the start, or a percentage of ``--duration`` (``"40%"``). The YAML
form (``--faults FILE``)::

    faults:
      - kind: gpu_throttle      # cooling failure: temperature climbs past slowdown (~20 s),
        start: 60               # the SM clock drops, decode on that GPU slows (simulator physics)
        duration: 40            # seconds, or "20%" of --duration
        gpu: 1                  # GPU index
      - kind: gpu_xid           # XID 79: the GPU falls off the bus, its series vanish
        start: 120
        duration: 20
        gpu: 1
        xid: 79                 # other codes (48, 63, 64, 74, 94, 95) leave the GPU serving
      - kind: slow_dependency   # the retrieval service slows by `factor`
        start: 90
        duration: 20
        factor: 10
      - kind: burst             # arrivals multiplied by `multiplier`: queue / KV cache saturate
        start: 150
        duration: 15
        multiplier: 5

``load_faults`` validates everything up front and raises ``ValueError`` with
the file, the entry and the fix. ``default_schedule(duration)`` spreads the
four kinds after a fault-free warm-up (the first 28% of the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from otel_llm.demo._telemetry import SERVICE_LLM, SERVICE_RETRIEVAL

KIND_GPU_THROTTLE = "gpu_throttle"
KIND_GPU_XID = "gpu_xid"
KIND_SLOW_DEPENDENCY = "slow_dependency"
KIND_BURST = "burst"
KINDS = (KIND_GPU_THROTTLE, KIND_GPU_XID, KIND_SLOW_DEPENDENCY, KIND_BURST)

_PARAMS: dict[str, dict[str, Any]] = {
    KIND_GPU_THROTTLE: {"gpu": 1},
    KIND_GPU_XID: {"gpu": 1, "xid": 79},
    KIND_SLOW_DEPENDENCY: {"service": SERVICE_RETRIEVAL, "factor": 10.0},
    KIND_BURST: {"multiplier": 5.0},
}
_COMMON = {"kind", "start", "duration", "end", "name"}


@dataclass(frozen=True)
class RootCause:
    """The true root cause of an injected fault, in the terms RCA ranks."""

    kind: str
    """``gpu`` | ``downstream`` | ``stage``."""
    service: str
    operation: str | None = None
    gpu: str | None = None
    """GPU UUID for GPU faults."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Fault:
    kind: str
    start: float
    """Seconds after the demo start."""
    end: float
    params: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start

    def active(self, t: float) -> bool:
        return self.start <= t < self.end

    def label(self) -> str:
        return self.name or self.kind

    def root_cause(self, gpu_uuids: Sequence[str]) -> RootCause:
        if self.kind in (KIND_GPU_THROTTLE, KIND_GPU_XID):
            idx = int(self.params["gpu"])
            uuid = gpu_uuids[idx] if 0 <= idx < len(gpu_uuids) else None
            return RootCause("gpu", SERVICE_LLM, None, uuid)
        if self.kind == KIND_SLOW_DEPENDENCY:
            return RootCause("downstream", str(self.params.get("service", SERVICE_RETRIEVAL)))
        return RootCause("stage", SERVICE_LLM, "queue")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.label(), "start": self.start, "end": self.end,
                "params": dict(self.params)}


def default_schedule(duration_s: float) -> list[Fault]:
    """The four fault kinds after a fault-free warm-up (the first 28% of the run)."""
    d = float(duration_s)
    slots = [  # (kind, start fraction, length fraction)
        (KIND_SLOW_DEPENDENCY, 0.28, 0.08),
        (KIND_GPU_THROTTLE, 0.38, 0.25),  # the heat-up takes ~30 s before the clock drops
        (KIND_BURST, 0.72, 0.07),  # >= 15 s after the throttle: its incident has resolved
        (KIND_GPU_XID, 0.85, 0.10),  # last: a GPU that fell off the bus keeps XID 79 as its last XID
    ]
    return [Fault(k, round(d * s, 1), round(d * (s + n), 1), dict(_PARAMS[k])) for k, s, n in slots]


def _time(value: Any, duration_s: float, where: str, key: str) -> float:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f"{where}: {key} {value!r} is not a percentage like '40%'") from None
        return duration_s * pct / 100.0
    if isinstance(value, str) and value.strip().endswith("s"):
        value = value.strip()[:-1]
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key} must be seconds (e.g. 60 or '60s') or a percentage ('40%'), "
                         f"got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
    return out


def parse_faults(doc: Any, duration_s: float, *, n_gpus: int = 2, source: str = "faults") -> list[Fault]:
    """Validate a parsed YAML document (see the module docstring) into faults."""
    if isinstance(doc, Mapping):
        if set(doc) - {"faults"}:
            raise ValueError(f"{source}: unknown top-level key(s) {sorted(set(doc) - {'faults'})}; "
                             "expected only 'faults: [...]'")
        doc = doc.get("faults")
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError(f"{source}: 'faults' must be a list of fault entries, got {type(doc).__name__}")
    out: list[Fault] = []
    for i, entry in enumerate(doc):
        where = f"{source}: faults[{i}]"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping with kind/start/duration, got {entry!r}")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
        allowed = _COMMON | set(_PARAMS[kind])
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"{where} ({kind}): unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        if "start" not in entry:
            raise ValueError(f"{where} ({kind}): 'start' is required")
        start = _time(entry["start"], duration_s, where, "start")
        if "end" in entry and "duration" in entry:
            raise ValueError(f"{where} ({kind}): give 'duration' or 'end', not both")
        if "end" in entry:
            end = _time(entry["end"], duration_s, where, "end")
        elif "duration" in entry:
            end = start + _time(entry["duration"], duration_s, where, "duration")
        else:
            raise ValueError(f"{where} ({kind}): 'duration' (or 'end') is required")
        if end <= start:
            raise ValueError(f"{where} ({kind}): must end after it starts (start {start:g}s, end {end:g}s)")
        if start >= duration_s:
            raise ValueError(f"{where} ({kind}): starts at {start:g}s, after the run ends ({duration_s:g}s); "
                             "raise --duration or move it earlier")
        params = dict(_PARAMS[kind])
        for key in _PARAMS[kind]:
            if key in entry:
                params[key] = entry[key]
        _check_params(kind, params, where, n_gpus)
        out.append(Fault(kind, start, min(end, duration_s), params, str(entry.get("name") or "")))
    return sorted(out, key=lambda f: f.start)


def _check_params(kind: str, params: dict[str, Any], where: str, n_gpus: int) -> None:
    if "gpu" in params:
        g = params["gpu"]
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < n_gpus:
            raise ValueError(f"{where} ({kind}): gpu must be a GPU index in 0..{n_gpus - 1}, got {g!r}")
    for key in ("factor", "multiplier"):
        if key in params:
            v = params[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 1:
                raise ValueError(f"{where} ({kind}): {key} must be a number >= 1, got {v!r}")
            params[key] = float(v)
    if "xid" in params and (not isinstance(params["xid"], int) or params["xid"] <= 0):
        raise ValueError(f"{where} ({kind}): xid must be a positive integer XID code, got {params['xid']!r}")
    if "service" in params and params["service"] != SERVICE_RETRIEVAL:
        raise ValueError(f"{where} ({kind}): service must be {SERVICE_RETRIEVAL!r} (the demo's only dependency)")


def load_faults(spec: str | Path, duration_s: float, *, n_gpus: int = 2) -> list[Fault]:
    """``default`` | ``none`` | a YAML file path -> validated schedule."""
    text = str(spec)
    if text == "default":
        return default_schedule(duration_s)
    if text == "none":
        return []
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"--faults {text!r}: not 'default', 'none' or an existing YAML file")
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    return parse_faults(doc, duration_s, n_gpus=n_gpus, source=str(path))


def clean_intervals(faults: Sequence[Fault], duration_s: float, *, settle_s: float = 10.0) -> list[tuple[float, float]]:
    """Parts of the run with no fault active nor just ended (``settle_s`` after each end)."""
    busy = sorted((f.start, f.end + settle_s) for f in faults)
    out: list[tuple[float, float]] = []
    t = 0.0
    for a, b in busy:
        if a > t:
            out.append((t, a))
        t = max(t, b)
    if t < duration_s:
        out.append((t, duration_s))
    return out


def random_schedule(duration_s: float, *, seed: int, n_gpus: int = 2, warmup_frac: float = 0.28) -> list[Fault]:
    """The four kinds in a seeded random order, lengths and GPUs, after a clean warm-up (for eval generate)."""
    import random

    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    lengths = {KIND_GPU_THROTTLE: (0.20, 0.26), KIND_GPU_XID: (0.08, 0.12), KIND_SLOW_DEPENDENCY: (0.08, 0.12),
               KIND_BURST: (0.05, 0.08)}
    t = duration_s * warmup_frac
    budget = duration_s * 0.97 - t
    wanted = {k: rng.uniform(*lengths[k]) * duration_s for k in kinds}
    gap = max(4.0, (budget - sum(wanted.values())) / len(kinds))
    out = []
    for k in kinds:
        params = dict(_PARAMS[k])
        if "gpu" in params:
            params["gpu"] = rng.randrange(n_gpus)
        if k == KIND_SLOW_DEPENDENCY:
            params["factor"] = float(rng.choice((6, 8, 10, 15)))
        if k == KIND_BURST:
            params["multiplier"] = float(rng.choice((4, 5, 6)))
        end = min(duration_s, t + wanted[k])
        if end - t < 3.0:
            break
        out.append(Fault(k, round(t, 1), round(end, 1), params))
        t = end + gap * rng.uniform(0.8, 1.2)
    return out
