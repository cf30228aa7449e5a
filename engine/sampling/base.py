"""The one sampling interface every backend (torch, vLLM) implements."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Cancelled(BaseException):
    """A long phase (sampling, fine-tuning, evaluation) stopped part-way because its run was
    cancelled or sent SIGTERM. The job records the run as cancelled, keeping what it saved.
    A BaseException, like KeyboardInterrupt: an `except Exception` on the way must not turn a
    cancel into a failure."""


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise Cancelled once `cancel` is set. Cheap (reads a flag): hot loops call it per step."""
    if cancel is not None and cancel.is_set():
        raise Cancelled


@dataclass
class Completion:
    token_ids: list[int]  # generated tokens, the stop token included when finish_reason == "stop"
    text: str  # decoded without special tokens
    logprobs: list[float]  # per generated token: log p(token) under the model's raw distribution
    finish_reason: str  # "stop" (a stop token) or "length" (max_new_tokens reached)
    # per generated token: entropy in nats of the distribution it was drawn from, i.e. softmax(logits
    # / temperature) before top-p truncation (greedy, temperature 0: of the raw distribution,
    # temperature 1). None where the backend cannot tell (vLLM returns no full distribution).
    entropies: list[float] | None = None
    # (tokens, H): the model's last hidden state (after its final norm) at the position that
    # predicted each token, when the sampler was asked to keep it (PPO's value head reads it)
    hidden: torch.Tensor | None = None

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))


class Sampler(Protocol):
    cancel: threading.Event | None  # once set, sample() raises Cancelled (torch: within a decode step)

    def sample(self, prompts: list[str], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_new_tokens: int = 128, seed: int | None = 0, stop: Sequence[str] = ()) -> list[list[Completion]]:
        """n completions for each prompt: result[i][j] is the j-th sample of prompts[i].

        temperature 0 is greedy decoding. The same seed and arguments give the same completions.
        `stop`: strings that end a completion (a few-shot prompt's next `Question:`): its text ends
        before the first one, its tokens at the one that completes it, finish_reason "stop".
        A sampler may also take `greedy=True`: each prompt's greedy completion first, then the
        same n samples (see sample_with_greedy).
        """


def sample_with_greedy(sampler, prompts: list[str], n: int, temperature: float = 1.0, top_p: float = 1.0,
                       max_new_tokens: int = 128, seed: int | None = 0,
                       stop: Sequence[str] = ()) -> list[tuple[Completion, list[Completion]]]:
    """Per prompt, (its greedy completion, its n samples): in one pass where the sampler takes
    `greedy=True` (the torch and vLLM samplers; the samples are those of the same call without
    it), else a greedy call and a sampling call."""
    if "greedy" in inspect.signature(sampler.sample).parameters:
        out = sampler.sample(prompts, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             seed=seed, stop=stop, greedy=True)
        return [(c[0], c[1:]) for c in out]
    greedy = sampler.sample(prompts, n=1, temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)
    sampled = sampler.sample(prompts, n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                             seed=seed, stop=stop)
    return [(g[0], s) for g, s in zip(greedy, sampled)]


def check_sampling_args(n: int, temperature: float, top_p: float, max_new_tokens: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def stop_token_ids(model, tokenizer) -> list[int]:
    """Tokens that end a completion: the model's generation-config EOS ids and the tokenizer's."""
    config = getattr(model, "generation_config", None)
    stop = config.eos_token_id if config is not None else None
    stop = stop if isinstance(stop, list) else [stop]
    return sorted({i for i in [*stop, tokenizer.eos_token_id] if i is not None})


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` up to the first of the `stop` strings, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def stop_at_string(c: Completion, stop: Sequence[str], decode) -> Completion:
    """`c` ended at the first stop string in its text: the text before it, the tokens up to the
    one that completes it (the fewest whose decoding holds it), finish_reason "stop"."""
    text, found = cut_at_stop(c.text, stop)
    if not found:
        return c
    lo, hi = 1, len(c.token_ids)  # binary search: a longer prefix decodes to a longer text
    while lo < hi:
        mid = (lo + hi) // 2
        if cut_at_stop(decode(c.token_ids[:mid]), stop)[1]:
            hi = mid
        else:
            lo = mid + 1
    return Completion(c.token_ids[:lo], text, c.logprobs[:lo], "stop",
                      None if c.entropies is None else c.entropies[:lo], None if c.hidden is None else c.hidden[:lo])
