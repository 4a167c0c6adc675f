"""Overhead of otel-llm's instrumentation, measured side by side in one run.

    .venv/bin/python benchmarks/overhead.py            # ~1-2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/overhead.py --rounds 300 --skip-peers

What it measures (each workload in its own subprocess, bare and instrumented
calls ALTERNATING in random order after a warm-up, medians over all rounds):

1. ``generate()`` of 32 tokens on the tiny model (otel-llm only: the peers do
   not instrument ``generate``);
2. the same 32 tokens through a ``text-generation`` pipeline -- the workload
   the peers instrument -- under otel-llm, openlit and OpenLLMetry's
   ``opentelemetry-instrumentation-transformers``, each in its own process;
3. a streamed ``/v1/completions`` request to the reference server (when
   ``otel_llm.server`` provides an app factory);
4. otel-llm's own cost in isolation: the generate wrapper around a synthetic
   32-token generation (no model noise), and the deferred per-gap metric
   recording that runs at collection time (off the request path).

Bare calls call the original, unwrapped functions (the wrapped class
attributes are swapped back for the bare call; swapping is not timed).
Two costs per row: the latency added to a call (median paired difference)
and the total process CPU per call (all threads; blocks of bare vs
instrumented calls, each instrumented block flushed) -- they differ when
work is finished off the request path (``OTEL_LLM_DEFER_FINISH``, on by
default with batch exporters; ``OTEL_LLM_DEFER_FINISH=false`` to compare).
Spans go to a BatchSpanProcessor with a discarding exporter; metrics to a
PeriodicExportingMetricReader with a discarding exporter -- the production
shape, minus the network.

Peers: ``pip install openlit opentelemetry-instrumentation-transformers``
(the ``bench`` extra) would downgrade the OpenTelemetry SDK and register a
dozen unrelated instrumentors in the main venv, so they live in their own
venv: ``--setup-peers`` creates ``/tmp/otel-llm-peers`` (or pass
``--peers-python``), which sees torch/transformers/otel-llm from this venv
behind its own packages.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOKENS = int(os.environ.get("OTEL_LLM_BENCH_TOKENS", "32"))
"""Tokens per call (the long row sets 128 in its own process to measure the marginal cost per token)."""
LONG_TOKENS = 128
PROMPT = "The quick brown fox jumps over the lazy dog and"
TARGET_CALL_US = 250.0
TARGET_TOKEN_US = 2.0
TARGET_RATIO = 0.01
DEFAULT_PEERS_VENV = Path("/tmp/otel-llm-peers")
_MARK = "BENCH-RESULT "
CANDIDATES = (
    ("transformers.generation.utils", "GenerationMixin", "generate"),
    ("transformers.pipelines.text_generation", "TextGenerationPipeline", "__call__"),
    ("transformers.pipelines.text_generation", "TextGenerationPipeline", "_forward"),
    ("transformers.pipelines.base", "Pipeline", "__call__"),
    ("transformers.pipelines.base", "Pipeline", "forward"),
)


# ---------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------
def _providers(*extra_readers):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullSpans(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    class NullMetrics(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis=10_000):
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):
            pass

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(NullSpans()))
    try:
        from otel_llm._views import default_views

        views = default_views()
    except Exception:
        views = []
    reader = PeriodicExportingMetricReader(NullMetrics(), export_interval_millis=1000)
    mp = MeterProvider(metric_readers=[reader, *extra_readers], views=views)
    return tp, mp


def _snapshot() -> dict[tuple[str, str, str], Any]:
    import importlib

    out = {}
    for mod, cls, attr in CANDIDATES:
        owner = getattr(importlib.import_module(mod), cls)
        out[(mod, cls, attr)] = owner.__dict__.get(attr)
    return out


class _Toggle:
    """Swap instrumented class attributes for the originals and back (untimed)."""

    def __init__(self, before: dict, after: dict) -> None:
        import importlib

        self.changes = []
        for key, original in before.items():
            if after[key] is not original:
                mod, cls, attr = key
                self.changes.append((getattr(importlib.import_module(mod), cls), attr, original, after[key]))

    def bare(self) -> None:
        for owner, attr, original, _ in self.changes:
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)

    def instrumented(self) -> None:
        for owner, attr, _, wrapped in self.changes:
            setattr(owner, attr, wrapped)

    def names(self) -> list[str]:
        return [f"{owner.__name__}.{attr}" for owner, attr, _, _ in self.changes]


def _instrument(which: str, tp, mp) -> None:
    if which == "otel_llm":
        from otel_llm.instrumentation.transformers import TransformersInstrumentor

        TransformersInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    elif which == "openllmetry":
        from opentelemetry.instrumentation.transformers import TransformersInstrumentor as Peer

        Peer().instrument(tracer_provider=tp, meter_provider=mp)
    elif which == "openlit":
        import logging
        import tempfile

        import openlit
        from opentelemetry import metrics, trace

        logging.getLogger("openlit").setLevel(logging.CRITICAL)
        trace.set_tracer_provider(tp)  # openlit reuses configured global providers
        metrics.set_meter_provider(mp)
        pricing = Path(tempfile.mkdtemp()) / "pricing.json"
        pricing.write_text("{}")  # no pricing download (no network here)
        # content off like otel-llm's default; events off: without an OTLP endpoint openlit prints them to stdout
        openlit.init(
            capture_message_content=False, disable_events=True, collect_gpu_stats=False, pricing_json=str(pricing)
        )
    else:
        raise SystemExit(f"unknown instrumentation {which!r}")


def _time_pairs(call, toggle: _Toggle, rounds: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        toggle.bare()
        call()
        toggle.instrumented()
        call()
    bare, inst = [], []
    rng = random.Random(0)
    clock = time.perf_counter_ns
    for _ in range(rounds):
        order = (False, True) if rng.random() < 0.5 else (True, False)
        pair = {}
        for instrumented in order:
            (toggle.instrumented if instrumented else toggle.bare)()
            t0 = clock()
            call()
            pair[instrumented] = clock() - t0
        bare.append(pair[False])
        inst.append(pair[True])
    toggle.instrumented()
    return {**_stats(bare, inst), "wrapped": toggle.names()}


def _cpu_per_call(call, toggle: _Toggle, tp, block: int, reps: int) -> tuple[float, list[float]]:
    """Process CPU (all threads) per call: blocks of bare calls vs blocks of instrumented calls, each
    instrumented block followed by ``tp.force_flush()`` so work finished off the request path (otel-llm's
    deferred finish, batch exporters) is charged to the calls that caused it. Median and quartiles, us."""
    def block_cpu_ns(switch) -> int:
        switch()
        t0 = time.process_time_ns()
        for _ in range(block):
            call()
        tp.force_flush()
        return time.process_time_ns() - t0

    diffs = []
    for _ in range(reps):
        tp.force_flush()
        bare = block_cpu_ns(toggle.bare)
        inst = block_cpu_ns(toggle.instrumented)
        diffs.append((inst - bare) / block / 1e3)
    q1, _, q3 = statistics.quantiles(diffs, n=4)
    return statistics.median(diffs), [q1, q3]


def _stats(bare: list[int], inst: list[int]) -> dict[str, Any]:
    """Medians, the median paired difference with a bootstrap 95% CI, and the p10 difference (undisturbed runs)."""
    diffs = [i - b for b, i in zip(bare, inst, strict=True)]
    rng = random.Random(7)
    boot = sorted(
        statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(400)
    )

    def p10(xs: list[int]) -> float:
        return statistics.quantiles(xs, n=10)[0]

    return {
        "bare_ms": statistics.median(bare) / 1e6,
        "inst_ms": statistics.median(inst) / 1e6,
        "added_us": statistics.median(diffs) / 1e3,
        "ci_us": (boot[10] / 1e3, boot[389] / 1e3),
        "p10_added_us": (p10(inst) - p10(bare)) / 1e3,
        "rounds": len(diffs),
    }


def worker(which: str, workload: str, rounds: int, warmup: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from otel_llm.models import build_tiny_model

    model, tok = build_tiny_model(seed=0)
    enc = tok(PROMPT, return_tensors="pt")
    kw = {"max_new_tokens": TOKENS, "min_new_tokens": TOKENS, "do_sample": False}
    pipe = None
    if workload == "pipeline":
        from transformers import pipeline

        pipe = pipeline("text-generation", model=model, tokenizer=tok, device="cpu")

    def call():
        if pipe is not None:
            pipe(PROMPT, return_full_text=False, **kw)
        else:
            with torch.no_grad():
                model.generate(**enc, **kw)

    tp, mp = _providers()
    before = _snapshot()
    t0 = time.perf_counter()
    _instrument(which, tp, mp)
    init_s = time.perf_counter() - t0
    toggle = _Toggle(before, _snapshot())
    if not toggle.changes:
        return {"error": f"{which} did not wrap any of {['.'.join(c[1:]) for c in CANDIDATES]}"}
    result = _time_pairs(call, toggle, rounds, warmup)
    result["init_s"] = init_s
    result["tokens"] = TOKENS
    result["cpu_added_us"], result["cpu_spread_us"] = _cpu_per_call(call, toggle, tp, 10, max(rounds // 10, 10))
    tp.shutdown()
    mp.shutdown()
    return result


def isolated(rounds: int) -> dict[str, Any]:
    """otel-llm's own cost around a synthetic 32-token generate (no model, no noise)."""
    import torch
    from opentelemetry import trace

    from otel_llm.instrumentation._genai import GenAIInstruments, stall_threshold_s
    from otel_llm.instrumentation.transformers._wrapper import GenerateWrapper
    from otel_llm.models import build_tiny_model

    model, tok = build_tiny_model(seed=0)
    enc = tok(PROMPT, return_tensors="pt")
    ids = enc["input_ids"]
    new = torch.randint(3, 100, (1, TOKENS))
    steps = [new[:, i] for i in range(TOKENS)]
    out = torch.cat([ids, new], dim=1)

    def fake_generate(*args, streamer=None, **kwargs):
        if streamer is not None:
            streamer.put(ids)
            for s in steps:
                streamer.put(s)
            streamer.end()
        return out

    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    probe = InMemoryMetricReader()
    tp, mp = _providers(probe)
    instruments = GenAIInstruments(mp.get_meter("bench"), meter_provider=mp)  # as TransformersInstrumentor does
    wrapper = GenerateWrapper(
        trace.get_tracer("bench", tracer_provider=tp), instruments, capture_content=False,
        stall_threshold_s=stall_threshold_s(),
    )
    kw = {"input_ids": ids, "attention_mask": enc["attention_mask"], "max_new_tokens": TOKENS}
    bare_put = _NoopStreamer()

    def bare():
        fake_generate(streamer=bare_put, **kw)  # same puts, nobody timing them

    def inst():
        wrapper(fake_generate, model, (), dict(kw))

    for _ in range(200):
        bare()
        inst()
    b, i = [], []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        t0 = clock()
        bare()
        t1 = clock()
        inst()
        t2 = clock()
        b.append(t1 - t0)
        i.append(t2 - t1)
    # per-token cost: the hook alone (TimingStreamer.put), 10k puts
    from otel_llm.instrumentation._genai import TokenTimeline
    from otel_llm.instrumentation.transformers._hooks import TimingStreamer

    timed_runs, bare_runs = [], []
    for _ in range(7):  # min of alternating runs: robust to a busy machine
        s = TimingStreamer(TokenTimeline())
        s.put(ids)
        t0 = clock()
        for _ in range(10_000):
            s.put(steps[0])
        timed_runs.append((clock() - t0) / 10_000)
        t0 = clock()
        for _ in range(10_000):
            bare_put.put(steps[0])
        bare_runs.append((clock() - t0) / 10_000)
    per_put_ns = min(timed_runs) - min(bare_runs)
    # collection cost of the pre-aggregated histograms (paid on the exporter's thread)
    t0 = clock()
    for _ in range(100):
        probe.get_metrics_data()
    collect_us = (clock() - t0) / 100 / 1e3
    tp.shutdown()
    mp.shutdown()
    return {
        "added_us": (statistics.median(i) - statistics.median(b)) / 1e3,
        "per_token_hook_ns": per_put_ns,
        "collect_us": collect_us,
    }


