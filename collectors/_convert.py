"""DCGM fields (DCGM units) -> OTel metric points (OTel units), in one table.

Used by :class:`~otel_llm.collectors.GpuMetrics` and by ``otel-llm gpu``,
so the CLI's ``metrics`` and the exported metrics never disagree.

Units: utilisations % -> ratio 0..1; FB MiB -> By; power W; energy mJ -> J;
clocks MHz -> Hz; PCIe/NVLink profiling bytes/s stay By/s. A field the
source did not report produces no point. Two documented judgement calls:
memory temperature 0 means "no sensor" on GDDR boards (L4, L40S, T4 report a
literal 0), so it is dropped; a ratio field above 1 came from a source that
printed percent (1.x exporters' "(in %)" DCP fields) and is divided by 100.
"""

from __future__ import annotations

from otel_llm.collectors._fields import THROTTLE_REASONS, F
from otel_llm.collectors._model import GpuSample
from otel_llm.collectors._state import STATE_FAILED, STATES, GpuTracker

from otel_llm import semconv as sc

MIB = 1024 * 1024

# metric name -> (instrument kind, unit, description)
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    sc.HW_GPU_UTILIZATION: ("gauge", "1", "Fraction of time the GPU (or its encoder/decoder) was busy"),
    sc.HW_GPU_MEMORY_USAGE: ("updowncounter", "By", "GPU memory used"),
    sc.HW_GPU_MEMORY_LIMIT: ("updowncounter", "By", "GPU memory size"),
    sc.HW_GPU_MEMORY_UTILIZATION: ("gauge", "1", "Fraction of GPU memory used"),
    sc.HW_POWER: ("gauge", "W", "GPU board power draw"),
    sc.HW_ENERGY: ("counter", "J", "GPU energy consumed since boot"),
    sc.HW_TEMPERATURE: ("gauge", "Cel", "GPU temperature"),
    sc.HW_ERRORS: ("counter", "{error}", "GPU errors by error.type"),
    sc.HW_STATUS: ("updowncounter", "1", "1 for the GPU's current hw.state, 0 for the others"),
    sc.OTEL_LLM_GPU_SM_ACTIVE: ("gauge", "1", "Ratio of cycles an SM has at least one warp assigned"),
    sc.OTEL_LLM_GPU_SM_OCCUPANCY: ("gauge", "1", "Ratio of resident warps to the SM maximum"),
    sc.OTEL_LLM_GPU_TENSOR_ACTIVE: ("gauge", "1", "Ratio of cycles the tensor pipe is active"),
    sc.OTEL_LLM_GPU_DRAM_ACTIVE: ("gauge", "1", "Ratio of cycles device memory is busy"),
    sc.OTEL_LLM_GPU_GRAPHICS_ACTIVE: ("gauge", "1", "Ratio of time the graphics engine is active"),
    sc.OTEL_LLM_GPU_MEMORY_COPY_UTILIZATION: ("gauge", "1", "Fraction of time memory was read or written"),
    sc.OTEL_LLM_GPU_CLOCK_SM: ("gauge", "Hz", "SM clock"),
    sc.OTEL_LLM_GPU_CLOCK_MEMORY: ("gauge", "Hz", "Memory clock"),
    sc.OTEL_LLM_GPU_THROTTLE: ("gauge", "1", "1 while a clock-event (throttle) reason is active"),
    sc.OTEL_LLM_GPU_XID_EVENTS: ("counter", "{event}", "XID events (changes of the last-XID field)"),
    sc.OTEL_LLM_GPU_PCIE_IO: ("gauge", "By/s", "PCIe traffic rate"),
    sc.OTEL_LLM_GPU_NVLINK_IO: ("gauge", "By/s", "NVLink traffic rate"),
    sc.OTEL_LLM_GPU_PCIE_REPLAYS: ("counter", "{replay}", "PCIe link replays (retries)"),
    sc.OTEL_LLM_GPU_ROW_REMAP: ("counter", "{row}", "Memory rows remapped"),
}

