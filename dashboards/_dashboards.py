"""The four otel-llm dashboards, as code (grafana-foundation-sdk, Grafana 10.1 schema).

* ``otel-llm-serving``   -- request rate, errors, TTFT / TPOT / e2e percentiles, tokens/s, stages,
  running vs waiting, KV cache.
* ``otel-llm-gpu``       -- per GPU: utilisation, SM / tensor / DRAM activity, memory, power,
  temperature, clocks, throttle reasons, XID / ECC / row-remap events. Each query reads our OTel
  GPU series *or* raw dcgm-exporter series (``... or ...``), so it works with either source.
* ``otel-llm-anomalies`` -- each series with its learned band, anomaly scores, detections, open
  incidents, incident annotations.
* ``otel-llm-traces``    -- Tempo TraceQL searches for slow and failed LLM requests, latency with
  exemplars that link to traces.

Metric names come from :mod:`otel_llm.exporters._promnames` only.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync
from otel_llm.exporters._promnames import DCGM, L, M, band_selector

from ._panels import (
    band_timeseries,
    incident_annotations,
    label_variable,
    prom_table,
    prometheus_variable,
    stat,
    tempo_variable,
    timeseries,
    traceql_table,
)

GRAFANA_VERSION = "10.1"
"""Grafana version whose dashboard schema the SDK (grafana-foundation-sdk 10.1.x) generates; works on 10.1+ and 11."""
TAGS = ["otel-llm", "generated"]
RATE = "$__rate_interval"
MODEL = f'{L.MODEL}=~"$model"'
_TTFT_BAND = f'{L.METRIC}="{M.TTFT.otel}"'
_METRIC_BAND = f'{L.METRIC}=~"$metric"'


def _base(uid: str, title: str, description: str) -> gd.Dashboard:
    links = [gd.DashboardLink("otel-llm").type("dashboards").tags(["otel-llm"]).as_dropdown(True)
             .include_vars(True).keep_time(True)]
    return (gd.Dashboard(title).uid(uid).description(description).tags(TAGS).refresh("30s")
            .time("now-1h", "now").timezone("browser").tooltip(DashboardCursorSync.CROSSHAIR).links(links)
            .with_variable(prometheus_variable()))


def _model_var() -> gd.QueryVariable:
    return label_variable("model", "Model", f"label_values({M.REQUEST_DURATION.count}, {L.MODEL})")


def _quantiles(metric, by: str = "le") -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by ({by}) (rate({metric.bucket}{{{MODEL}}}[{RATE}])))", f"p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


# --------------------------------------------------------------------------- serving
def serving() -> gd.Dashboard:
    count = M.REQUEST_DURATION.count
    rate_all = f"sum by ({L.MODEL}) (rate({count}{{{MODEL}}}[{RATE}]))"
    d = _base("otel-llm-serving", "otel-llm / LLM serving",
              "Request rate, errors, latency percentiles (TTFT, TPOT, end-to-end), tokens/s, scheduler state.")
    d = d.with_variable(_model_var())
    d = d.with_row(gd.Row("Overview"))
    d = d.with_panel(stat("Requests / s", f"sum(rate({count}{{{MODEL}}}[{RATE}]))", unit="reqps"))
    d = d.with_panel(stat("Error ratio", f'(sum(rate({count}{{{MODEL}, {L.ERROR_TYPE}!=""}}[{RATE}])) or vector(0))'
                          f" / sum(rate({count}{{{MODEL}}}[{RATE}]))", unit="percentunit"))
    d = d.with_panel(stat("TTFT p95", f"histogram_quantile(0.95, sum by (le) (rate({M.TTFT.bucket}{{{MODEL}}}[{RATE}])))",
                          unit="s"))
    d = d.with_panel(stat("TPOT p95", f"histogram_quantile(0.95, sum by (le) (rate({M.TPOT.bucket}{{{MODEL}}}[{RATE}])))",
                          unit="s"))
    d = d.with_panel(stat("Output tokens / s",
                          f'sum(rate({M.TOKEN_USAGE.sum}{{{MODEL}, {L.TOKEN_TYPE}="output"}}[{RATE}]))', unit="short"))
    d = d.with_panel(stat("Firing otel-llm alerts", 'count(ALERTS{source="otel-llm", alertstate="firing"}) or vector(0)'))
    d = d.with_row(gd.Row("Traffic and errors"))
    d = d.with_panel(timeseries("Request rate by model", [(rate_all, "{{" + L.MODEL + "}}")], unit="reqps", span=8))
    d = d.with_panel(timeseries(
        "Errors by type", [(f'sum by ({L.ERROR_TYPE}) (rate({count}{{{MODEL}, {L.ERROR_TYPE}!=""}}[{RATE}]))',
                            "{{" + L.ERROR_TYPE + "}}")], unit="reqps", span=8,
        description="Failed requests per second, by error.type (no series while nothing fails)."))
    d = d.with_panel(timeseries(
        "Tokens / s", [(f"sum by ({L.TOKEN_TYPE}) (rate({M.TOKEN_USAGE.sum}{{{MODEL}}}[{RATE}]))",
                        "{{" + L.TOKEN_TYPE + "}}")], unit="short", span=8))
    d = d.with_row(gd.Row("Latency"))
    d = d.with_panel(timeseries("Time to first token", _quantiles(M.TTFT), unit="s", span=8, exemplar=True,
                                description="gen_ai.server.time_to_first_token percentiles; exemplars link to traces."))
    d = d.with_panel(timeseries("Time per output token", _quantiles(M.TPOT), unit="s", span=8, exemplar=True))
    d = d.with_panel(timeseries("End-to-end request duration", _quantiles(M.REQUEST_DURATION), unit="s", span=8,
                                exemplar=True))
    d = d.with_panel(timeseries(
        "Stage time p95 (queue / prefill / decode)",
        [(f"histogram_quantile(0.95, sum by (le) (rate({m.bucket}{{{MODEL}}}[{RATE}])))", name)
         for m, name in ((M.QUEUE_DURATION, "queue"), (M.PREFILL_DURATION, "prefill"), (M.DECODE_DURATION, "decode"))],
        unit="s", span=12))
    d = d.with_panel(timeseries(
        "Inter-token gap p99 and stalls",
        [(f"histogram_quantile(0.99, sum by (le) (rate({M.TOKEN_GAP.bucket}{{{MODEL}}}[{RATE}])))", "gap p99 (s)"),
         (f"sum(rate({M.STALLS}{{{MODEL}}}[{RATE}]))", "stalls / s")], unit="short", span=12))
    d = d.with_row(gd.Row("Scheduler"))
    d = d.with_panel(timeseries(
        "Running vs waiting requests",
        [(f"sum by (instance) ({M.RUNNING})", "running {{instance}}"),
         (f"sum by (instance) ({M.WAITING})", "waiting {{instance}}")], unit="short", span=12))
    d = d.with_panel(timeseries("KV-cache utilisation", [(f"max by (instance) ({M.KV_CACHE})", "{{instance}}")],
                                unit="percentunit", min_val=0, max_val=1, span=12))
    return d


# --------------------------------------------------------------------------- gpu
def _gpu(ours: str, dcgm: str) -> str:
    """Per-GPU expression over our series OR dcgm-exporter's, filtered by $gpu, labelled ``gpu``."""
    left = f'max by ({L.GPU}) (label_replace({ours}, "{L.GPU}", "$1", "{L.HW_ID}", "(.+)"))'
    right = f'max by ({L.GPU}) (label_replace({dcgm}, "{L.GPU}", "$1", "{DCGM.UUID_LABEL}", "(.+)"))'
    return f"({left}) or ({right})"


