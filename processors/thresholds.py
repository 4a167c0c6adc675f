"""Dynamic thresholds: learned bands per series, an explicit alarm rule, time-to-breach alerts.

See :mod:`otel_llm.processors._thresholds` for the obligations of each piece and
``docs/processors.md`` for configuration.
"""

from otel_llm.processors._alarm import VALID_DIRECTIONS, AlarmPolicy, AlarmRule
from otel_llm.processors._forecast import (
    DEFAULT_LEVELS,
    VALID_MODELS,
    BandForecaster,
    check_levels,
    forecast,
    robust_band,
)
from otel_llm.processors._metrics_feed import DEFAULT_METRICS, MetricsFeed, ThresholdMetricExporter
from otel_llm.processors._thresholds import (
    DEFAULT_LIMITS,
    HEAVY_TAILED_HINTS,
    SeriesHandle,
    SeriesState,
    ThresholdConfig,
    ThresholdProcessor,
    is_heavy_tailed,
    series_key,
)

__all__ = [
    "DEFAULT_LEVELS", "DEFAULT_LIMITS", "DEFAULT_METRICS", "HEAVY_TAILED_HINTS", "VALID_DIRECTIONS", "VALID_MODELS",
    "AlarmPolicy", "AlarmRule", "BandForecaster", "MetricsFeed", "SeriesHandle", "SeriesState", "ThresholdConfig",
    "ThresholdMetricExporter", "ThresholdProcessor", "check_levels", "forecast", "is_heavy_tailed", "robust_band",
    "series_key",
]
