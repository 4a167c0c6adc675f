"""``otel-llm demo``: an instrumented LLM server under replayed real traffic, with injected faults.

Public surface:

* :class:`DemoConfig`, :func:`run_demo` -- one run, with live view, scorecard and report;
* :func:`load_faults`, :func:`default_schedule`, :class:`Fault` -- fault schedules (YAML);
* :func:`read_trace`, :func:`plan_workload`, :class:`WorkloadSpec`, :func:`replay` -- workload replay.
"""

from otel_llm.demo._demo import run_demo
from otel_llm.demo._faults import Fault, RootCause, default_schedule, load_faults, parse_faults
from otel_llm.demo._runner import DemoConfig, DemoRun
from otel_llm.demo._workload import WorkloadRequest, WorkloadSpec, plan_workload, read_trace, replay

__all__ = [
    "DemoConfig",
    "DemoRun",
    "Fault",
    "RootCause",
    "WorkloadRequest",
    "WorkloadSpec",
    "default_schedule",
    "load_faults",
    "parse_faults",
    "plan_workload",
    "read_trace",
    "replay",
    "run_demo",
]
