"""The analysis pipeline the demo runs in-process: detectors -> incidents with RCA -> sinks.

Per tick (once a second) it receives the new spans, the key series' points and
the GPU samples, and:

1. **thresholds** -- feeds every key series to the statsforecast-band
   :class:`~otel_llm.processors._thresholds.ThresholdProcessor` (one with an
   ``up`` alarm rule for latencies / temperature / rates, one ``down`` for clocks);
2. **PyOD** -- feeds each finished LLM request to the request-level anomaly
   detector when ``otel_llm.processors`` provides one;
3. **GPU state** -- folds samples into the collectors' ``GpuTracker``: lost GPUs,
   XIDs and throttle reasons become ``gpu`` detections;
4. **incidents** -- groups overlapping detections into an :class:`Incident` and
   ranks root causes over the spans of the abnormal window against the normal
   traffic before it (the processors' RCA), with GPU events as evidence;
5. **sinks** -- every incident change goes to the alert log (terminal +
   ``alerts.jsonl``) and to the configured exporters (Alertmanager ...).

Everything the report needs (points, bands, detections, incidents, RCA history)
is kept here, bounded by the run's length.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from otel_llm import semconv
from otel_llm._selftelemetry import report_error
from otel_llm.demo import _series as S
from otel_llm.demo._telemetry import SERVICE_LLM
from otel_llm.processors._features import is_request_span
from otel_llm.processors._model import Detection, Incident, RootCauseCandidate, Severity
from otel_llm.processors._spans import SpanRecord

_logger = logging.getLogger("otel_llm.demo")

#: Series fed to the threshold detector with an upward alarm rule. GPU temperature is plotted but not
#: thresholded: it follows load by a few degrees (DCGM reports whole degrees), which a learned band on a
#: quiet warm-up flags; what matters for serving is the throttle state and the SM clock (below).
UP_METRICS = (S.TTFT_P95, S.TPOT_P95, S.QUEUE_P95, S.DURATION_P95, S.REQUEST_RATE)
#: Per-replica TTFT is kept for the report but not thresholded: with a handful of requests per window it
#: is all queueing noise (the front door's TTFT p95 and each replica's TPOT carry the signal).
#: ... and with a downward rule.
DOWN_METRICS = (S.GPU_SM_CLOCK,)


@dataclass
class RcaSnapshot:
    t: float
    incident_id: str
    window_start: float
    candidates: list[RootCauseCandidate]


@dataclass
class PipelineRecord:
    """What happened, for the scorecard and the report."""

    detections: list[Detection] = field(default_factory=list)
    """Every opened detection (closing events update ``end``)."""
    incidents: dict[str, Incident] = field(default_factory=dict)
    rca: list[RcaSnapshot] = field(default_factory=list)
    bands: dict[str, list[tuple[float, float, float, float, float]]] = field(default_factory=dict)
    """series -> [(t, value, lower, forecast, upper)]; band fields NaN before the model is fitted."""
    gpu_events: list[Any] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


class DemoPipeline:
    def __init__(self, *, meter_provider: Any = None, report_dir: Path | None = None, gpu_store: Any = None,
                 sinks: Sequence[Any] = (), on_alert: Callable[[dict[str, Any]], None] | None = None,
                 min_history: int = 20, span_window_s: float = 600.0, rca_window_s: float = 45.0) -> None:
        from otel_llm.processors._alarm import AlarmPolicy
        from otel_llm.processors._thresholds import ThresholdConfig, ThresholdProcessor

        # Update the band rarely (every 15 points) and hold it while an alarm is open: a band that keeps
        # learning during a fault learns the fault (and stops reporting it before persistence is reached).
        base = ThresholdConfig(min_history=min_history, refit_every=60, update_every=15, hold_during_alarm=60,
                               history=240, levels=(80.0, 95.0))
        # 3 of the last 4 windows beyond 3.5 band-sigmas: one slow window (a burst in the real trace, a
        # scheduler hiccup on a busy host) is not an incident.
        up = AlarmPolicy(threshold=3.5, recover=1.5, k=3, n=4, recover_n=3, cooldown=3, direction="up")
        self.thr_up = ThresholdProcessor(replace(base, policy=up), meter_provider=meter_provider)
        self.thr_down = ThresholdProcessor(replace(base, policy=replace(up, direction="down")),
                                           meter_provider=meter_provider, emit_metrics=False)
        self.components = {"thresholds": "otel_llm.processors.ThresholdProcessor (statsforecast AutoETS bands)"}
        self.components["gpu_state"] = "otel_llm.collectors GpuTracker events (lost, xid, throttle)"
        self._rca, self.components["rca"] = _rca_fn()
        from otel_llm.processors._anomaly import RequestAnomalyProcessor

        gpu_state = None
        if gpu_store is not None:
            def gpu_state(uuid: str, t: float) -> Any:
                return gpu_store.at(uuid, t, max_age_s=5.0)
        self.pyod = RequestAnomalyProcessor("ecod", contamination=0.04, min_fit=300, refit_every=200,
                                            rate_window_s=20.0, rate_threshold=0.4, min_anomalies=10,
                                            gpu_state=gpu_state, meter_provider=meter_provider)
        self.components["pyod"] = "otel_llm.processors.RequestAnomalyProcessor (PyOD ECOD over request features)"
        self.record = PipelineRecord()
        self.sinks = list(sinks)
        self.rca_window_s = rca_window_s
        self.on_alert = on_alert
        self.report_dir = report_dir
        self._alerts_fh = None
        if report_dir is not None:
            report_dir.mkdir(parents=True, exist_ok=True)
            self._alerts_fh = (report_dir / "alerts.jsonl").open("w", encoding="utf-8")
        self._spans: deque[SpanRecord] = deque()
        self._span_window_s = span_window_s
        self._open: dict[tuple[str, str], Detection] = {}
        self._det_incident: dict[tuple[str, str], str] = {}
        self._incident_seq = 0
        self._active: dict[str, Incident] = {}
        self._last_rca: dict[str, float] = {}
        self._gpu_open: dict[str, Detection] = {}
        self._lock = threading.Lock()
        self._engine = _rca_engine(gpu_store)
        self._sent_severity: dict[str, Severity] = {}  # incident id -> severity of its last alert
        if self._engine is not None:
            self.components["rca"] = ("otel_llm.processors.rca.RcaProcessor (trace assembly, frozen baselines, "
                                      "ranking with GPU evidence, incident lifecycle)")
        self._seen_det: set[tuple[str, str, float]] = set()

    # ------------------------------------------------------------------ ingest
    def tick(self, now: float, *, spans: Sequence[SpanRecord], points: Sequence[S.Point],
             samples: Sequence[Any], gpu_events: Sequence[Any] = ()) -> None:
        with self._lock:
            self._spans.extend(spans)
            while self._spans and self._spans[0].end < now - self._span_window_s:
                self._spans.popleft()
            new: list[Detection] = []
            for p in points:
                if p.metric in UP_METRICS and not (p.metric == S.TTFT_P95 and S.INSTANCE in p.attributes):
                    new += self._observe(self.thr_up, p)
                elif p.metric in DOWN_METRICS:
                    new += self._observe(self.thr_down, p)
                else:  # kept for the report, not thresholded
                    nan = float("nan")
                    self.record.bands.setdefault(p.series, []).append((p.timestamp, p.value, nan, nan, nan))
            for span in spans:
                if span.service == SERVICE_LLM and is_request_span(span):
                    new += self.pyod.observe(span)
            new += self._gpu(gpu_events)
            if self._engine is not None:
                self._engine_tick(now, spans, samples, new)
                return
            for d in new:
                self._on_detection(d)
            self._maybe_close(now)
            self._maybe_rank(now)

    def _record_detection(self, d: Detection) -> None:
        key = (d.kind, d.series, d.start)
        if d.end is None and key not in self._seen_det:
            self._seen_det.add(key)
            self.record.detections.append(d)
            return
        _settle(self.record.detections, d)

    def _engine_tick(self, now: float, spans: Sequence[SpanRecord], samples: Sequence[Any],
                     new: list[Detection]) -> None:
        """The processors' RcaProcessor owns incidents: it gets spans, GPU samples and every detection."""
        eng = self._engine
        for d in new:
            self._record_detection(d)
        eng.on_spans(spans, now)
        eng.on_gpu_samples(samples)
        if new:
            eng.on_detections(new)
        for inc in eng.tick(now):
            known = inc.id in self.record.incidents
            self.record.incidents[inc.id] = inc
            for d in inc.detections:  # the engine's own trace-based trigger is a detection too
                if d.kind == "rca":
                    self._record_detection(d)
            if inc.candidates:
                self.record.rca.append(RcaSnapshot(now, inc.id, inc.start, list(inc.candidates)))
            if inc.end is not None:
                self._alert("resolved", inc)
            elif not known or inc.candidates or self._sent_severity.get(inc.id) is not inc.severity:
                self._alert("firing", inc)  # new, re-ranked or escalated

    def _observe(self, proc: Any, p: S.Point) -> list[Detection]:
        dets = proc.observe(p.metric, p.attributes, p.timestamp, p.value)
        st = proc.series(p.metric, p.attributes).state
        band = st.current_band()
        lo, mid, hi = band if band is not None else (float("nan"),) * 3
        self.record.bands.setdefault(p.series, []).append((p.timestamp, p.value, lo, mid, hi))
        return list(dets)

    def _gpu(self, events: Sequence[Any]) -> list[Detection]:
        """GPU events from the collectors' GpuTracker (lost, xid, throttle_*) as ``gpu`` detections."""
        out: list[Detection] = []
        recovered = {ev.key for ev in events if ev.kind == "recovered"}
        for ev in events:
            self.record.gpu_events.append(ev)
            if ev.kind == "xid" and ev.key in recovered:
                continue  # the returning GPU still shows the XID that took it out: not a new fault
            series = f'{semconv.HW_STATUS}{{{semconv.HW_ID}="{ev.key}"}}'
            if ev.kind in ("lost", "throttle_start", "xid"):
                if ev.key in self._gpu_open and ev.kind != "lost":
                    continue
                if ev.kind == "lost":
                    what = "GPU lost: its series vanished (XID 79 'fallen off the bus' or a reset)"
                    sev = Severity.CRITICAL
                elif ev.kind == "xid":
                    what = f"XID {ev.attributes.get('xid')}: {ev.attributes.get('meaning', '')}"
                    sev = Severity.CRITICAL
                else:
                    what = f"GPU throttling: {', '.join(ev.attributes.get('reasons', []))}"
                    sev = Severity.WARNING
                prev = self._gpu_open.get(ev.key)
                if prev is not None:  # escalate: close the milder one
                    out.append(replace(prev, end=ev.timestamp))
                d = Detection(kind="gpu", series=series, start=ev.timestamp, severity=sev, score=1.0,
                              metric=semconv.HW_STATUS, attributes={semconv.HW_ID: ev.key}, explanation=what)
                self._gpu_open[ev.key] = d
                out.append(d)
            elif ev.kind in ("recovered", "throttle_end"):
                prev = self._gpu_open.pop(ev.key, None)
                if prev is not None:
                    out.append(replace(prev, end=ev.timestamp))
        return out

    # --------------------------------------------------------------- incidents
    @staticmethod
    def _scope(d: Detection) -> str:
        """Incidents are grouped per scope: one GPU's own signals, or the serving path."""
        uuid = d.attributes.get(semconv.HW_ID)
        if uuid and not d.attributes.get("service.name"):
            return f"gpu:{uuid}"
        return "serving"

    def _on_detection(self, d: Detection) -> None:
        key = (d.kind, d.series)
        prev = self._open.get(key)
        if d.end is None and prev is not None and prev.start == d.start:
            self._update_open(key, d)
            return
        if d.end is None:
            self._open[key] = d
            self.record.detections.append(d)
            scope = self._scope(d)
            inc = self._active.get(scope)
            if inc is None or not inc.active:
                self._incident_seq += 1
                inc = Incident(id=f"inc-{self._incident_seq:03d}", start=d.start, severity=d.severity,
                               title=_title(d))
                self.record.incidents[inc.id] = inc
                self._active[scope] = inc
                inc.detections.append(d)
                self._last_rca[inc.id] = 0.0
                self._alert("firing", inc)
            else:
                inc.detections.append(d)
                if d.severity is Severity.CRITICAL:
                    inc.severity = Severity.CRITICAL
            self._det_incident[key] = inc.id
        else:
            self._open.pop(key, None)
            _settle(self.record.detections, d)
            inc_id = self._det_incident.pop(key, None)
            inc = self.record.incidents.get(inc_id) if inc_id else None
            if inc is not None:
                _settle(inc.detections, d)

    def _update_open(self, key: tuple[str, str], d: Detection) -> None:
        """A detector published an open detection again (same start): it escalated. Replace it where it
        is recorded; an incident it turns critical is sent again."""
        self._open[key] = d
        inc_id = self._det_incident.get(key)
        inc = self.record.incidents.get(inc_id) if inc_id else None
        _settle(self.record.detections, d)
        if inc is None:
            return
        _settle(inc.detections, d)
        if d.severity is Severity.CRITICAL and inc.severity is not Severity.CRITICAL and inc.active:
            inc.severity = Severity.CRITICAL
            self._alert("firing", inc)

    def _maybe_close(self, now: float) -> None:
        for inc in list(self._active.values()):
            if not inc.active or any(x.end is None for x in inc.detections):
                continue
            last = max((x.end or now) for x in inc.detections)
            if now - last >= 4.0:
                inc.end = last
                inc.updated = now
                self._alert("resolved", inc)

    def _maybe_rank(self, now: float, *, force: bool = False) -> None:
        for inc in list(self._active.values()):
            if inc.active and (force or now - self._last_rca.get(inc.id, 0.0) >= 4.0):
                self._rank(inc, now)

    def _rank(self, inc: Incident, now: float) -> None:
        self._last_rca[inc.id] = now
        open_starts = [x.start for x in inc.detections if x.end is None] or [inc.start]
        # the abnormal window: since the oldest open detection, at most the last rca_window_s
        start = max(min(open_starts) - 4.0, now - self.rca_window_s)
        spans = list(self._spans)
        gpu_events = self._gpu_window_events(start, now)
        try:
            cands = self._rca(spans, start, now, gpu_events=gpu_events)
        except Exception as exc:
            report_error("demo.rca", exc)
            return
        first_ranking = not inc.candidates
        changed = [c.name for c in cands[:1]] != [c.name for c in inc.candidates[:1]]
        inc.candidates = list(cands)
        inc.updated = now
        self.record.rca.append(RcaSnapshot(now, inc.id, start, list(cands)))
        if first_ranking or changed:
            self._alert("firing", inc)

    def _gpu_window_events(self, start: float, end: float) -> list[Any]:
        try:
            from otel_llm.processors.rca._rank import GpuEvent
        except ImportError:
            return []
        out = []
        for d in self.record.detections:
            uuid = str(d.attributes.get(semconv.HW_ID, ""))
            if not uuid or d.attributes.get("service.name"):  # GPU signals only, not per-GPU request series
                continue
            if d.start <= end and (d.end is None or d.end >= start):
                reason = d.explanation.split(":")[0] if d.kind == "gpu" else f"{d.metric} outside its band"
                out.append(GpuEvent(uuid=uuid, start=d.start, end=d.end, reason=reason, score=d.score or 1.0))
        return out

    # ------------------------------------------------------------------ alerts
    def _alert(self, status: str, inc: Incident) -> None:
        self._sent_severity[inc.id] = inc.severity
        top = inc.top
        event = {"status": status, "time": time.time(), "incident": inc.id, "title": inc.title,
                 "severity": inc.severity.value, "start": inc.start, "end": inc.end,
                 "root_cause": top.name if top else None,
                 "root_cause_reason": top.reason if top else None,
                 "detections": [d.series for d in inc.detections][-8:],
                 "candidates": [c.to_dict() for c in inc.candidates[:5]]}
        self.record.alerts.append(event)
        if self._alerts_fh is not None:
            self._alerts_fh.write(json.dumps(event, default=str) + "\n")
            self._alerts_fh.flush()
        if self.on_alert is not None:
            try:
                self.on_alert(event)
            except Exception as exc:
                report_error("demo.alert_view", exc)
        for sink in self.sinks:
            try:
                sink.export([inc])
            except Exception as exc:  # sinks must not raise; never let one stop the demo
                report_error("demo.sink", exc)

    # ------------------------------------------------------------------ close
    def finish(self, now: float) -> None:
        with self._lock:
            if self._engine is not None:
                try:
                    for inc in self._engine.flush(now):
                        self.record.incidents[inc.id] = inc
                        if inc.candidates:
                            self.record.rca.append(RcaSnapshot(now, inc.id, inc.start, list(inc.candidates)))
                except Exception as exc:
                    report_error("demo.rca", exc)
            else:
                self._maybe_rank(now, force=True)
        for proc in (self.thr_up, self.thr_down, self.pyod):
            try:
                proc.shutdown()
            except Exception as exc:
                report_error("demo.pipeline", exc)
        for sink in self.sinks:
            try:
                sink.force_flush(5_000)
                sink.shutdown(5_000)
            except Exception as exc:
                report_error("demo.sink", exc)
        if self._alerts_fh is not None:
            self._alerts_fh.close()
            self._alerts_fh = None


