"""Per-step hooks that feed a :class:`~otel_llm.instrumentation._genai.TokenTimeline`.

Preferred hook: a streamer. ``generate()`` hands every new token to
``streamer.put(tokens.cpu())``; the ``.cpu()`` copy waits for the device, so a
timestamp taken in ``put`` is the moment the token really exists on the host
(on CUDA, hooks placed earlier in the step -- logits processors, stopping
criteria -- run before the GPU has finished and would under-report TTFT).
When the user passes a streamer we wrap it (:class:`TimingStreamer` forwards
every call unchanged); otherwise we pass our own.

Fallback for decoding modes that refuse streamers (beam search):
:class:`TimingLogitsProcessor`, appended to a copy of the user's list; it
returns the scores untouched.

Obligations: never raise into ``generate()`` (our failures are reported once
and counted, the step continues); never swallow the user's streamer errors.
"""

from __future__ import annotations

import inspect
from time import perf_counter_ns
from typing import Any

from otel_llm._selftelemetry import report_error
from otel_llm.instrumentation._genai import TokenTimeline

_COMPONENT = "transformers.hook"


def _mark(timeline: TokenTimeline, n: int) -> None:
    now = perf_counter_ns()
    if n == 1:
        timeline.append(now)
    else:  # several tokens accepted in one step (assisted decoding): they arrived together
        timeline.times.extend([now] * n)


def _tokens_in(value: Any) -> int:
    """Tokens per sequence in one ``put``: 1 for shape (batch,), n for (1, n) (assisted decoding)."""
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) == 2:
        return int(shape[-1])
    return 1


class TimingStreamer:
    """Timestamps each ``put`` (skipping the prompt) and forwards everything to ``inner`` when given.

    ``generate()`` puts the prompt first (2-D), then one 1-D ``(batch,)`` tensor per step, or a
    2-D ``(1, n)`` tensor of n accepted tokens (assisted decoding). The hot path stamps first and
    looks at the shape after: the common 1-D put costs one append and one ``ndim`` read.
    """

    __slots__ = ("_append", "_failed", "_inner", "_prompt_pending", "timeline")

    def __init__(self, timeline: TokenTimeline, inner: Any = None) -> None:
        self.timeline = timeline
        self._append = timeline.append
        self._inner = inner
        self._prompt_pending = True
        self._failed = False

    def put(self, value: Any) -> None:
        try:
            self._append(perf_counter_ns())
            if value.ndim != 1:
                self._not_one_token(value)
        except Exception as exc:  # ours: report, stop timing this call (the summary is skipped), keep generating
            if not self._failed:
                self._failed = True
                report_error(_COMPONENT, exc)
        if self._inner is not None:
            self._inner.put(value)  # the user's streamer: its errors are the host's

    def _not_one_token(self, value: Any) -> None:
        times = self.timeline.times
        if self._prompt_pending:  # generate() first puts the prompt: not a token
            self._prompt_pending = False
            times.pop()
            return
        n = _tokens_in(value)
        if n != 1:  # several tokens accepted in one step: they arrived together
            times.extend([times[-1]] * (n - 1))

    def end(self) -> None:
        if self._inner is not None:
            self._inner.end()

    @property
    def failed(self) -> bool:
        return self._failed

    def __getattr__(self, name: str) -> Any:  # put_draft, tokenizer, ... of the user's streamer
        inner = object.__getattribute__(self, "_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)


class TimingLogitsProcessor:
    """A logits processor that returns scores unchanged and timestamps each decode step."""

    def __init__(self, timeline: TokenTimeline) -> None:
        self.timeline = timeline
        self.failed = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not self.failed:
            try:
                _mark(self.timeline, 1)
            except Exception as exc:
                self.failed = True
                report_error(_COMPONENT, exc)
        return scores


# LogitsProcessorList inspects each processor's signature on every step; give it a
# precomputed one so our processor costs a lookup, not a signature parse.
TimingLogitsProcessor.__call__.__signature__ = inspect.signature(TimingLogitsProcessor.__call__)  # type: ignore[attr-defined]
