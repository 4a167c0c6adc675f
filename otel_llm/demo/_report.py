"""``report/index.html``: one self-contained page (inline SVG plots, no CDN, no script).

Sections: the scorecard, the key series with their learned bands, alarms and
fault windows, the incident timeline, each incident's RCA ranking with evidence
and an example trace as a waterfall, and what telemetry the run produced.
"""

from __future__ import annotations

import html
import io
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from otel_llm.demo import _series as S

_FAULT_COLORS = {"gpu_throttle": "#f4a261", "gpu_xid": "#e76f51", "slow_dependency": "#8ecae6", "burst": "#b5a3e0"}

_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:22px 32px}
header h1{margin:0 0 6px;font-size:22px} header p{margin:0;color:#c9d1e0;font-size:14px}
main{padding:20px 32px;max-width:1280px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:16px 20px;margin:0 0 18px}
h2{font-size:17px;margin:0 0 10px} h3{font-size:15px;margin:14px 0 6px}
.badges{display:flex;gap:12px;flex-wrap:wrap;margin-top:12px}
.badge{border-radius:8px;padding:8px 14px;font-weight:600;font-size:14px;background:#2b3345}
.ok{background:#2a9d8f}.bad{background:#c0392b}.warn{background:#d68c1f}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e6e8ec;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.yes{color:#2a9d8f;font-weight:600}.no{color:#c0392b;font-weight:600}
.plot svg{width:100%;height:auto}
.muted{color:#6b7385;font-size:12px}
.wf{font-size:12px;margin:6px 0 2px}
.wf .row{display:flex;align-items:center;height:18px}
.wf .lbl{width:330px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding-right:8px}
.wf .lane{flex:1;position:relative;height:12px;background:#f0f2f5;border-radius:3px}
.wf .bar{position:absolute;height:12px;border-radius:3px;opacity:.9}
code{background:#f0f2f5;padding:1px 4px;border-radius:3px;font-size:12px}
"""


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _shade_faults(ax: Any, faults: list[Any], label: bool = False) -> None:
    for f in faults:
        ax.axvspan(f.start, f.end, color=_FAULT_COLORS.get(f.kind, "#ddd"), alpha=0.25, lw=0)
        if label:
            ax.text((f.start + f.end) / 2, 1.0, f.label(), transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=8, color="#333")


def _alarm_spans(ax: Any, detections: list[Any], series: str, t0: float, t_end: float) -> None:
    first = True
    for d in detections:
        if d.series != series:
            continue
        a = d.start - t0
        b = (d.end - t0) if d.end else t_end
        ax.axvspan(a, max(b, a + 0.5), ymin=0.0, ymax=0.06, color="#c0392b", alpha=0.9, lw=0,
                   label="alarm" if first else None)
        ax.axvline(a, color="#c0392b", lw=0.8, ls="--")
        first = False


def _series_plot(ax: Any, rows: list[tuple], t0: float, *, label: str, color: str, band: bool, scale: float = 1.0) -> None:
    if not rows:
        return
    xs = [r[0] - t0 for r in rows]
    ys = [r[1] * scale for r in rows]
    ax.plot(xs, ys, color=color, lw=1.4, label=label, marker=".", markersize=3)
    if band:
        # a forecast band can run away (a trend extrapolated on a log scale): clip it to the plot
        cap = 3.0 * max(ys) if ys else math.inf
        lo = [r[2] * scale if math.isfinite(r[2]) else math.nan for r in rows]
        hi = [min(r[4] * scale, cap) if math.isfinite(r[4]) else math.nan for r in rows]
        ax.fill_between(xs, [max(v, 0) if math.isfinite(v) else math.nan for v in lo], hi, color=color,
                        alpha=0.15, lw=0, label=f"{label}: learned 95% band")


def _figures(pipeline: Any, faults: list[Any], t0: float, duration: float, gpus: list[str]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    bands = pipeline.record.bands
    dets = pipeline.record.detections
    t_end = duration
    out: list[tuple[str, str]] = []

    def k(metric: str, **attrs: str) -> str:
        return S.series_key(metric, attrs)

    # 1. gateway: rate + TTFT p95
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 4.6), sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    key_rate = k(S.REQUEST_RATE, **{"service.name": "llm-gateway"})
    key_ttft = k(S.TTFT_P95, **{"service.name": "llm-gateway"})
    _series_plot(a1, bands.get(key_rate, []), t0, label="requests/s", color="#264653", band=True)
    _shade_faults(a1, faults, label=True)
    _alarm_spans(a1, dets, key_rate, t0, t_end)
    a1.set_ylabel("req/s")
    _series_plot(a2, bands.get(key_ttft, []), t0, label="TTFT p95 (gateway)", color="#e76f51", band=True, scale=1000)
    _shade_faults(a2, faults)
    _alarm_spans(a2, dets, key_ttft, t0, t_end)
    a2.set_ylabel("ms")
    a2.set_yscale("log")
    a2.set_xlabel("demo time (s)")
    _legend(a2, loc="upper left", fontsize=8)
    out.append(("Front door: request rate and time to first token (p95 per 2 s), with learned bands and alarms",
                _svg(fig)))

    # 2. llm-server per GPU: TPOT p95 + queue
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 4.4), sharex=True)
    colors = ["#2a9d8f", "#e9c46a", "#8d6cab", "#457b9d"]
    for i in range(len(gpus)):
        key = k(S.TPOT_P95, **{S.INSTANCE: f"replica-{i}", "service.name": "llm-server"})
        _series_plot(a1, bands.get(key, []), t0, label=f"replica {i} (GPU {i}) TPOT p95", color=colors[i % 4],
                     band=True, scale=1000)
        _alarm_spans(a1, dets, key, t0, t_end)
    _shade_faults(a1, faults, label=True)
    a1.set_ylabel("ms / token")
    _legend(a1, loc="upper left", fontsize=8, ncol=2)
    key_q = k(S.QUEUE_P95, **{"service.name": "llm-server"})
    _series_plot(a2, bands.get(key_q, []), t0, label="queue time p95", color="#6d597a", band=True, scale=1000)
    _alarm_spans(a2, dets, key_q, t0, t_end)
    _shade_faults(a2, faults)
    a2.set_ylabel("ms")
    a2.set_xlabel("demo time (s)")
    _legend(a2, loc="upper left", fontsize=8)
    out.append(("LLM server: decode time per output token on each replica (one per GPU), and queue time",
                _svg(fig)))

    # 3. retrieval
    fig, ax = plt.subplots(figsize=(11, 2.4))
    key_r = k(S.DURATION_P95, **{"service.name": "retrieval"})
    _series_plot(ax, bands.get(key_r, []), t0, label="retrieval /search p95", color="#219ebc", band=True, scale=1000)
    _alarm_spans(ax, dets, key_r, t0, t_end)
    _shade_faults(ax, faults, label=True)
    ax.set_ylabel("ms")
    ax.set_xlabel("demo time (s)")
    _legend(ax, loc="upper left", fontsize=8)
    out.append(("Downstream dependency: retrieval latency (p95)", _svg(fig)))

    # 4. GPUs
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11, 4.0), sharex=True)
    for i, g in enumerate(gpus):
        for ax, metric, scale, unit in ((a1, S.GPU_SM_CLOCK, 1e-6, "MHz"), (a2, S.GPU_TEMP, 1.0, "°C")):
            rows = bands.get(k(metric, **{"hw.id": g}), [])
            if rows:
                xs = [r[0] - t0 for r in rows]
                ys = [r[1] * scale for r in rows]
                # break the line where samples stop (GPU lost)
                xs2, ys2 = [], []
                for j, (x, y) in enumerate(zip(xs, ys, strict=True)):
                    if j and x - xs[j - 1] > 2.5:
                        xs2.append(math.nan)
                        ys2.append(math.nan)
                    xs2.append(x)
                    ys2.append(y)
                ax.plot(xs2, ys2, color=colors[i % 4], lw=1.3, label=f"GPU {i}")
            ax.set_ylabel(unit)
    for d in dets:
        if d.kind == "gpu":
            a1.axvline(d.start - t0, color="#c0392b", lw=0.8, ls="--")
    _shade_faults(a1, faults, label=True)
    _shade_faults(a2, faults)
    _legend(a1, loc="lower left", fontsize=8, ncol=2)
    a1.set_title("SM clock (a gap = the GPU's series vanished)", fontsize=9, loc="left")
    a2.set_title("temperature", fontsize=9, loc="left")
    a2.set_xlabel("demo time (s)")
    out.append(("GPUs: clocks and temperature (simulated DCGM fields); dashed lines = GPU detections", _svg(fig)))

    # 5. incident timeline
    series = []
    for d in dets:
        if d.series not in series:
            series.append(d.series)
    if series:
        fig, ax = plt.subplots(figsize=(11, 0.6 + 0.28 * len(series)))
        _shade_faults(ax, faults, label=True)
        for y, s in enumerate(series):
            for d in dets:
                if d.series == s:
                    a = d.start - t0
                    b = (d.end - t0) if d.end else t_end
                    ax.barh(y, max(b - a, 0.6), left=a, height=0.6,
                            color={"gpu": "#e76f51", "threshold": "#264653"}.get(d.kind, "#8d6cab"))
        ax.set_yticks(range(len(series)))
        ax.set_yticklabels([_short(s) for s in series], fontsize=7)
        ax.set_xlim(0, duration)
        ax.invert_yaxis()
        ax.set_xlabel("demo time (s)")
        out.append(("Incident timeline: every detection (bars) against the injected fault windows (shaded)", _svg(fig)))
    return out


def _legend(ax: Any, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _short(series: str) -> str:
    return (series.replace('service.name="', "").replace('hw.id="', "").replace('service.instance.id="', "")
            .replace('"', "")
            .replace("gen_ai.server.", "").replace("otel_llm.", ""))[:70]


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _scorecard_html(card: dict[str, Any]) -> str:
    rows = []
    for f in card["faults"]:
        top = f["top_root_cause"]
        rows.append(
            f"<tr><td><b>{_esc(f['fault'])}</b><br><span class=muted>{_esc(f['params'])}</span></td>"
            f"<td class=num>{f['start']:.0f}–{f['end']:.0f}</td>"
            f"<td class={'yes' if f['detected'] else 'no'}>{'detected' if f['detected'] else 'missed'}</td>"
            f"<td class=num>{_delay(f['delay_s'])}</td>"
            f"<td>{_esc(f['first_detection']['series'] if f['first_detection'] else '')}</td>"
            f"<td>{_esc(_truth(f['true_root_cause']))}</td>"
            f"<td>{_esc(top['name'] if top else '–')}</td>"
            f"<td class='num {'yes' if f['true_rank'] == 1 else 'no'}'>{f['true_rank'] or '–'}</td></tr>")
    s = card["summary"]
    fa = "".join(f"<li>t={x['t']} s: <code>{_esc(x['series'])}</code> {_esc(x['explanation'][:140])}</li>"
                 for x in card.get("false_alarm_list", [])[:20])
    return (
        "<table><tr><th>fault</th><th>window (s)</th><th>detection</th><th>delay</th><th>first detection</th>"
        "<th>true root cause</th><th>ranked first</th><th>true rank</th></tr>" + "".join(rows) + "</table>"
        f"<p>False alarms in clean periods: <b>{s['false_alarms']}</b> ({s['false_alarms_warmup']} in the warm-up), "
        f"{s['false_alarms_per_replayed_hour']} per hour of replayed traffic over {s['clean_seconds']} s of clean run.</p>"
        + (f"<ul class=muted>{fa}</ul>" if fa else ""))


def _delay(v: float | None) -> str:
    return "" if v is None else f"{v:.1f} s"


def _truth(t: dict[str, Any]) -> str:
    if t.get("gpu"):
        return f"GPU {t['gpu']}"
    return f"{t.get('service')} {t.get('operation') or ''}".strip()


def _trace_waterfall(spans: list[Any], trace_id: str) -> str:
    mine = [s for s in spans if format(s.context.trace_id, "032x") == trace_id]
    if not mine:
        return ""
    t0 = min(s.start_time for s in mine)
    t1 = max(s.end_time or s.start_time for s in mine)
    total = max(t1 - t0, 1)
    children: dict[int | None, list[Any]] = defaultdict(list)
    ids = {s.context.span_id for s in mine}
    for s in mine:
        parent = s.parent.span_id if s.parent is not None and s.parent.span_id in ids else None
        children[parent].append(s)
    colors = {"llm-gateway": "#264653", "retrieval": "#219ebc", "llm-server": "#e76f51"}
    rows: list[str] = []

    def walk(pid: int | None, depth: int) -> None:
        for s in sorted(children.get(pid, []), key=lambda x: x.start_time):
            svc = str(s.resource.attributes.get("service.name", "?"))
            left = 100 * (s.start_time - t0) / total
            width = max(0.4, 100 * ((s.end_time or s.start_time) - s.start_time) / total)
            dur = ((s.end_time or s.start_time) - s.start_time) / 1e6
            gpu = s.attributes.get("otel_llm.gpu.uuids") if s.attributes else None
            extra = f" · {str(gpu[0])[:12]}…" if gpu else ""
            rows.append(
                f"<div class=row><div class=lbl style='padding-left:{12 * depth}px'>{_esc(svc)}: "
                f"{_esc(s.name)}{_esc(extra)} <span class=muted>{dur:.1f} ms</span></div><div class=lane>"
                f"<div class=bar style='left:{left:.2f}%;width:{width:.2f}%;background:{colors.get(svc, '#888')}'>"
                "</div></div></div>")
            walk(s.context.span_id, depth + 1)

    walk(None, 0)
    return f"<div class=wf><div class=muted>trace <code>{trace_id}</code></div>{''.join(rows)}</div>"


def _incidents_html(pipeline: Any, spans: list[Any], t0: float) -> str:
    parts = []
    for inc in pipeline.record.incidents.values():
        end = f"{inc.end - t0:.0f} s" if inc.end else "still open at the end"
        dets = "".join(
            f"<li><code>{_esc(d.kind)}</code> {_esc(_short(d.series))} from {d.start - t0:.0f} s: "
            f"{_esc(d.explanation[:200])}</li>" for d in inc.detections[:10])
        rows = []
        for j, c in enumerate(inc.candidates[:5], start=1):
            ev = "; ".join(f"{k}={_fmt(v)}" for k, v in list((c.evidence or {}).items())[:6])
            rows.append(f"<tr><td class=num>{j}</td><td><b>{_esc(c.name)}</b><br><span class=muted>{_esc(c.kind)}"
                        f"</span></td><td class=num>{c.score:.2f}</td><td>{_esc(c.reason)}</td>"
                        f"<td class=muted>{_esc(ev)}</td></tr>")
        ranking = ("<table><tr><th>#</th><th>candidate</th><th>score</th><th>why</th><th>evidence</th></tr>"
                   + "".join(rows) + "</table>") if rows else "<p class=muted>no ranking computed</p>"
        example = ""
        for c in inc.candidates[:1]:
            for tid in list(c.trace_ids)[:1]:
                example = _trace_waterfall(spans, tid)
        parts.append(f"<h3>{_esc(inc.id)} · {_esc(inc.severity.value)} · {inc.start - t0:.0f} s → {end}</h3>"
                     f"<p>{_esc(inc.title)}</p><ul class=muted>{dets}</ul>{ranking}"
                     + (f"<h3>Example trace through the top candidate</h3>{example}" if example else ""))
    return "".join(parts) or "<p>No incident was opened.</p>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in list(v)[:3])
    return str(v)[:40]


def write_report(run: Any, pipeline: Any, card: dict[str, Any], summary: dict[str, Any], out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` and return its path."""
    from otel_llm.workloads import ATTRIBUTION

    cfg = run.cfg
    t0 = run.t0_wall
    figs = _figures(pipeline, list(cfg.faults), t0, cfg.duration_s, list(run.gpus.uuids))
    s = card["summary"]
    n = s["faults"]

    def badge(text: str, good: bool | None) -> str:
        cls = "ok" if good else ("warn" if good is None else "bad")
        return f"<span class='badge {cls}'>{_esc(text)}</span>"

    badges = [
        badge(f"{s['detected']}/{n} faults detected ≤ 60 s", s["detected"] == n if n else None),
        badge(f"root cause ranked first {s['rca_top1']}/{n}", (s["rca_top1"] >= min(3, n)) if n else None),
        badge(f"{s['false_alarms']} false alarms ({s['false_alarms_warmup']} in warm-up)", s["false_alarms_warmup"] == 0),
        badge(f"{run.stats.sent} requests · {summary['traces']} traces · {summary['spans']} spans", None),
    ]
    plots = "".join(f"<section><h2>{_esc(title)}</h2><div class=plot>{svg}</div></section>" for title, svg in figs)
    ops = "".join(f"<tr><td>{_esc(o['service'])}</td><td>{_esc(o['span'])}</td><td>{_esc(o['kind'])}</td>"
                  f"<td class=num>{o['count']}</td><td class=num>{o['p50_ms']:.1f}</td><td class=num>{o['p95_ms']:.1f}</td></tr>"
                  for o in summary["operations"])
    comps = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in card["run"]["components"].items())
    doc = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1">
<title>otel-llm demo report</title><style>{_CSS}</style></head><body>
<header><h1>otel-llm demo report</h1>
<p>{cfg.duration_s:.0f} s run · workload speedup {cfg.speedup:g} · {len(run.gpus.uuids)} simulated GPUs ·
{len(cfg.faults)} injected faults · generated {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}</p>
<div class=badges>{''.join(badges)}</div></header><main>
<section id=scorecard><h2>Scorecard</h2>{_scorecard_html(card)}</section>
{plots}
<section id=incidents><h2>Incidents and root-cause rankings</h2>{_incidents_html(pipeline, list(run.sink.readable), t0)}</section>
<section id=telemetry><h2>Telemetry produced</h2>
<table><tr><th>service</th><th>span</th><th>kind</th><th>count</th><th>p50 ms</th><th>p95 ms</th></tr>{ops}</table>
<h3>Components that ran</h3><ul>{comps}</ul></section>
<p class=muted>Workload: {_esc(ATTRIBUTION)}</p>
</main></body></html>"""
    path = out_dir / "index.html"
    path.write_text(doc, encoding="utf-8")
    return path