def decompose(rounds: int, warmup: int) -> dict[str, Any]:
    """In-situ, real model: time spent in otel-llm's code around generate(), and generate() with vs without our hook.

    The wrapper is called with a timed inner function, so "outside" is exactly our code on the
    request path (span, hook set-up, counts, metrics), measured on every call; the hook's effect
    on generate() itself compares the fastest decile of runs with our streamer and without.
    """
    import torch
    from transformers.generation.utils import GenerationMixin

    from otel_llm.instrumentation.transformers import TransformersInstrumentor
    from otel_llm.models import build_tiny_model

    torch.set_num_threads(1)
    model, tok = build_tiny_model(seed=0)
    enc = tok(PROMPT, return_tensors="pt")
    kw = {**enc, "max_new_tokens": TOKENS, "min_new_tokens": TOKENS, "do_sample": False}
    tp, mp = _providers()
    TransformersInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    wrapper = GenerationMixin.generate._self_wrapper
    original = GenerationMixin.generate.__wrapped__
    clock = time.perf_counter_ns
    inner: list[int] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        out = original(model, *args, **kwargs)
        inner.append(clock() - t0)
        return out

    outside, with_hook, bare = [], [], []
    for i in range(rounds + warmup):
        t0 = clock()
        wrapper(timed, model, (), dict(kw))
        total = clock() - t0
        t0 = clock()
        original(model, **kw)
        b = clock() - t0
        if i >= warmup:
            outside.append(total - inner[-1])
            with_hook.append(inner[-1])
            bare.append(b)
    TransformersInstrumentor().uninstrument()
    tp.shutdown()
    mp.shutdown()
    q = statistics.quantiles
    return {
        "outside_us": statistics.median(outside) / 1e3,
        "outside_p10_us": q(outside, n=10)[0] / 1e3,
        "hook_p10_us": (q(with_hook, n=10)[0] - q(bare, n=10)[0]) / 1e3,
        "bare_p10_ms": q(bare, n=10)[0] / 1e6,
    }