_RATIO_FIELDS = (
    (F.SM_ACTIVE, sc.OTEL_LLM_GPU_SM_ACTIVE),
    (F.SM_OCCUPANCY, sc.OTEL_LLM_GPU_SM_OCCUPANCY),
    (F.TENSOR_ACTIVE, sc.OTEL_LLM_GPU_TENSOR_ACTIVE),
    (F.DRAM_ACTIVE, sc.OTEL_LLM_GPU_DRAM_ACTIVE),
    (F.GR_ENGINE_ACTIVE, sc.OTEL_LLM_GPU_GRAPHICS_ACTIVE),
)
_ERROR_COUNTERS = (
    (F.ECC_SBE_VOL, "ecc_corrected"),
    (F.ECC_DBE_VOL, "ecc_uncorrected"),
    (F.NVLINK_CRC_FLIT_ERRORS, "nvlink_crc_flit"),
    (F.NVLINK_CRC_DATA_ERRORS, "nvlink_crc_data"),
    (F.NVLINK_REPLAY_ERRORS, "nvlink_replay"),
    (F.NVLINK_RECOVERY_ERRORS, "nvlink_recovery"),
)

Points = dict[str, list[tuple[dict, float]]]


def base_attributes(s: GpuSample) -> dict[str, str | int]:
    """The identifying, low-cardinality attributes of every point of one GPU."""
    attrs: dict[str, str | int] = {sc.HW_ID: s.uuid, sc.HW_TYPE: "gpu", sc.HW_VENDOR: "NVIDIA"}
    if s.model:
        attrs[sc.HW_NAME] = s.model
    if s.index is not None:
        attrs[sc.OTEL_LLM_GPU_INDEX] = s.index
    if s.host:
        attrs[sc.HOST_NAME] = s.host
    for key in (sc.OTEL_LLM_GPU_MIG_PROFILE, sc.OTEL_LLM_GPU_MIG_INSTANCE, sc.K8S_POD_NAME,
                sc.K8S_NAMESPACE_NAME, sc.K8S_CONTAINER_NAME, sc.HW_DRIVER_VERSION):
        v = s.labels.get(key)
        if v:
            attrs[key] = v
    return attrs


def _ratio(v: float) -> float:
    return v / 100.0 if v > 1.0 else v


def gauge_points(s: GpuSample) -> Points:
    """Gauge / up-down points straight from one sample's fields."""
    f = s.fields
    out: Points = {}

    def put(name: str, value: float, attrs: dict | None = None) -> None:
        out.setdefault(name, []).append((attrs or {}, value))

    for fid, task in ((F.GPU_UTIL, "general"), (F.ENC_UTIL, "encoder"), (F.DEC_UTIL, "decoder")):
        if fid in f:
            put(sc.HW_GPU_UTILIZATION, f[fid] / 100.0, {sc.HW_GPU_TASK: task})
    used = f.get(F.FB_USED)
    if F.FB_TOTAL in f:
        total = f[F.FB_TOTAL]
    elif F.FB_FREE in f and used is not None:
        total = f[F.FB_FREE] + used + f.get(F.FB_RESERVED, 0.0)
    else:
        total = None
    if used is not None:
        put(sc.HW_GPU_MEMORY_USAGE, used * MIB)
    if total:
        put(sc.HW_GPU_MEMORY_LIMIT, total * MIB)
        if used is not None:
            put(sc.HW_GPU_MEMORY_UTILIZATION, used / total)
    if F.POWER_USAGE in f:
        put(sc.HW_POWER, f[F.POWER_USAGE])
    if F.GPU_TEMP in f:
        put(sc.HW_TEMPERATURE, f[F.GPU_TEMP], {sc.HW_SENSOR_LOCATION: "gpu"})
    if f.get(F.MEMORY_TEMP):
        put(sc.HW_TEMPERATURE, f[F.MEMORY_TEMP], {sc.HW_SENSOR_LOCATION: "memory"})
    for fid, name in _RATIO_FIELDS:
        if fid in f:
            put(name, _ratio(f[fid]))
    if F.MEM_COPY_UTIL in f:
        put(sc.OTEL_LLM_GPU_MEMORY_COPY_UTILIZATION, f[F.MEM_COPY_UTIL] / 100.0)
    if F.SM_CLOCK in f:
        put(sc.OTEL_LLM_GPU_CLOCK_SM, f[F.SM_CLOCK] * 1e6)
    if F.MEM_CLOCK in f:
        put(sc.OTEL_LLM_GPU_CLOCK_MEMORY, f[F.MEM_CLOCK] * 1e6)
    for fid, direction in ((F.PCIE_TX_BYTES, "transmit"), (F.PCIE_RX_BYTES, "receive")):
        if fid in f:
            put(sc.OTEL_LLM_GPU_PCIE_IO, f[fid], {sc.NETWORK_IO_DIRECTION: direction})
    for fid, direction in ((F.NVLINK_TX_BYTES, "transmit"), (F.NVLINK_RX_BYTES, "receive")):
        if fid in f:
            put(sc.OTEL_LLM_GPU_NVLINK_IO, f[fid], {sc.NETWORK_IO_DIRECTION: direction})
    return out


