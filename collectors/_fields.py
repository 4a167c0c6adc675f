"""DCGM field identifiers: names (old, new and legacy 1.x) -> numeric ids, and back.

DCGM 4.6 renamed 325 fields (``DCGM_FI_DEV_POWER_USAGE`` ->
``DCGM_FI_DEV_BOARD_POWER_WATTS`` ...) but kept every numeric id, so the id is
the key of every sample. The tables ship as package data in ``_data/`` (see
its README for provenance): the DCGM 4.6.0 id table, the deprecated-name map,
dcgm-exporter's default counter list (types and help text, used by the
simulator's exposition) and our map of dcgm-exporter 1.x lower-case names.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from importlib import resources
from typing import Final


class F:
    """Numeric ids of the fields otel-llm reads (DCGM 4.6.0 ``dcgm_fields.py``)."""

    DRIVER_VERSION: Final = 1
    SM_CLOCK: Final = 100  # MHz
    MEM_CLOCK: Final = 101  # MHz
    CLOCKS_EVENT_REASONS: Final = 112  # bitmask (a.k.a. CLOCK_THROTTLE_REASONS)
    MAX_SM_CLOCK: Final = 113
    MEMORY_TEMP: Final = 140  # C
    GPU_TEMP: Final = 150  # C
    POWER_USAGE: Final = 155  # W
    TOTAL_ENERGY: Final = 156  # mJ since boot (counter)
    POWER_LIMIT_ENFORCED: Final = 164  # W
    PCIE_TX_THROUGHPUT: Final = 200  # KB/s (NVML)
    PCIE_RX_THROUGHPUT: Final = 201
    PCIE_REPLAY: Final = 202  # counter
    GPU_UTIL: Final = 203  # %
    MEM_COPY_UTIL: Final = 204  # %
    ENC_UTIL: Final = 206  # %
    DEC_UTIL: Final = 207  # %
    XID: Final = 230  # the LAST XID code seen
    POWER_VIOLATION: Final = 240  # ns throttled (counter)
    THERMAL_VIOLATION: Final = 241
    SYNC_BOOST_VIOLATION: Final = 242
    BOARD_LIMIT_VIOLATION: Final = 243
    LOW_UTIL_VIOLATION: Final = 244
    RELIABILITY_VIOLATION: Final = 245
    FB_TOTAL: Final = 250  # MiB
    FB_FREE: Final = 251
    FB_USED: Final = 252
    FB_RESERVED: Final = 253
    ECC_SBE_VOL: Final = 310  # counters
    ECC_DBE_VOL: Final = 311
    ECC_SBE_AGG: Final = 312
    ECC_DBE_AGG: Final = 313
    RETIRED_SBE: Final = 390
    RETIRED_DBE: Final = 391
    RETIRED_PENDING: Final = 392
    ROW_REMAP_UNCORRECTABLE: Final = 393  # counter
    ROW_REMAP_CORRECTABLE: Final = 394  # counter
    ROW_REMAP_FAILED: Final = 395  # 0/1
    ROW_REMAP_PENDING: Final = 396  # 0/1
    NVLINK_CRC_FLIT_ERRORS: Final = 409
    NVLINK_CRC_DATA_ERRORS: Final = 419
    NVLINK_REPLAY_ERRORS: Final = 429
    NVLINK_RECOVERY_ERRORS: Final = 439
    NVLINK_BANDWIDTH_TOTAL: Final = 449
    VGPU_LICENSE_STATUS: Final = 526
    GR_ENGINE_ACTIVE: Final = 1001  # ratio 0..1
    SM_ACTIVE: Final = 1002
    SM_OCCUPANCY: Final = 1003
    TENSOR_ACTIVE: Final = 1004
    DRAM_ACTIVE: Final = 1005
    FP64_ACTIVE: Final = 1006
    FP32_ACTIVE: Final = 1007
    FP16_ACTIVE: Final = 1008
    PCIE_TX_BYTES: Final = 1009  # bytes/s
    PCIE_RX_BYTES: Final = 1010
    NVLINK_TX_BYTES: Final = 1011
    NVLINK_RX_BYTES: Final = 1012


# Fields DCGM stores as doubles: dcgm-exporter prints them with six decimals
# ("%f"); every other numeric field prints as an integer.
FLOAT_FIELDS: Final = frozenset({155, 157, 160, 161, 162, 163, 164, 254, *range(1001, 1009), *range(1013, 1017)})

# Fields whose value only grows (reset only by a reboot/driver reload).
COUNTER_FIELDS: Final = frozenset(
    {156, 202, 240, 241, 242, 243, 244, 245, 310, 311, 312, 313, 390, 391, 393, 394, 409, 419, 429, 439, 449}
)

# Bits of DCGM_FI_DEV_CLOCKS_EVENT_REASONS (NVML nvmlClocksEventReason*).
THROTTLE_REASONS: Final = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# Violation counters (ns throttled) -> the reason they stand for, used when the
# bitmask itself is not exported (dcgm-exporter's default counter list).
VIOLATION_REASONS: Final = {240: "sw_power_cap", 241: "sw_thermal_slowdown", 242: "sync_boost",
                            243: "hw_slowdown", 245: "hw_slowdown"}


def _text(name: str) -> str:
    return resources.files("otel_llm.collectors._data").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _tables() -> tuple[dict[str, int], dict[int, str], dict[int, str], dict[int, str]]:
    """(name->id for every known spelling, id->DCGM 4.6 name, id->exporter (pre-4.6) name, id->1.x name)."""
    by_name: dict[str, int] = {}
    current: dict[int, str] = {}
    for row in csv.DictReader(io.StringIO(_text("dcgm-4.6.0-field-ids.csv"))):
        fid = int(row["field_id"])
        by_name[row["field_name"]] = fid
        if not row.get("note"):
            current.setdefault(fid, row["field_name"])
    old: dict[int, str] = {}
    for row in csv.DictReader(io.StringIO(_text("dcgm-4.6.0-deprecated-field-names.csv"))):
        fid = int(row["field_id"])
        by_name[row["deprecated_name"]] = fid
        by_name.setdefault(row["current_name"], fid)
        old.setdefault(fid, row["deprecated_name"])
    legacy: dict[int, str] = {}
    for row in csv.DictReader(io.StringIO(_text("dcgm-exporter-1.x-field-map.csv"))):
        fid = int(row["field_id"])
        by_name[row["legacy_name"]] = fid
        legacy.setdefault(fid, row["legacy_name"])
    return by_name, current, old, legacy


def field_id(name: str) -> int | None:
    """The numeric id for any spelling: DCGM 4.6 name, pre-4.6 name, or 1.x lower-case name."""
    return _tables()[0].get(name)


def field_name(fid: int, scheme: str = "exporter") -> str | None:
    """The name of ``fid`` as ``scheme`` spells it.

    ``exporter``: the pre-4.6 names every released dcgm-exporter prints
    (``DCGM_FI_DEV_POWER_USAGE``); ``dcgm46``: DCGM 4.6 names
    (``DCGM_FI_DEV_BOARD_POWER_WATTS``); ``legacy``: dcgm-exporter 1.x
    (``dcgm_power_usage``), None where 1.x had no name.
    """
    _, current, old, legacy = _tables()
    if scheme == "legacy":
        return legacy.get(fid)
    if scheme == "dcgm46":
        return current.get(fid)
    if scheme == "exporter":
        return old.get(fid) or current.get(fid)
    raise ValueError(f"unknown field-name scheme {scheme!r}; use exporter, dcgm46 or legacy")


@functools.cache
def exporter_counters() -> dict[int, tuple[str, str]]:
    """id -> (Prometheus type, help) from dcgm-exporter's default-counters.csv (commented lines included)."""
    enabled: dict[int, tuple[str, str]] = {}
    disabled: dict[int, tuple[str, str]] = {}
    for raw in _text("dcgm-exporter-default-counters.csv").splitlines():
        line = raw.strip()
        target = disabled if line.startswith("#") else enabled
        parts = [p.strip() for p in line.lstrip("#").split(",", 2)]
        if len(parts) != 3 or not parts[0].startswith("DCGM_FI_"):
            continue
        fid = field_id(parts[0])
        if fid is not None:
            target.setdefault(fid, (parts[1], parts[2]))
    return {**disabled, **enabled}


@functools.cache
def supported_fields() -> dict[str, tuple[frozenset[int], frozenset[int]]]:
    """GPU model name -> (supported ids, unsupported ids), as DCGM reported them on real GPUs."""
    raw = json.loads(_text("supported-fields.json"))
    out: dict[str, tuple[frozenset[int], frozenset[int]]] = {}
    for model, entry in raw.items():
        sup = frozenset(i for i in map(field_id, entry["supported_fields"]) if i is not None)
        uns = frozenset(i for i in map(field_id, entry["unsupported_fields"]) if i is not None)
        out[model] = (sup, uns)
    return out


def throttle_reasons(mask: int) -> list[str]:
    """Names of the reasons set in a CLOCKS_EVENT_REASONS bitmask."""
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