class _NoopStreamer:
    def put(self, value):
        pass

    def end(self):
        pass


def server_worker(rounds: int, warmup: int) -> dict[str, Any]:
    """A streamed /v1/completions request to the reference server: bare app vs instrumented app, one model."""
    try:
        from otel_llm.server import create_app, run_in_thread
    except ImportError as exc:
        return {"error": f"reference server not available ({exc}); server benchmark skipped"}
    import httpx
    import torch

    from otel_llm.instrumentation.transformers import TransformersInstrumentor
    from otel_llm.models import build_tiny_model

    torch.set_num_threads(1)
    model, tok = build_tiny_model(seed=0)
    tp, mp = _providers()
    bare_app = create_app(model, tok, instrument=False)
    inst_app = create_app(model, tok, instrument=True, tracer_provider=tp, meter_provider=mp)
    before = _snapshot()
    TransformersInstrumentor().instrument(tracer_provider=tp, meter_provider=mp)
    toggle = _Toggle(before, _snapshot())
    body = {"model": "otel-llm-tiny", "prompt": PROMPT, "max_tokens": TOKENS, "stream": True, "temperature": 0}
    chunks = []
    with run_in_thread(bare_app) as bare_srv, run_in_thread(inst_app) as inst_srv, httpx.Client(timeout=30) as client:

        def request(url):
            n = 0
            with client.stream("POST", f"{url}/v1/completions", json=body) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if line.startswith("data:") and '"text"' in line:
                        n += 1
            chunks.append(n)

        urls = {False: bare_srv.url, True: inst_srv.url}
        for _ in range(warmup):
            for k in (False, True):
                (toggle.instrumented if k else toggle.bare)()
                request(urls[k])
        bare, inst = [], []
        rng = random.Random(1)
        for _ in range(rounds):
            pair = {}
            for k in ((False, True) if rng.random() < 0.5 else (True, False)):
                (toggle.instrumented if k else toggle.bare)()
                t0 = time.perf_counter_ns()
                request(urls[k])
                pair[k] = time.perf_counter_ns() - t0
            bare.append(pair[False])
            inst.append(pair[True])
    TransformersInstrumentor().uninstrument()
    tp.shutdown()
    mp.shutdown()
    return {**_stats(bare, inst), "tokens": statistics.median(chunks)}