def _ours(name: str, extra: str = "") -> str:
    return f'{name}{{{L.HW_ID}=~"$gpu"{", " + extra if extra else ""}}}'


def _dcgm(name: str) -> str:
    return f'{name}{{{DCGM.UUID_LABEL}=~"$gpu"}}'


def gpu() -> gd.Dashboard:
    d = _base("otel-llm-gpu", "otel-llm / GPU",
              "Per-GPU DCGM signals. Every query reads otel-llm's OTel GPU metrics or raw dcgm-exporter series, "
              "whichever Prometheus has.")
    gpu_list = _gpu(M.GPU_UTIL.name, DCGM.GPU_UTIL)
    d = d.with_variable(label_variable("gpu", "GPU", f"query_result({gpu_list})", regex=f'/{L.GPU}="([^"]+)"/'))
    legend = "{{" + L.GPU + "}}"
    d = d.with_row(gd.Row("Activity"))
    d = d.with_panel(timeseries("GPU utilisation", [(_gpu(_ours(M.GPU_UTIL.name), f"{_dcgm(DCGM.GPU_UTIL)} / 100"),
                                                     legend)], unit="percentunit", min_val=0, max_val=1, span=8))
    d = d.with_panel(timeseries("SM active", [(_gpu(_ours(M.SM_ACTIVE.name), _dcgm(DCGM.SM_ACTIVE)), legend)],
                                unit="percentunit", min_val=0, max_val=1, span=8))
    d = d.with_panel(timeseries("Tensor pipe active", [(_gpu(_ours(M.TENSOR_ACTIVE.name), _dcgm(DCGM.TENSOR_ACTIVE)),
                                                        legend)], unit="percentunit", min_val=0, max_val=1, span=8))
    d = d.with_row(gd.Row("Memory, power, thermals, clocks"))
    d = d.with_panel(timeseries("Memory used", [(_gpu(_ours(M.GPU_MEM_USAGE.name),
                                                      f"{_dcgm(DCGM.FB_USED)} * 1048576"), legend)],
                                unit="bytes", span=8))
    d = d.with_panel(timeseries("DRAM active", [(_gpu(_ours(M.DRAM_ACTIVE.name), _dcgm(DCGM.DRAM_ACTIVE)), legend)],
                                unit="percentunit", min_val=0, max_val=1, span=8))
    d = d.with_panel(timeseries("Power", [(_gpu(_ours(M.POWER.name), _dcgm(DCGM.POWER)), legend)], unit="watt",
                                span=8))
    d = d.with_panel(timeseries("Temperature", [(_gpu(_ours(M.TEMPERATURE.name, f'{L.SENSOR_LOCATION}!="memory"'), _dcgm(DCGM.GPU_TEMP)), legend)],
                                unit="celsius", span=8))
    d = d.with_panel(timeseries("SM clock", [(_gpu(_ours(M.CLOCK_SM.name), f"{_dcgm(DCGM.SM_CLOCK)} * 1000000"),
                                              legend)], unit="hertz", span=8))
    d = d.with_panel(timeseries("Memory clock", [(_gpu(_ours(M.CLOCK_MEMORY.name),
                                                       f"{_dcgm(DCGM.MEM_CLOCK)} * 1000000"), legend)],
                                unit="hertz", span=8))
    d = d.with_row(gd.Row("Throttling and faults"))
    d = d.with_panel(timeseries(
        "Active throttle reasons",
        [(f'max by ({L.HW_ID}, {L.THROTTLE_REASON}) ({_ours(M.THROTTLE.name)}) > 0',
          "{{" + L.HW_ID + "}} {{" + L.THROTTLE_REASON + "}}"),
         (f"rate({_dcgm(DCGM.THERMAL_VIOLATION)}[{RATE}]) / 1e6 > 0", "{{UUID}} thermal (dcgm, s/s)"),
         (f"rate({_dcgm(DCGM.POWER_VIOLATION)}[{RATE}]) / 1e6 > 0", "{{UUID}} power (dcgm, s/s)")],
        unit="short", span=12, description="1 while a clock-event reason is active (otel-llm), or the fraction of "
        "time throttled from dcgm-exporter's violation counters."))
    d = d.with_panel(timeseries(
        "XID events",
        [(f'sum by ({L.HW_ID}, {L.XID}) (increase({_ours(M.XID_EVENTS.name)}[{RATE}]))',
          "{{" + L.HW_ID + "}} XID {{" + L.XID + "}}"),
         (f"{_dcgm(DCGM.XID)} > 0", "{{UUID}} last XID (dcgm)")], unit="short", span=12))
    d = d.with_panel(timeseries(
        "ECC and hardware errors",
        [(f'sum by ({L.HW_ID}, {L.ERROR_TYPE}) (increase({_ours(M.HW_ERRORS.name)}[{RATE}]))',
          "{{" + L.HW_ID + "}} {{" + L.ERROR_TYPE + "}}"),
         (f"increase({_dcgm(DCGM.ECC_DBE)}[{RATE}])", "{{UUID}} ECC DBE (dcgm)")], unit="short", span=12))
    d = d.with_panel(timeseries(
        "Row remaps",
        [(f'sum by ({L.HW_ID}, {L.ROW_REMAP_TYPE}) (increase({_ours(M.ROW_REMAP.name)}[{RATE}]))',
          "{{" + L.HW_ID + "}} {{" + L.ROW_REMAP_TYPE + "}}"),
         (f"{_dcgm(DCGM.ROW_REMAP_FAILURE)} > 0", "{{UUID}} remap failure (dcgm)")], unit="short", span=12))
    return d


