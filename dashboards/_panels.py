"""Small helpers over grafana-foundation-sdk builders: datasource variables, Prometheus/Tempo panels.

Every panel and query names its datasource through a template variable
(``${prometheus}``, ``${tempo}``) so one JSON works in any Grafana, whatever
the datasource UIDs there are.
"""

from __future__ import annotations

from collections.abc import Sequence

from grafana_foundation_sdk.builders import common as gc
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus as gp
from grafana_foundation_sdk.builders import stat as gs
from grafana_foundation_sdk.builders import table as gt
from grafana_foundation_sdk.builders import tempo as gtempo
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import DataSourceRef, DynamicConfigValue, VariableRefresh

PROM = DataSourceRef(type_val="prometheus", uid="${prometheus}")
TEMPO = DataSourceRef(type_val="tempo", uid="${tempo}")
GRAFANA_BUILTIN = DataSourceRef(type_val="grafana", uid="-- Grafana --")
"""Grafana's own annotation store (the only datasource not behind a variable: it exists in every Grafana)."""

Target = tuple[str, str]  # (PromQL, legend format)


def prometheus_variable() -> gd.DatasourceVariable:
    return gd.DatasourceVariable("prometheus").label("Prometheus").type("prometheus")


def tempo_variable() -> gd.DatasourceVariable:
    return gd.DatasourceVariable("tempo").label("Tempo").type("tempo")


def label_variable(name: str, label: str, query: str, *, regex: str | None = None) -> gd.QueryVariable:
    var = (gd.QueryVariable(name).label(label).datasource(PROM).query(query).include_all(True).multi(True)
           .all_value(".*").refresh(VariableRefresh.ON_TIME_RANGE_CHANGED))
    if regex:
        var = var.regex(regex)
    return var


def _query(expr: str, legend: str, ref: str, *, exemplar: bool = False, instant: bool = False) -> gp.Dataquery:
    q = gp.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(PROM)
    if exemplar:
        q = q.exemplar(True)
    return q.instant() if instant else q.range()


def _refs(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def timeseries(title: str, targets: Sequence[Target], *, unit: str = "short", description: str = "",
               span: int = 12, height: int = 8, exemplar: bool = False, min_val: float | None = None,
               max_val: float | None = None, fill: int = 10, stack: bool = False) -> gts.Panel:
    panel = (gts.Panel().title(title).description(description).datasource(PROM).unit(unit).span(span)
             .height(height).fill_opacity(fill).line_width(1)
             .legend(gc.VizLegendOptions().show_legend(True).display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).calcs(["mean", "max", "lastNotNull"])))
    if stack:
        panel = panel.stacking(gc.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    for ref, (expr, legend) in zip(_refs(len(targets)), targets, strict=True):
        panel = panel.with_target(_query(expr, legend, ref, exemplar=exemplar))
    return panel


def band_timeseries(title: str, upper: str, lower: str, others: Sequence[Target], *, unit: str = "short",
                    description: str = "", span: int = 12, height: int = 8, repeat: str | None = None) -> gts.Panel:
    """Series drawn inside their learned band: the area between ``upper`` and ``lower`` is shaded green."""
    targets = [(upper, "upper"), (lower, "lower"), *others]
    dashed = DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})
    green = DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "green"})
    panel = (timeseries(title, targets, unit=unit, description=description, span=span, height=height, fill=0)
             .override_by_name("upper", [DynamicConfigValue(id_val="custom.fillBelowTo", value="lower"),
                                         DynamicConfigValue(id_val="custom.fillOpacity", value=15), dashed, green])
             .override_by_name("lower", [dashed, green]))
    return panel.repeat(repeat).repeat_direction("h") if repeat else panel


def stat(title: str, expr: str, *, unit: str = "short", description: str = "", span: int = 4,
         height: int = 4, legend: str = "") -> gs.Panel:
    return (gs.Panel().title(title).description(description).datasource(PROM).unit(unit).span(span)
            .height(height).graph_mode(common.BigValueGraphMode.NONE).color_mode(common.BigValueColorMode.VALUE)
            .reduce_options(gc.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .with_target(_query(expr, legend, "A", instant=True)))


def prom_table(title: str, targets: Sequence[Target], *, description: str = "", span: int = 12,
               height: int = 8) -> gt.Panel:
    panel = gt.Panel().title(title).description(description).datasource(PROM).span(span).height(height).show_header(True)
    for ref, (expr, legend) in zip(_refs(len(targets)), targets, strict=True):
        panel = panel.with_target(_query(expr, legend, ref, instant=True))
    return panel


def traceql_table(title: str, traceql: str, *, description: str = "", limit: int = 20, span: int = 12,
                  height: int = 10) -> gt.Panel:
    query = (gtempo.TempoQuery().ref_id("A").query_type("traceql").query(traceql).limit(limit)
             .datasource(TEMPO))
    return (gt.Panel().title(title).description(description).datasource(TEMPO).span(span).height(height)
            .show_header(True).with_target(query))


def incident_annotations() -> list[gd.AnnotationQuery]:
    """Incidents pushed by :class:`~otel_llm.exporters.GrafanaAnnotationExporter` and firing otel-llm alerts."""
    pushed = (gd.AnnotationQuery().name("otel-llm incidents").datasource(GRAFANA_BUILTIN).enable(True)
              .icon_color("red").target(gd.AnnotationTarget().type("tags").tags(["otel-llm", "incident"])
                                        .match_any(False).limit(500)))
    alerts = (gd.AnnotationQuery().name("otel-llm alerts").datasource(PROM).enable(True).icon_color("orange")
              .expr('ALERTS{source="otel-llm", alertstate="firing"}'))
    return [pushed, alerts]