def sample_points(s: GpuSample, tracker: GpuTracker) -> Points:
    """Every point for one present GPU: gauges plus cumulative counters and state sets."""
    out = gauge_points(s)
    key = s.key

    def put(name: str, value: float, attrs: dict | None = None) -> None:
        out.setdefault(name, []).append((attrs or {}, value))

    energy = tracker.counter(key, F.TOTAL_ENERGY)
    if energy is not None:
        put(sc.HW_ENERGY, energy / 1000.0)
    for fid, etype in _ERROR_COUNTERS:
        v = tracker.counter(key, fid)
        if v is not None:
            put(sc.HW_ERRORS, v, {sc.ERROR_TYPE: etype})
    if F.XID in s.fields or tracker.xid_total(key):
        put(sc.HW_ERRORS, float(tracker.xid_total(key)), {sc.ERROR_TYPE: "xid"})
    if tracker.lost_counts.get(key):
        put(sc.HW_ERRORS, float(tracker.lost_counts[key]), {sc.ERROR_TYPE: "gpu_lost"})
    for (k, code), n in tracker.xid_counts.items():
        if k == key:
            put(sc.OTEL_LLM_GPU_XID_EVENTS, float(n), {sc.OTEL_LLM_GPU_XID: code})
    replays = tracker.counter(key, F.PCIE_REPLAY)
    if replays is not None:
        put(sc.OTEL_LLM_GPU_PCIE_REPLAYS, replays)
    for fid, kind in ((F.ROW_REMAP_UNCORRECTABLE, "uncorrectable"), (F.ROW_REMAP_CORRECTABLE, "correctable")):
        v = tracker.counter(key, fid)
        if v is not None:
            put(sc.OTEL_LLM_GPU_ROW_REMAP, v, {sc.OTEL_LLM_GPU_ROW_REMAP_TYPE: kind})
    active = tracker.throttle.get(key)
    if active is not None:
        for reason in THROTTLE_REASONS.values():
            put(sc.OTEL_LLM_GPU_THROTTLE, 1.0 if reason in active else 0.0, {sc.OTEL_LLM_GPU_THROTTLE_REASON: reason})
    state = tracker.state(key)
    for st in STATES:
        put(sc.HW_STATUS, 1.0 if st == state else 0.0, {sc.HW_STATE: st})
    return out


def lost_points(s: GpuSample, tracker: GpuTracker) -> Points:
    """A lost GPU reports only its status (failed) and its error counters."""
    key = s.key
    out: Points = {sc.HW_STATUS: [({sc.HW_STATE: st}, 1.0 if st == STATE_FAILED else 0.0) for st in STATES]}
    out[sc.HW_ERRORS] = [({sc.ERROR_TYPE: "gpu_lost"}, float(tracker.lost_counts.get(key, 0)))]
    return out



def primary_values(points: Points) -> dict[str, float]:
    """One value per metric name for ``--json``: the general task, the GPU sensor, summed directions."""
    out: dict[str, float] = {}
    for name, pts in points.items():
        if name in (sc.HW_STATUS, sc.OTEL_LLM_GPU_THROTTLE, sc.OTEL_LLM_GPU_XID_EVENTS):
            continue
        if name == sc.HW_GPU_UTILIZATION:
            pts = [p for p in pts if p[0].get(sc.HW_GPU_TASK) == "general"] or pts[:0]
        elif name == sc.HW_TEMPERATURE:
            pts = [p for p in pts if p[0].get(sc.HW_SENSOR_LOCATION) == "gpu"] or pts[:0]
        if not pts:
            continue
        out[name] = pts[0][1] if len(pts) == 1 else sum(v for _, v in pts)
    return out
