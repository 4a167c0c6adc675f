"""dcgm-exporter text -> :class:`GpuSample` list, tolerant of what real exporters print.

Parsing is done by ``prometheus_client.parser`` (the maintained reference
parser). That parser raises on the first bad line; a scrape with one
malformed line must still yield every good one, so on failure the text is
re-parsed one sample line at a time and the bad lines are skipped and
counted. Label spellings accepted (case-insensitive): ``UUID``/``uuid``/
``gpu_uuid``, ``Hostname``/``hostname``/``host``, ``modelName``/``model_name``, ``gpu``, MIG ``GPU_I_PROFILE``/``GPU_I_ID``,
Kubernetes ``pod``/``namespace``/``container`` (and 1.x ``pod_name``/
``pod_namespace``/``container_name``). Metric names: pre-4.6, DCGM 4.6 and
1.x lower-case spellings, all mapped to the numeric field id.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from otel_llm.collectors._fields import field_id
from otel_llm.collectors._model import GpuSample
from prometheus_client.parser import text_string_to_metric_families

from otel_llm import semconv as sc

# lower-cased Prometheus label -> GpuSample.labels key (OTel attribute names).
_CONTEXT_LABELS = {
    "gpu_i_profile": sc.OTEL_LLM_GPU_MIG_PROFILE,
    "gpu_i_id": sc.OTEL_LLM_GPU_MIG_INSTANCE,
    "pod": sc.K8S_POD_NAME,
    "pod_name": sc.K8S_POD_NAME,
    "namespace": sc.K8S_NAMESPACE_NAME,
    "pod_namespace": sc.K8S_NAMESPACE_NAME,
    "container": sc.K8S_CONTAINER_NAME,
    "container_name": sc.K8S_CONTAINER_NAME,
    "dcgm_fi_driver_version": sc.HW_DRIVER_VERSION,
    "dcgm_fi_system_driver_version": sc.HW_DRIVER_VERSION,
    "driver_version": sc.HW_DRIVER_VERSION,
    "pci_bus_id": "pci_bus_id",
    "device": "device",
}


@dataclass
class ParseStats:
    """What one parse skipped, by reason (all counted, none fatal)."""

    lines: int = 0
    samples: int = 0
    malformed: int = 0
    unknown_metric: int = 0
    no_uuid: int = 0
    non_finite: int = 0


def _named(fam) -> list[tuple[str, str, dict, float]]:
    """(name as written, alternative, labels, value). The parser renames a counter's samples
    ``X`` -> ``X_total``; the family name is what the exporter wrote."""
    out = []
    for smp in fam.samples:
        if fam.type == "counter" and smp.name == fam.name + "_total":
            out.append((fam.name, smp.name, smp.labels, smp.value))
        else:
            out.append((smp.name, smp.name, smp.labels, smp.value))
    return out


def _samples(text: str, stats: ParseStats) -> list[tuple[str, str, dict, float]]:
    """All samples; on a parser error fall back to one sample line at a time, counting bad lines."""
    try:
        return [row for fam in text_string_to_metric_families(text) for row in _named(fam)]
    except Exception:
        pass
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            for fam in text_string_to_metric_families(line + "\n"):
                out.extend(_named(fam))
        except Exception:
            stats.malformed += 1
    return out


def parse_exposition(text: str, *, timestamp: float | None = None, stats: ParseStats | None = None) -> list[GpuSample]:
    """Parse dcgm-exporter ``/metrics`` text into one sample per GPU (or MIG instance).

    Never raises for bad content: malformed lines, unknown metric names,
    series without a GPU UUID and non-finite values are skipped and counted
    in ``stats``. Absent fields are absent from ``fields`` (never 0).
    """
    stats = stats if stats is not None else ParseStats()
    if text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark is not a malformed line
    ts = time.time() if timestamp is None else timestamp
    stats.lines += text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    gpus: dict[tuple[str, str | None], dict] = {}
    name_cache: dict[str, int | None] = {}
    for name, alt, labels, value in _samples(text, stats):
        fid = name_cache.get(name, -1)
        if fid == -1:
            fid = field_id(name)
            if fid is None and alt != name:
                fid = field_id(alt)
            name_cache[name] = fid
        if fid is None:
            stats.unknown_metric += 1
            continue
        if value is None or not math.isfinite(value):
            stats.non_finite += 1
            continue
        low = {k.lower(): v for k, v in labels.items()}
        uuid = low.get("uuid") or low.get("gpu_uuid")
        if not uuid:
            stats.no_uuid += 1
            continue
        mig = low.get("gpu_i_id") or None
        entry = gpus.get((uuid, mig))
        if entry is None:
            ctx = {}
            for key, attr in _CONTEXT_LABELS.items():
                v = low.get(key)
                if v:
                    ctx[attr] = v
            idx = low.get("gpu")
            entry = {
                "fields": {},
                "index": int(idx) if idx and idx.isdigit() else None,
                "model": low.get("modelname") or low.get("model_name") or None,
                "host": low.get("hostname") or low.get("host") or None,
                "labels": ctx,
            }
            gpus[(uuid, mig)] = entry
        entry["fields"][fid] = float(value)
        stats.samples += 1
    return [
        GpuSample(uuid=uuid, timestamp=ts, fields=e["fields"], index=e["index"], model=e["model"],
                  host=e["host"], labels=e["labels"])
        for (uuid, _mig), e in gpus.items()
    ]
