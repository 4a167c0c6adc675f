"""The one GPU sample model every source produces.

A :class:`GpuSample` is one GPU at one instant, keyed by its UUID, with field
values keyed by the *numeric* DCGM field id (ids are stable across DCGM's 4.6
renames; names are not). A field that the source did not report is simply
absent from ``fields`` -- never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GpuSample:
    uuid: str
    """GPU UUID (``GPU-xxxxxxxx-...``), or the MIG instance's UUID."""
    timestamp: float
    """Unix seconds when the values were read."""
    fields: Mapping[int, float]
    """DCGM field id -> value in DCGM's unit (as dcgm-exporter prints it)."""
    index: int | None = None
    model: str | None = None
    host: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    """Extra low-cardinality context: MIG profile/instance, k8s pod/namespace/container, driver."""

    @property
    def key(self) -> str:
        """The series identity: the UUID, or ``UUID/<GPU instance id>`` for a MIG instance
        (dcgm-exporter labels MIG series with the parent GPU's UUID plus ``GPU_I_ID``)."""
        mig = self.labels.get("otel_llm.gpu.mig.instance")
        return f"{self.uuid}/{mig}" if mig else self.uuid


@runtime_checkable
class Collector(Protocol):
    """A GPU data source. One method.

    ``collect()`` returns the latest sample of every GPU it can see. It must not
    raise for an absent or failing source: it returns ``[]`` (and counts the
    failure); capability is probed once, at construction.

    Optional: a source may expose ``last_collect_ok: bool`` -- False when the
    last ``collect()`` failed as a whole (scrape error, telemetry dropout).
    Consumers use it to tell "the source is down" (no data) from "the source
    answered and GPU X was missing" (GPU lost). Absent means True.
    """

    name: str

    def collect(self) -> list[GpuSample]: ...

    def close(self) -> None: ...
