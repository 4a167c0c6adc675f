"""GPU samples -> OpenTelemetry metrics (observable instruments fed by a poller)."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable

from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Observation
from otel_llm.collectors._convert import INSTRUMENTS, Points, base_attributes, lost_points, sample_points
from otel_llm.collectors._model import Collector, GpuSample
from otel_llm.collectors._state import GpuEvent, GpuTracker
from otel_llm.collectors._store import GpuStateStore

from otel_llm import environment_variables as ev
from otel_llm import semconv as sc
from otel_llm._env import env_float
from otel_llm._selftelemetry import report_error

_logger = logging.getLogger("otel_llm.collectors")
_DEFAULT_INTERVAL_S = 5.0
_SCOPE = "otel_llm.collectors"


class GpuMetrics:
    """Polls ``collector`` every ``interval_s`` and reports the GPU metrics.

    Instruments are observable: each export reads the points computed by the
    latest poll, so a metric reader never waits on a GPU source. Call
    :meth:`start` for a background daemon poller (rebuilt after ``fork``),
    or :meth:`poll` yourself. A failed poll (source down) exports no GPU data
    points (stale values are never repeated as if fresh) but keeps the
    scrape-error counter; a lost GPU exports ``hw.status{hw.state=failed}=1``.

    ``store`` (a :class:`GpuStateStore`) receives every sample and event, for
    processors. ``listeners`` are called with ``(samples, events)`` after each
    poll; their exceptions are logged once and counted, never raised.
    Interval precedence: argument > ``OTEL_LLM_GPU_POLL_INTERVAL`` > 5 s.
    """

    def __init__(
        self,
        collector: Collector,
        meter_provider=None,
        interval_s: float | None = None,
        *,
        store: GpuStateStore | None = None,
        max_gpus: int = 64,
        listeners: list[Callable[[list[GpuSample], list[GpuEvent]], None]] | None = None,
    ) -> None:
        self.interval_s = env_float(ev.OTEL_LLM_GPU_POLL_INTERVAL, interval_s, _DEFAULT_INTERVAL_S, minimum=0.01)
        self.collector = collector
        self.tracker = GpuTracker(max_gpus=max_gpus)
        self.store = store
        self.listeners = list(listeners or [])
        self._points: dict[str, list[tuple[dict, float]]] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shutdown = False
        self.polls = 0
        self.failed_polls = 0
        meter = (meter_provider or otel_metrics.get_meter_provider()).get_meter(_SCOPE, schema_url=sc.SCHEMA_URL)
        factories = {
            "gauge": meter.create_observable_gauge,
            "counter": meter.create_observable_counter,
            "updowncounter": meter.create_observable_up_down_counter,
        }
        self._instruments = [
            factories[kind](name, callbacks=[self._callback(name)], unit=unit, description=desc)
            for name, (kind, unit, desc) in INSTRUMENTS.items()
        ]
        self._instruments.append(meter.create_observable_counter(
            sc.OTEL_LLM_GPU_SCRAPE_ERRORS, callbacks=[self._scrape_errors], unit="{error}",
            description="Failed GPU source polls (dcgm-exporter scrapes, DCGM/NVML reads), by error.type",
        ))

    # --------------------------------------------------------------- polling
    def poll(self) -> list[GpuSample]:
        """Collect once, update state, store and points. Never raises."""
        with self._poll_lock:
            return self._poll()

    def _poll(self) -> list[GpuSample]:
        try:
            samples = self.collector.collect()
            ok = bool(getattr(self.collector, "last_collect_ok", True))
            events = self.tracker.update(samples, ok=ok)
            points: dict[str, list[tuple[dict, float]]] = {}
            if ok:
                for s in self.tracker.latest.values():
                    _merge(points, base_attributes(s), sample_points(s, self.tracker))
                for s in self.tracker.lost.values():
                    _merge(points, base_attributes(s), lost_points(s, self.tracker))
            else:
                self.failed_polls += 1
            with self._lock:
                self._points = points
            self.polls += 1
            if self.store is not None:
                self.store.add(samples, events)
            for listener in self.listeners:
                try:
                    listener(samples, events)
                except Exception as exc:  # user callback boundary
                    report_error("gpu.metrics.listener", exc)
            return samples
        except Exception as exc:  # boundary: a poll never breaks the host
            report_error("gpu.metrics.poll", exc)
            return []

    def _callback(self, name: str):
        def observe(options: CallbackOptions):
            with self._lock:
                pts = self._points.get(name, ())
            return [Observation(v, attrs) for attrs, v in pts]

        return observe

    def _scrape_errors(self, options: CallbackOptions):
        errors = getattr(self.collector, "scrape_errors", None)
        if not errors:
            return []
        return [Observation(n, {sc.ERROR_TYPE: etype}) for etype, n in dict(errors).items()]

    # ------------------------------------------------------------- lifecycle
    def start(self) -> GpuMetrics:
        """Start the daemon poller (idempotent); it survives ``fork`` by restarting in the child."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="otel-llm-gpu-poller", daemon=True)
            self._thread.start()
            if not getattr(self, "_registered", False):
                self._registered = True
                ref = weakref.WeakMethod(self._at_fork_child)
                os.register_at_fork(after_in_child=lambda: (m := ref()) and m())
                atexit.register(self.shutdown)
        return self

    def _at_fork_child(self) -> None:
        if self._thread is not None and not self._shutdown:
            self._thread = None
            self._stop = threading.Event()
            self.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    def shutdown(self, timeout_millis: float = 5000) -> None:
        """Stop the poller and close the collector. Safe to call twice."""
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_millis / 1000.0)
        try:
            self.collector.close()
        except Exception as exc:
            report_error("gpu.metrics.close", exc)


def _merge(points: Points, base: dict, extra: Points) -> None:
    for name, pts in extra.items():
        bucket = points.setdefault(name, [])
        for attrs, value in pts:
            bucket.append(({**base, **attrs}, value))


def start_gpu_metrics(
    source: str | None = None,
    *,
    meter_provider=None,
    interval_s: float | None = None,
    store: GpuStateStore | None = None,
    **collector_kwargs,
) -> GpuMetrics | None:
    """One call for servers: pick the source (``OTEL_LLM_GPU_SOURCE``, default ``auto``), start polling.

    Returns the started :class:`GpuMetrics`, or None when ``auto`` finds no GPU
    source (one log line says so) or the chosen source cannot start (logged
    once with what to install/start; the host keeps running).
    """
    from otel_llm.collectors._auto import NullCollector, create_collector

    try:
        interval = env_float(ev.OTEL_LLM_GPU_POLL_INTERVAL, interval_s, _DEFAULT_INTERVAL_S, minimum=0.01)
        collector = create_collector(source, interval_s=interval, **collector_kwargs)
    except Exception as exc:  # configuration boundary: the host must start anyway
        report_error("gpu.collector", exc)
        return None
    if isinstance(collector, NullCollector):
        return None
    return GpuMetrics(collector, meter_provider, interval, store=store).start()