# --------------------------------------------------------------------------- anomalies
def anomalies() -> gd.Dashboard:
    d = _base("otel-llm-anomalies", "otel-llm / Anomalies",
              "Learned bands (dynamic thresholds) per series, anomaly scores, detections and incidents.")
    d = d.with_variable(label_variable("metric", "Metric", f"label_values({band_selector('upper')}, {L.METRIC})"))
    d = d.annotations(incident_annotations())
    d = d.with_row(gd.Row("Now"))
    d = d.with_panel(stat("Open incidents", f"sum({M.INCIDENTS_OPEN}) or vector(0)", span=6))
    d = d.with_panel(stat("Detections (range)", f"sum(increase({M.DETECTIONS}[$__range])) or vector(0)", span=6))
    d = d.with_panel(stat("Series with a learned band", f'count({band_selector("upper")}) or vector(0)', span=6))
    d = d.with_panel(stat("Max anomaly score", f"max({M.ANOMALY_SCORE}) or vector(0)", unit="percentunit", span=6))
    d = d.with_row(gd.Row("Learned bands"))
    d = d.with_panel(band_timeseries(
        "TTFT p95 and its learned band",
        f'max({band_selector("upper", _TTFT_BAND)})',
        f'min({band_selector("lower", _TTFT_BAND)})',
        [(f"histogram_quantile(0.95, sum by (le) (rate({M.TTFT.bucket}[{RATE}])))", "TTFT p95"),
         (f'avg({band_selector("forecast", _TTFT_BAND)})', "forecast")],
        unit="s", span=24, description="Shaded: the band the threshold detector learned; outside it for long "
        "enough is a detection."))
    d = d.with_panel(band_timeseries(
        "$metric: learned band", f'max({band_selector("upper", _METRIC_BAND)})',
        f'min({band_selector("lower", _METRIC_BAND)})',
        [(f'avg({band_selector("forecast", _METRIC_BAND)})',
          "forecast")], span=12, repeat="metric"))
    d = d.with_row(gd.Row("Scores and detections"))
    d = d.with_panel(timeseries(
        "Anomaly scores", [(f"max by ({L.METRIC}, {L.DETECTOR}) ({M.ANOMALY_SCORE})",
                            "{{" + L.DETECTOR + "}} {{" + L.METRIC + "}}")],
        unit="percentunit", min_val=0, max_val=1, span=12))
    d = d.with_panel(timeseries(
        "Detections by detector and severity",
        [(f"sum by ({L.DETECTOR}, {L.SEVERITY}) (increase({M.DETECTIONS}[{RATE}]))",
          "{{" + L.DETECTOR + "}} {{" + L.SEVERITY + "}}")], unit="short", span=12))
    d = d.with_panel(timeseries("Anomalous requests / s", [(f"sum(rate({M.ANOMALY_REQUESTS}[{RATE}]))", "anomalous")],
                                unit="reqps", span=12))
    d = d.with_panel(prom_table("Firing otel-llm alerts", [('ALERTS{source="otel-llm", alertstate="firing"}', "")],
                                span=12))
    return d


