"""Exact token counts and finish reasons from ``generate()``'s tensors.

Input tokens per prompt: non-padding positions -- ``attention_mask.sum(-1)``
when a mask is given, else ``input_ids != pad`` exactly as ``generate()``
infers its own mask (only when pad is present and differs from EOS), else the
full row length.

Output tokens per returned sequence: generated positions up to and including
the first EOS; positions after it are padding and are not counted. A row
with no EOS counts every position except trailing padding. Finish reason:
``stop`` when EOS (or a stop string / stopping criterion) ended the row,
``length`` when it produced ``max_new_tokens`` tokens.

Known ambiguity: when ``pad_token_id == eos_token_id`` and a row was stopped
by a stop string, the first padding position is indistinguishable from EOS
and is counted (one token too many for that row).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SMALL = 8192  # elements below which Python beats a tensor op right after generate()
FINISH_STOP = "stop"
FINISH_LENGTH = "length"


def as_id_set(value: Any) -> frozenset[int]:
    if value is None:
        return frozenset()
    if isinstance(value, int):
        return frozenset((value,))
    if hasattr(value, "tolist"):
        value = value.tolist()
        if isinstance(value, int):
            return frozenset((value,))
    if isinstance(value, Iterable):
        return frozenset(int(v) for v in value)
    return frozenset()


def input_tokens_per_prompt(input_ids: Any, attention_mask: Any, pad_id: int | None, eos_ids: frozenset[int]) -> list[int]:
    if attention_mask is not None:
        shape = attention_mask.shape
        if len(shape) == 2 and shape[0] * shape[1] <= SMALL:  # one tolist + Python sums beats a tensor reduction
            return [len(row) - row.count(0) for row in attention_mask.tolist()]
        if len(shape) == 1 and shape[0] <= SMALL:
            row = attention_mask.tolist()
            return [len(row) - row.count(0)]
        counts = attention_mask.sum(-1).tolist()
        return [int(c) for c in counts] if isinstance(counts, list) else [int(counts)]
    if input_ids is None:
        return []
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    batch, length = input_ids.shape[0], input_ids.shape[-1]
    if pad_id is not None and pad_id not in eos_ids:
        counts = (input_ids != pad_id).sum(-1).tolist()
        return [int(c) for c in counts]
    return [int(length)] * int(batch)


def output_tokens_per_sequence(
    generated: Any, eos_ids: frozenset[int], pad_id: int | None, max_new_tokens: int | None
) -> tuple[list[int], list[str]]:
    """``generated``: the new positions only, a (rows, steps) tensor or the same as nested lists."""
    rows = generated if isinstance(generated, list) else generated.tolist()
    counts: list[int] = []
    reasons: list[str] = []
    strip_pad = pad_id is not None and pad_id not in eos_ids
    for row in rows:
        n = len(row)
        end = n
        hit_eos = False
        for e in eos_ids:
            try:
                i = row.index(e)
            except ValueError:
                continue
            if i < end:
                end = i
                hit_eos = True
        if hit_eos:
            count = end + 1
        else:
            count = n
            if strip_pad:
                while count and row[count - 1] == pad_id:
                    count -= 1
        counts.append(count)
        if hit_eos or max_new_tokens is None or count < max_new_tokens:
            reasons.append(FINISH_STOP)
        else:
            reasons.append(FINISH_LENGTH)
    return counts, reasons
