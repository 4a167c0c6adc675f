"""Our one names module agrees with the OpenTelemetry semantic-conventions package."""

from __future__ import annotations

import pytest

from otel_llm import semconv as sc

gen_ai_attrs = pytest.importorskip("opentelemetry.semconv._incubating.attributes.gen_ai_attributes")
gen_ai_metrics = pytest.importorskip("opentelemetry.semconv._incubating.metrics.gen_ai_metrics")
hw_attrs = pytest.importorskip("opentelemetry.semconv._incubating.attributes.hw_attributes")
hw_metrics = pytest.importorskip("opentelemetry.semconv._incubating.metrics.hw_metrics")
error_attrs = pytest.importorskip("opentelemetry.semconv.attributes.error_attributes")


def _pairs():
    for name in dir(sc):
        value = getattr(sc, name)
        if not isinstance(value, str) or not name.isupper() or name.startswith("_"):
            continue
        for module in (gen_ai_attrs, gen_ai_metrics, hw_attrs, hw_metrics, error_attrs):
            if hasattr(module, name):
                yield name, value, getattr(module, name)


def test_every_semconv_named_constant_matches_the_package():
    pairs = list(_pairs())
    assert len(pairs) >= 30  # the check covers the GenAI and hw names, not a handful
    mismatched = [(n, ours, theirs) for n, ours, theirs in pairs if ours != theirs]
    assert mismatched == []


def test_own_names_live_in_the_own_namespace():
    for name in dir(sc):
        value = getattr(sc, name)
        if name.startswith("OTEL_LLM_") and isinstance(value, str):
            assert value.startswith("otel_llm."), name


def test_bucket_advice_is_sorted_and_positive():
    for name in dir(sc):
        if name.startswith("BUCKETS_"):
            bounds = getattr(sc, name)
            assert list(bounds) == sorted(bounds) and bounds[0] > 0, name