# ---------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------
def _run(python: str, args: list[str], timeout_s: int, extra_env: dict | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(extra_env or {})
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        proc = subprocess.run(
            [python, __file__, *args], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s}s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def _peers_python(arg: str | None) -> str | None:
    if arg:
        return arg
    cand = DEFAULT_PEERS_VENV / "bin" / "python"
    return str(cand) if cand.exists() else None


def setup_peers() -> None:
    """Create the peers' venv; it reads torch/transformers/otel-llm from this venv after its own packages."""
    import site
    import venv

    if not (DEFAULT_PEERS_VENV / "bin" / "python").exists():
        venv.create(DEFAULT_PEERS_VENV, with_pip=True)
    py = DEFAULT_PEERS_VENV / "bin" / "python"
    # the bundled pip (23.x) backtracks for many minutes on openlit's dependency tree
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-U", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "openlit", "opentelemetry-instrumentation-transformers"],
                   check=True)
    ours = [p for p in site.getsitepackages() if p.endswith("site-packages")][0]
    target = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(target, "zz_otel_llm_main_venv.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    print(f"peers venv ready: {py}")


def _fmt(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  -- {r['error']}"
    tokens = r.get("tokens") or TOKENS
    added = r["added_us"]
    lo, hi = r["ci_us"]
    cpu = r.get("cpu_added_us")
    return (
        f"{r['bare_ms']:8.2f} {r['inst_ms']:8.2f} {added:9.1f} [{lo:8.1f},{hi:9.1f}] {r['p10_added_us']:9.1f} "
        f"{added / tokens:8.2f} {100 * added / 1e3 / r['bare_ms']:7.2f}% "
        + (f"{cpu:9.1f}" if cpu is not None else f"{'-':>9}")
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=300, help="bare/instrumented pairs per workload")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--peers-python", help="python of a venv with openlit + opentelemetry-instrumentation-transformers")
    ap.add_argument("--setup-peers", action="store_true", help=f"create {DEFAULT_PEERS_VENV} and exit")
    ap.add_argument("--worker", nargs=2, metavar=("WHICH", "WORKLOAD"),
                    help="one row in this process: WHICH = otel_llm | openlit | openllmetry, WORKLOAD = generate | "
                         "pipeline; prints a BENCH-RESULT json line")
    ap.add_argument("--isolated", action="store_true",
                    help="otel-llm's own code around a synthetic generate, finished inline (its whole CPU cost)")
    ap.add_argument("--server", action="store_true", help="the streamed reference-server row only")
    ap.add_argument("--decompose", action="store_true",
                    help="our code on the request path around a real generate(), timed on every call")
    a = ap.parse_args(argv)

    if a.worker:
        print(_MARK + json.dumps(worker(a.worker[0], a.worker[1], a.rounds, a.warmup)))
        return 0
    if a.isolated:
        print(_MARK + json.dumps(isolated(a.rounds)))
        return 0
    if a.decompose:
        print(_MARK + json.dumps(decompose(a.rounds, a.warmup)))
        return 0
    if a.server:
        print(_MARK + json.dumps(server_worker(a.rounds, a.warmup)))
        return 0
    if a.setup_peers:
        setup_peers()
        return 0

    me = sys.executable
    common = ["--rounds", str(a.rounds), "--warmup", str(a.warmup)]
    print(f"otel-llm overhead: {TOKENS}-token greedy generation on the tiny model, {a.rounds} alternating pairs "
          f"per row, one process per row, torch threads=1")
    rows: list[tuple[str, dict[str, Any]]] = []
    rows.append(("otel-llm  generate()", _run(me, ["--worker", "otel_llm", "generate", *common], 900)))
    rows.append((f"otel-llm  generate() x{LONG_TOKENS}",
                 _run(me, ["--worker", "otel_llm", "generate", *common], 1800, {"OTEL_LLM_BENCH_TOKENS": str(LONG_TOKENS)})))
    rows.append(("otel-llm  pipeline", _run(me, ["--worker", "otel_llm", "pipeline", *common], 900)))
    if a.skip_peers:
        rows.append(("peers", {"error": "skipped (--skip-peers)"}))
    else:
        peers_py = _peers_python(a.peers_python)
        if peers_py is None:
            msg = f"not installed: run `{me} {__file__} --setup-peers` (creates {DEFAULT_PEERS_VENV})"
            rows.append(("openlit   pipeline", {"error": msg}))
            rows.append(("openllmetry pipeline", {"error": msg}))
        else:
            rows.append(("openlit   pipeline", _run(peers_py, ["--worker", "openlit", "pipeline", *common], 900)))
            rows.append(("openllmetry pipeline", _run(peers_py, ["--worker", "openllmetry", "pipeline", *common], 900)))
    if a.skip_server:
        rows.append(("server stream", {"error": "skipped (--skip-server)"}))
    else:
        rows.append(("otel-llm  server stream", _run(me, ["--server", "--rounds", str(max(a.rounds // 2, 20)),
                                                          "--warmup", "5"], 900)))
    iso = _run(me, ["--isolated", "--rounds", "3000"], 600)
    dec = _run(me, ["--decompose", *common], 900)

    print()
    print(f"{'workload':24} {'bare ms':>8} {'instr ms':>8} {'+us/call':>9} {'95% CI of +us/call':>20} "
          f"{'+us p10':>9} {'+us/tok':>8} {'+%':>8} {'CPU +us':>9}")
    for name, r in rows:
        print(f"{name:24} {_fmt(r)}")
    print("(+us/call: median of paired differences, the latency added to a call; p10: difference of the fastest "
          "decile, i.e. undisturbed runs;\n CPU +us: process CPU of all threads per call, blocks of bare vs "
          "instrumented calls, work finished off the request path included)")
    print()
    if "error" in iso:
        print(f"isolated: -- {iso['error']}")
    else:
        print("otel-llm in isolation (synthetic 32-token generate, no model noise):")
        print(f"  wrapper + hook + span + metrics : {iso['added_us']:7.1f} us per call, all finished inline"
              f" (warm caches)")
        print(f"  per-token hook (TimingStreamer) : {iso['per_token_hook_ns'] / 1e3:7.3f} us per token"
              f" (target <= {TARGET_TOKEN_US:.0f})")
        print(f"  one collection of all its metrics: {iso['collect_us']:6.1f} us per export "
              "(exporter thread, not the request)")
    if "error" in dec:
        print(f"in-situ decomposition: -- {dec['error']}")
    else:
        print("otel-llm in-situ decomposition (real generate(), every call):")
        print(f"  our code on the request path    : {dec['outside_us']:7.1f} us median, "
              f"{dec['outside_p10_us']:.1f} us p10")
        print(f"  generate() with our hook vs bare: {dec['hook_p10_us']:+7.1f} us (fastest-decile difference, "
              f"bare p10 {dec['bare_p10_ms']:.2f} ms)")
    ours = dict(rows).get("otel-llm  generate()", {})
    long = dict(rows).get(f"otel-llm  generate() x{LONG_TOKENS}", {})
    if "added_us" in ours and "added_us" in long:
        slope = (long["added_us"] - ours["added_us"]) / (LONG_TOKENS - TOKENS)
        print(f"  marginal cost per token in situ : {slope:+7.2f} us per token ((added at {LONG_TOKENS} - added at "
              f"{TOKENS}) / {LONG_TOKENS - TOKENS}; noisy: +-(CI half-widths) / {LONG_TOKENS - TOKENS} = "
              f"+-{((ours['ci_us'][1] - ours['ci_us'][0]) + (long['ci_us'][1] - long['ci_us'][0])) / 2 / (LONG_TOKENS - TOKENS):.2f})")
    if "error" not in iso and "error" not in ours and "added_us" in ours:
        added = ours["added_us"]
        call_ok = added <= TARGET_CALL_US
        token_ok = iso["per_token_hook_ns"] / 1e3 <= TARGET_TOKEN_US
        share = added / 1e3 / ours["bare_ms"]
        print()
        print(f"targets on generate() (latency added, end to end): per call {'MET' if call_ok else 'NOT MET'} "
              f"({added:.0f} us, 95% CI [{ours['ci_us'][0]:.0f}, {ours['ci_us'][1]:.0f}], target <= "
              f"{TARGET_CALL_US:.0f}), per token hook {'MET' if token_ok else 'NOT MET'} "
              f"({iso['per_token_hook_ns'] / 1e3:.2f} us), share of the call {share:.2%} "
              f"({'MET' if share <= TARGET_RATIO else 'NOT MET'})")
        if ours.get("cpu_added_us") is not None:
            print(f"total CPU per call (request path + finished off it): {ours['cpu_added_us']:.0f} us "
                  f"(quartiles {', '.join(f'{c:.0f}' for c in ours['cpu_spread_us'])}); on a CPU-only host the "
                  "deferred part still competes with the next call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
