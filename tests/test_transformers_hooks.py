"""TimingStreamer: one mark per generated token, prompt skipped, assisted-decoding puts, our failures contained."""

from __future__ import annotations

import torch

from otel_llm import _selftelemetry
from otel_llm.instrumentation._genai import TokenTimeline
from otel_llm.instrumentation.transformers._hooks import TimingStreamer


class Recorder:
    def __init__(self) -> None:
        self.puts: list = []
        self.ended = False

    def put(self, value) -> None:
        self.puts.append(value)

    def end(self) -> None:
        self.ended = True


def test_prompt_skipped_one_mark_per_step_and_multi_token_puts():
    tl = TokenTimeline()
    inner = Recorder()
    s = TimingStreamer(tl, inner)
    s.put(torch.tensor([[5, 6, 7], [8, 9, 10]]))  # the prompt, 2-D
    for tok in (1, 2, 3):
        s.put(torch.tensor([tok, tok]))  # one token per sequence per step
    s.put(torch.tensor([[4, 5, 6]]))  # assisted decoding: three tokens accepted at once
    s.end()
    assert len(tl.times) == 6
    assert tl.times[3] == tl.times[4] == tl.times[5] and tl.times == sorted(tl.times)
    assert len(inner.puts) == 5 and inner.ended  # the user's streamer sees every call unchanged
    assert not s.failed


def test_a_later_2d_single_token_put_is_one_mark():
    tl = TokenTimeline()
    s = TimingStreamer(tl)
    s.put(torch.tensor([[1, 2]]))
    s.put(torch.tensor([[3], [4]]))  # (batch, 1): one token per sequence
    assert len(tl.times) == 1


def test_our_failure_is_reported_once_and_the_user_streamer_still_gets_everything():
    _selftelemetry._reset_for_tests()
    tl = TokenTimeline()
    inner = Recorder()
    s = TimingStreamer(tl, inner)
    s.put(object())  # no .ndim: our code fails, not the host's
    s.put(object())
    assert s.failed and len(inner.puts) == 2
    assert _selftelemetry.error_counts() == {("transformers.hook", "AttributeError"): 1}
