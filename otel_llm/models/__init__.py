"""A tiny causal LM for demos, tests and benchmarks, built offline.

``build_tiny_model()`` returns a seeded, randomly initialised Llama-style
model (about 0.2 M parameters) and a byte-level BPE tokenizer trained on a
small corpus shipped with the package. Nothing is downloaded. Its outputs are
nonsense text, but every moving part of a real generation is real: tensors,
KV cache, per-step decode, EOS, batching.

``load_model(path)`` loads a local Hugging Face model directory instead
(``local_files_only=True``: still no downloads).
"""

from otel_llm.models._tiny import (
    TINY_MODEL_NAME,
    build_tiny_model,
    build_tiny_tokenizer,
    load_model,
)

__all__ = ["TINY_MODEL_NAME", "build_tiny_model", "build_tiny_tokenizer", "load_model"]
