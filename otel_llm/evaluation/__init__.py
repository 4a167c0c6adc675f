"""Evaluation of otel-llm's detectors on labelled data (``otel-llm eval ...``).

* :mod:`otel_llm.evaluation.nab` -- the NAB layout reader and scorer (NAB
  profiles, point-wise and event-level metrics);
* :mod:`otel_llm.evaluation.anomaly` -- the streaming harness behind
  ``otel-llm eval anomaly``;
* :mod:`otel_llm.evaluation.synthetic` -- labelled synthetic ops series in the
  NAB layout (``otel-llm eval synth``): our own development data.

Submodules are imported on use: ``import otel_llm.evaluation`` stays cheap.
"""
