"""PyOD over requests: per-request outlier scores with attribution, paged on the rate of abnormal requests.

See :mod:`otel_llm.processors._anomaly` and ``docs/processors.md``.
"""

from otel_llm.processors._anomaly import HIGHER_IS_WORSE, LOAD_FEATURES, RequestAnomalyProcessor, RequestScore
from otel_llm.processors._features import (
    FEATURES,
    GPU_FEATURES,
    SPAN_FEATURES,
    gpu_features,
    is_request_span,
    request_features,
    request_series_attributes,
)
from otel_llm.processors._outlier import VALID_DETECTORS, OutlierDetector
from otel_llm.processors._pointpyod import PointAnomalyDetector

__all__ = [
    "FEATURES", "GPU_FEATURES", "HIGHER_IS_WORSE", "LOAD_FEATURES", "SPAN_FEATURES", "VALID_DETECTORS", "OutlierDetector",
    "PointAnomalyDetector", "RequestAnomalyProcessor", "RequestScore", "gpu_features", "is_request_span",
    "request_features", "request_series_attributes",
]
