from __future__ import annotations

import functools
from importlib import resources
from typing import Any

TINY_MODEL_NAME = "otel-llm-tiny"

_VOCAB_SIZE = 512
_SPECIALS = ["<pad>", "<s>", "</s>"]
_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Train the byte-level BPE once per process (deterministic, ~50 ms)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = resources.files("otel_llm.models").joinpath("_corpus.txt").read_text(encoding="utf-8")
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus.splitlines(), trainer=trainer)
    return tok.to_str()


def build_tiny_tokenizer():
    """A ``PreTrainedTokenizerFast`` usable with ``generate()`` and chat templates."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=_CONFIG["max_position_embeddings"],
    )
    tok.padding_side = "left"
    tok.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant: {% endif %}"
    )
    tok.name_or_path = TINY_MODEL_NAME
    return tok


def build_tiny_model(*, seed: int = 0, dtype: str = "float32"):
    """Return ``(model, tokenizer)``: a seeded tiny Llama and its tokenizer, in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **_CONFIG,
    )
    config.name_or_path = TINY_MODEL_NAME
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model = model.to(getattr(torch, dtype)).eval()
    model.name_or_path = TINY_MODEL_NAME
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_model(path: str | None = None, *, seed: int = 0):
    """Load ``(model, tokenizer)`` from a local HF directory, or build the tiny one when ``path`` is None."""
    if path is None:
        return build_tiny_model(seed=seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer
