"""OTel metric name -> Prometheus series name, in one place.

Every PromQL expression in ``dashboards/`` and ``alert_rules/`` takes its
metric names from :data:`M` (our OTel-emitted series) and :data:`DCGM`
(raw dcgm-exporter series). The translation is the one
``opentelemetry-exporter-prometheus`` (0.66b2) and the OTel -> Prometheus
compatibility spec apply, verified in ``tests/test_rules.py`` by rendering
real instruments through ``PrometheusMetricReader``:

* dots and other invalid characters -> ``_``;
* the UCUM unit mapped to a suffix (``s`` -> ``_seconds``, ``By`` -> ``_bytes``,
  ``Cel`` -> ``_celsius``, ``W`` -> ``_watts``, ``J`` -> ``_joules``,
  ``Hz`` -> ``_hertz``, ``%`` -> ``_percent``); ``1`` and annotations such as
  ``{token}`` add nothing;
* monotonic counters get ``_total``; up-down counters and gauges become
  Prometheus gauges; histograms give ``_bucket`` / ``_sum`` / ``_count``;
* attribute keys get the same sanitising (``gen_ai.request.model`` ->
  ``gen_ai_request_model``, ``hw.id`` -> ``hw_id``).

Band gauges (``otel_llm.threshold.*``) carry the unit of the series they
bound, so their Prometheus name may end in any unit suffix: use
:func:`band_selector`, which matches all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from otel_llm import semconv as sc

Kind = Literal["counter", "updowncounter", "gauge", "histogram"]

# Same tables as opentelemetry.exporter.prometheus._mapping (kept here so the
# mapping does not depend on a private module; a test asserts they agree).
_UNIT_SUFFIX = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes",
    "GiBy": "gibibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "m": "meters",
    "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "Cel": "celsius",
    "Hz": "hertz", "1": "", "%": "percent",
}
_INVALID = re.compile(r"[^a-zA-Z0-9:]+")
_INVALID_LABEL = re.compile(r"[^a-zA-Z0-9]+")


def label(attribute: str) -> str:
    """Prometheus label name of an OTel attribute key (``hw.id`` -> ``hw_id``)."""
    out = _INVALID_LABEL.sub("_", attribute)
    return "_" + out if out[:1].isdigit() else out


def prometheus_name(otel_name: str, unit: str, kind: Kind) -> str:
    """The series base name the OTel Prometheus exporter produces.

    For histograms this is the family name; append ``_bucket`` etc.
    """
    name = _INVALID.sub("_", otel_name)
    if name[:1].isdigit():
        name = "_" + name[1:]
    suffix = "" if re.fullmatch(r"\{.*\}", unit or "") else _UNIT_SUFFIX.get(unit, _INVALID.sub("_", unit or ""))
    if suffix and not name.endswith("_" + suffix):
        name = f"{name}_{suffix}"
    if kind == "counter":
        name += "_total"
    return name


@dataclass(frozen=True)
class PromMetric:
    """One OTel instrument as it appears in Prometheus."""

    otel: str
    kind: Kind
    unit: str

    @property
    def name(self) -> str:
        return prometheus_name(self.otel, self.unit, self.kind)

    @property
    def bucket(self) -> str:
        return self.name + "_bucket"

    @property
    def count(self) -> str:
        return self.name + "_count"

    @property
    def sum(self) -> str:
        return self.name + "_sum"

    def __str__(self) -> str:  # usable directly in f-strings
        return self.name


class M:
    """Our series, by role. Units are the ones the instrumentation passes to the SDK."""

    REQUEST_DURATION = PromMetric(sc.GEN_AI_SERVER_REQUEST_DURATION, "histogram", "s")
    TTFT = PromMetric(sc.GEN_AI_SERVER_TIME_TO_FIRST_TOKEN, "histogram", "s")
    TPOT = PromMetric(sc.GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN, "histogram", "s")
    TOKEN_USAGE = PromMetric(sc.GEN_AI_CLIENT_TOKEN_USAGE, "histogram", "{token}")
    QUEUE_DURATION = PromMetric(sc.OTEL_LLM_SERVER_QUEUE_DURATION, "histogram", "s")
    PREFILL_DURATION = PromMetric(sc.OTEL_LLM_SERVER_PREFILL_DURATION, "histogram", "s")
    DECODE_DURATION = PromMetric(sc.OTEL_LLM_SERVER_DECODE_DURATION, "histogram", "s")
    TOKEN_GAP = PromMetric(sc.OTEL_LLM_SERVER_TOKEN_GAP, "histogram", "s")
    STALLS = PromMetric(sc.OTEL_LLM_SERVER_STALLS, "counter", "{stall}")
    BATCH_SIZE = PromMetric(sc.OTEL_LLM_SERVER_BATCH_SIZE, "histogram", "{sequence}")
    RUNNING = PromMetric(sc.OTEL_LLM_SERVER_REQUESTS_RUNNING, "updowncounter", "{request}")
    WAITING = PromMetric(sc.OTEL_LLM_SERVER_REQUESTS_WAITING, "updowncounter", "{request}")
    KV_CACHE = PromMetric(sc.OTEL_LLM_SERVER_KV_CACHE_UTILIZATION, "gauge", "1")
    PREEMPTIONS = PromMetric(sc.OTEL_LLM_SERVER_PREEMPTIONS, "counter", "{preemption}")

    GPU_UTIL = PromMetric(sc.HW_GPU_UTILIZATION, "gauge", "1")
    GPU_MEM_USAGE = PromMetric(sc.HW_GPU_MEMORY_USAGE, "gauge", "By")
    GPU_MEM_LIMIT = PromMetric(sc.HW_GPU_MEMORY_LIMIT, "gauge", "By")
    GPU_MEM_UTIL = PromMetric(sc.HW_GPU_MEMORY_UTILIZATION, "gauge", "1")
    POWER = PromMetric(sc.HW_POWER, "gauge", "W")
    ENERGY = PromMetric(sc.HW_ENERGY, "counter", "J")
    TEMPERATURE = PromMetric(sc.HW_TEMPERATURE, "gauge", "Cel")
    HW_ERRORS = PromMetric(sc.HW_ERRORS, "counter", "{error}")
    HW_STATUS = PromMetric(sc.HW_STATUS, "updowncounter", "1")
    SM_ACTIVE = PromMetric(sc.OTEL_LLM_GPU_SM_ACTIVE, "gauge", "1")
    TENSOR_ACTIVE = PromMetric(sc.OTEL_LLM_GPU_TENSOR_ACTIVE, "gauge", "1")
    DRAM_ACTIVE = PromMetric(sc.OTEL_LLM_GPU_DRAM_ACTIVE, "gauge", "1")
    CLOCK_SM = PromMetric(sc.OTEL_LLM_GPU_CLOCK_SM, "gauge", "Hz")
    CLOCK_MEMORY = PromMetric(sc.OTEL_LLM_GPU_CLOCK_MEMORY, "gauge", "Hz")
    THROTTLE = PromMetric(sc.OTEL_LLM_GPU_THROTTLE, "gauge", "1")
    XID_EVENTS = PromMetric(sc.OTEL_LLM_GPU_XID_EVENTS, "counter", "{event}")
    ROW_REMAP = PromMetric(sc.OTEL_LLM_GPU_ROW_REMAP, "counter", "{row}")
    PCIE_REPLAYS = PromMetric(sc.OTEL_LLM_GPU_PCIE_REPLAYS, "counter", "{replay}")

    ANOMALY_SCORE = PromMetric(sc.OTEL_LLM_ANOMALY_SCORE, "gauge", "1")
    ANOMALY_REQUESTS = PromMetric(sc.OTEL_LLM_ANOMALY_REQUESTS, "counter", "{request}")
    DETECTIONS = PromMetric(sc.OTEL_LLM_DETECTIONS, "counter", "{detection}")
    INCIDENTS_OPEN = PromMetric(sc.OTEL_LLM_INCIDENTS_OPEN, "updowncounter", "{incident}")


class L:
    """Label names (sanitised attribute keys)."""

    MODEL = label(sc.GEN_AI_REQUEST_MODEL)
    OPERATION = label(sc.GEN_AI_OPERATION_NAME)
    ERROR_TYPE = label(sc.ERROR_TYPE)
    TOKEN_TYPE = label(sc.GEN_AI_TOKEN_TYPE)
    HW_ID = label(sc.HW_ID)
    HW_NAME = label(sc.HW_NAME)
    HOST = label(sc.HOST_NAME)
    SENSOR_LOCATION = label(sc.HW_SENSOR_LOCATION)
    XID = label(sc.OTEL_LLM_GPU_XID)
    THROTTLE_REASON = label(sc.OTEL_LLM_GPU_THROTTLE_REASON)
    ROW_REMAP_TYPE = label(sc.OTEL_LLM_GPU_ROW_REMAP_TYPE)
    METRIC = label(sc.OTEL_LLM_METRIC)
    SERIES = label(sc.OTEL_LLM_SERIES)
    DETECTOR = label(sc.OTEL_LLM_DETECTOR)
    SEVERITY = label(sc.OTEL_LLM_SEVERITY)
    LEVEL = label(sc.OTEL_LLM_LEVEL)
    GPU = "gpu"
    """Normalised GPU label every GPU query returns: the GPU UUID (``hw.id`` or dcgm-exporter ``UUID``)."""


class DCGM:
    """Raw dcgm-exporter series (default counters; names as every released exporter prints them).

    Units differ from ours: utilisation in percent, clocks in MHz, framebuffer in MiB.
    """

    GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
    MEM_COPY_UTIL = "DCGM_FI_DEV_MEM_COPY_UTIL"
    FB_USED = "DCGM_FI_DEV_FB_USED"
    FB_FREE = "DCGM_FI_DEV_FB_FREE"
    POWER = "DCGM_FI_DEV_POWER_USAGE"
    ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"  # mJ
    GPU_TEMP = "DCGM_FI_DEV_GPU_TEMP"
    SM_CLOCK = "DCGM_FI_DEV_SM_CLOCK"
    MEM_CLOCK = "DCGM_FI_DEV_MEM_CLOCK"
    XID = "DCGM_FI_DEV_XID_ERRORS"  # value = last XID code
    ECC_DBE = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"
    ROW_REMAP_FAILURE = "DCGM_FI_DEV_ROW_REMAP_FAILURE"
    UNCORRECTABLE_REMAPPED = "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"
    THERMAL_VIOLATION = "DCGM_FI_DEV_THERMAL_VIOLATION"  # us, counter
    POWER_VIOLATION = "DCGM_FI_DEV_POWER_VIOLATION"  # us, counter
    SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
    TENSOR_ACTIVE = "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"
    DRAM_ACTIVE = "DCGM_FI_PROF_DRAM_ACTIVE"
    UUID_LABEL = "UUID"


def band_selector(which: Literal["upper", "lower", "forecast"], matchers: str = "") -> str:
    """Selector for a learned-band gauge, whatever unit suffix it was exported with."""
    otel = {"upper": sc.OTEL_LLM_THRESHOLD_UPPER, "lower": sc.OTEL_LLM_THRESHOLD_LOWER,
            "forecast": sc.OTEL_LLM_THRESHOLD_FORECAST}[which]
    base = prometheus_name(otel, "", "gauge")
    extra = f", {matchers}" if matchers else ""
    return f'{{__name__=~"{base}(_[a-z]+)?"{extra}}}'


def gpu_temperature(matchers: str = "") -> str:
    """Our GPU-die temperature selector (``hw.temperature`` also reports memory temperature)."""
    extra = f", {matchers}" if matchers else ""
    return f'{M.TEMPERATURE.name}{{{L.SENSOR_LOCATION}!="memory"{extra}}}'


def new_or_increased(selector: str, window: str) -> str:
    """Counter went up within ``window``, including a series that first appeared in it.

    ``increase()`` cannot see the first increment of a series born at 1 (an OTel counter's
    series appears on its first ``add``), so the first XID of a GPU would be missed.
    """
    return f"(increase({selector}[{window}]) > 0 or ({selector} unless {selector} offset {window}))"


def gpu_series(ours: str, dcgm: str, *, scale: float = 1.0) -> str:
    """A per-GPU PromQL expression that works on our OTel series AND raw dcgm-exporter series.

    ``ours`` must keep the ``hw_id`` label, ``dcgm`` the ``UUID`` label; both
    come out as ``max by (gpu)`` with ``gpu`` = GPU UUID, so a dashboard or an
    alert reads the same whichever source a site runs. ``scale`` converts the
    dcgm-exporter unit to ours (e.g. 0.01 for percent -> ratio).
    """
    left = f'max by ({L.GPU}) (label_replace({ours}, "{L.GPU}", "$1", "{L.HW_ID}", "(.+)"))'
    d = f"{dcgm} * {scale:g}" if scale != 1.0 else dcgm
    right = f'max by ({L.GPU}) (label_replace({d}, "{L.GPU}", "$1", "{DCGM.UUID_LABEL}", "(.+)"))'
    return f"({left}) or ({right})"