# --------------------------------------------------------------------------- traces
def traces() -> gd.Dashboard:
    d = _base("otel-llm-traces", "otel-llm / Traces",
              "Tempo searches for slow and failed LLM requests; latency exemplars jump to the trace.")
    d = d.with_variable(tempo_variable()).with_variable(_model_var())
    d = d.with_variable(gd.CustomVariable("slow").label("Slow above").values("1s,2s,5s,10s")
                        .current(_option("2s")))
    d = d.annotations(incident_annotations())
    d = d.with_row(gd.Row("Latency with exemplars"))
    d = d.with_panel(timeseries("TTFT (exemplars -> traces)", _quantiles(M.TTFT), unit="s", span=12, exemplar=True,
                                description="Click an exemplar dot to open its trace (needs exemplar storage in "
                                "Prometheus and the datasource's exemplar trace-id link to ${tempo})."))
    d = d.with_panel(timeseries("Request duration (exemplars -> traces)", _quantiles(M.REQUEST_DURATION), unit="s",
                                span=12, exemplar=True))
    d = d.with_row(gd.Row("Trace searches (TraceQL)"))
    model = 'span.gen_ai.request.model =~ "$model"'
    d = d.with_panel(traceql_table(
        "Slow LLM requests", f"{{ kind = server && span.gen_ai.operation.name != nil && {model} && duration > $slow }}",
        description="Server spans of LLM requests slower than $slow."))
    d = d.with_panel(traceql_table(
        "Failed LLM requests", f"{{ span.gen_ai.operation.name != nil && {model} && status = error }}"))
    d = d.with_panel(traceql_table(
        "Slow first token", f"{{ span.otel_llm.response.time_to_first_token > 0.5 && {model} }}",
        description="Requests whose time to first token exceeded 0.5 s (span attribute set by otel-llm)."))
    d = d.with_panel(traceql_table(
        "Requests on throttled or failing GPUs",
        "{ span.gen_ai.operation.name != nil } >> { span.otel_llm.stage = \"decode\" && duration > $slow }",
        description="Traces whose decode stage alone exceeded $slow."))
    return d


def _option(value: str):
    from grafana_foundation_sdk.models.dashboard import VariableOption

    return VariableOption(selected=True, text=value, value=value)


DASHBOARDS: dict[str, Callable[[], gd.Dashboard]] = {
    "otel-llm-serving": serving,
    "otel-llm-gpu": gpu,
    "otel-llm-anomalies": anomalies,
    "otel-llm-traces": traces,
}
