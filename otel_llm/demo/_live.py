"""The live rich view: request rate, TTFT p95 with its learned band, GPU state, open incidents."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from otel_llm.demo import _series as S
from otel_llm.demo._runner import DemoConfig, TickState

_GW_TTFT = S.series_key(S.TTFT_P95, {"service.name": "llm-gateway"})
_GW_RATE = S.series_key(S.REQUEST_RATE, {"service.name": "llm-gateway"})
_RET = S.series_key(S.DURATION_P95, {"service.name": "retrieval"})
_QUEUE = S.series_key(S.QUEUE_P95, {"service.name": "llm-server"})


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{1000 * v:.0f} ms"


class LiveView:
    """A rich ``Live`` panel in a terminal; plain progress lines otherwise."""

    def __init__(self, cfg: DemoConfig, console: Any, *, enabled: bool) -> None:
        self.cfg = cfg
        self.console = console
        self.enabled = enabled
        self.pipeline: Any = None
        self._state: TickState | None = None
        self._alerts: deque[str] = deque(maxlen=6)
        self._live: Any = None
        self._last_line = 0.0
        self._lock = threading.Lock()

    def __enter__(self) -> LiveView:
        if self.enabled:
            from rich.live import Live

            self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
            self._live = None

    def on_alert(self, event: dict[str, Any]) -> None:
        t = event["time"]
        rel = t - self._t0() if self._t0() else 0.0
        icon = "FIRING" if event["status"] == "firing" else "RESOLVED"
        color = "red" if event["status"] == "firing" else "green"
        cause = f" -> root cause: {event['root_cause']}" if event.get("root_cause") else ""
        line = f"[{color}]{icon}[/] t={rel:5.1f}s {event['incident']} {event['title'][:70]}{cause}"
        with self._lock:
            self._alerts.append(line)
        if self._live is None:
            self.console.print(line)

    def _t0(self) -> float:
        return getattr(self, "t0", 0.0)

    def on_tick(self, state: TickState) -> None:
        self._state = state
        if not getattr(self, "t0", 0.0):
            self.t0 = time.time() - state.t
        if self._live is not None:
            self._live.update(self._render())
        elif state.t - self._last_line >= 15.0:
            self._last_line = state.t
            faults = ", ".join(f.label() for f in state.active_faults) or "none"
            self.console.print(f"t={state.t:5.0f}s/{self.cfg.duration_s:.0f}s  sent {state.replay.sent}  "
                               f"ok {state.replay.ok}  failed {state.replay.failed}  active faults: {faults}")

    def _latest(self, series: str) -> tuple[float, float, float] | None:
        if self.pipeline is None:
            return None
        rows = self.pipeline.record.bands.get(series)
        if not rows:
            return None
        _, v, lo, _, hi = rows[-1]
        return v, lo, hi

    def _render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        st = self._state
        t = st.t if st else 0.0
        head = Text.assemble(("otel-llm demo  ", "bold"), f"t = {t:5.0f} / {self.cfg.duration_s:.0f} s   ",
                             (f"active faults: {', '.join(f.label() for f in st.active_faults) or 'none'}" if st
                              else "starting...", "yellow" if st and st.active_faults else "dim"))
        bar = ProgressBar(total=self.cfg.duration_s, completed=min(t, self.cfg.duration_s), width=60)
        m = Table(title="Serving", expand=False)
        for col in ("signal", "now", "learned band (95%)", "state"):
            m.add_column(col)
        for label, key, unit in (("request rate", _GW_RATE, "rps"), ("TTFT p95 (gateway)", _GW_TTFT, "s"),
                                 ("queue p95 (llm-server)", _QUEUE, "s"), ("retrieval p95", _RET, "s")):
            cur = self._latest(key)
            if cur is None:
                m.add_row(label, "-", "warming up", "")
                continue
            v, lo, hi = cur
            fmt = (lambda x: f"{x:.1f}/s") if unit == "rps" else _fmt_ms
            band = "warming up" if not math.isfinite(hi) else f"{fmt(max(lo, 0.0))} .. {fmt(hi)}"
            bad = math.isfinite(hi) and v > hi
            m.add_row(label, fmt(v), band, "[red]above band[/]" if bad else "[green]ok[/]")
        g = Table(title="GPUs (simulated)")
        for col in ("gpu", "uuid", "state", "SM clock", "temp", "util"):
            g.add_column(col)
        if st:
            for uuid, info in st.gpu_state.items():
                f = info["fields"]
                state = "[red]LOST (XID)[/]" if info["lost"] else (
                    "[yellow]throttling[/]" if f.get(112) else "[green]ok[/]")
                g.add_row(str(info["index"]), uuid[:16] + "…", state,
                          f"{f.get(100, float('nan')):.0f} MHz" if f else "-",
                          f"{f.get(150, float('nan')):.0f} °C" if f else "-",
                          f"{f.get(203, float('nan')):.0f} %" if f else "-")
        inc = Table(title="Incidents")
        for col in ("id", "since", "title", "top root cause"):
            inc.add_column(col)
        if self.pipeline is not None:
            for i in list(self.pipeline.record.incidents.values())[-4:]:
                since = f"{i.start - self._t0():.0f}s" if self._t0() else "-"
                status = "[red]open[/]" if i.active else "[dim]resolved[/]"
                inc.add_row(f"{i.id} {status}", since, i.title[:60], (i.top.name if i.top else "ranking…")[:40])
        replay = (f"requests: {st.replay.sent} sent, {st.replay.ok} ok, {st.replay.failed} failed, "
                  f"{st.replay.in_flight} in flight" if st else "")
        alerts = Text.from_markup("\n".join(self._alerts) or "[dim]no alerts yet[/]")
        return Group(head, bar, Text(replay), m, g, inc, Text("Alerts", style="bold"), alerts)