def _title(d: Detection) -> str:
    return d.explanation.split(";")[0][:120] if d.explanation else f"{d.kind} on {d.series}"


def _settle(dets: list[Detection], d: Detection) -> None:
    """``d`` updates (still open: an escalation) or ends the open detection of ``dets`` with its kind, series
    and start; replaced in place."""
    for i, x in enumerate(dets):
        if x.end is None and (x.kind, x.series, x.start) == (d.kind, d.series, d.start):
            dets[i] = d if d.end is None else replace(x, end=d.end)


def _rca_engine(gpu_store: Any) -> Any:
    """The processors' streaming RCA, tuned for a compressed demo (minutes, not hours)."""
    try:
        from otel_llm.processors.rca import RcaProcessor
    except ImportError:
        return None
    return RcaProcessor(quiet_period_s=2.0, root_grace_s=0.5, lookback_s=5.0, rerank_interval_s=4.0,
                        resolve_after_s=8.0, warmup_traces=80, detect_window_s=20.0, gpu_state=gpu_store,
                        self_detect=False)  # detection is the detectors' job here; RCA ranks and groups


def _rca_fn() -> tuple[Callable[..., list[RootCauseCandidate]], str]:
    try:
        from otel_llm.processors.rca._offline import rank_window
    except ImportError:  # RCA not installed: incidents still open and alert, without a ranking
        return (lambda *a, **k: []), "NOT AVAILABLE (otel_llm.processors.rca missing): incidents without ranking"
    return rank_window, "otel_llm.processors.rca.rank_window (trace + GPU-event ranking)"

