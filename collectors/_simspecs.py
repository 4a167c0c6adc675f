"""Per-model constants of the GPU simulator, taken from real scrapes and NVIDIA spec sheets.

Idle values come from the dcgm-exporter scrapes shipped in
``tests/fixtures/dcgm/scrapes`` (L40S 35.7 W / 32 C / 210 MHz, L4 16.4 W /
31 C, H100 idle 66-69 W / 26-30 C, T4 at its 70 W cap: 68.2 W / 74 C /
660 MHz SM clock / 5000 MHz memory clock). Memory totals are FB_USED +
FB_FREE + FB_RESERVED of those scrapes (H100 and A100: NVIDIA's FB size).
Power limits, boost clocks and slowdown temperatures are the public spec-sheet
/ ``nvidia-smi -q`` values of each board.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    """``modelName`` exactly as DCGM prints it."""
    power_limit_w: float
    idle_power_w: float
    full_load_power_w: float
    """Power the workload would draw at full utilisation and max clocks (above the limit -> power capping)."""
    memory_total_mib: int
    memory_reserved_mib: int
    sm_clock_idle_mhz: int
    sm_clock_max_mhz: int
    mem_clock_idle_mhz: int
    mem_clock_max_mhz: int
    temp_idle_c: float
    temp_full_load_c: float
    slowdown_temp_c: float
    hbm: bool
    """HBM boards report a memory temperature; GDDR boards print 0."""
    nvlink: bool
    row_remap: bool
    """Ampere and newer remap rows; Turing (T4) retires pages instead."""
    pci_bus_base: int = 0x53


SPECS: dict[str, GpuSpec] = {
    "H100": GpuSpec("NVIDIA H100 80GB HBM3", 700.0, 67.5, 640.0, 81559, 584, 345, 1980, 2619, 2619,
                    28.0, 68.0, 87.0, hbm=True, nvlink=True, row_remap=True, pci_bus_base=0x53),
    "A100": GpuSpec("NVIDIA A100-SXM4-40GB", 400.0, 52.0, 370.0, 40960, 428, 210, 1410, 1215, 1215,
                    30.0, 66.0, 85.0, hbm=True, nvlink=True, row_remap=True, pci_bus_base=0x07),
    "L4": GpuSpec("NVIDIA L4", 72.0, 16.4, 71.0, 23033, 470, 210, 2040, 405, 6251,
                  31.0, 72.0, 88.0, hbm=False, nvlink=False, row_remap=True, pci_bus_base=0x00),
    "T4": GpuSpec("Tesla T4", 70.0, 12.0, 160.0, 15358, 447, 300, 1590, 405, 5000,
                  35.0, 75.0, 85.0, hbm=False, nvlink=False, row_remap=False, pci_bus_base=0x37),
    "L40S": GpuSpec("NVIDIA L40S", 350.0, 35.7, 330.0, 46067, 608, 210, 2520, 405, 9001,
                    32.0, 70.0, 88.0, hbm=False, nvlink=False, row_remap=True, pci_bus_base=0x00),
}
_ALIASES = {
    "h100": "H100", "h100-80gb": "H100", "nvidia h100 80gb hbm3": "H100",
    "a100": "A100", "a100-sxm4-40gb": "A100", "nvidia a100-sxm4-40gb": "A100",
    "l4": "L4", "nvidia l4": "L4", "t4": "T4", "tesla t4": "T4", "l40s": "L40S", "nvidia l40s": "L40S",
}


def get_spec(model: str) -> GpuSpec:
    """The spec for a short name (H100, A100, L4, T4, L40S) or a DCGM model name."""
    key = _ALIASES.get(model.strip().lower(), model.strip())
    try:
        return SPECS[key]
    except KeyError:
        raise ValueError(f"unknown simulated GPU model {model!r}; choose one of: {', '.join(SPECS)}") from None
