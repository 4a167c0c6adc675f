"""Embedded LLM request traces (package data) for replay by ``otel-llm demo``.

``DEFAULT_WORKLOAD`` is a 20-minute slice of the Azure LLM inference trace 2023
(conversation), CC BY 4.0, Microsoft Azure; see ``README.md`` beside this file
for provenance and the attribution that any derived output must carry.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_WORKLOAD = "azure_conv_2023_slice.csv"
ATTRIBUTION = (
    '"Azure LLM inference trace 2023 (conversation)" by Microsoft Azure, '
    "https://github.com/Azure/AzurePublicDataset, CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/); modified: 20-minute excerpt, "
    "time-compressed, token counts scaled."
)

__all__ = ["ATTRIBUTION", "DEFAULT_WORKLOAD", "default_workload_path"]


def default_workload_path() -> Path:
    """Filesystem path of the embedded default workload CSV."""
    return Path(str(resources.files(__name__).joinpath(DEFAULT_WORKLOAD)))
