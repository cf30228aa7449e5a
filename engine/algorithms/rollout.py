"""Rollouts and the token batches the policy-gradient updates read: what every training loop builds
on, and what context.py and common.py both import (this module imports neither).

  1) draw a step's problems (draw_problems, seeded per step, so a resumed run redraws them);
  2) sample and score n completions per problem (sample_rollouts), then set their rewards (with_rewards);
  3) lay them out as one right-padded TokenBatch (token_batch), cut it into minibatches of rows of
     similar length (minibatches, rows), and read log-probabilities off it (forward_logprobs, or
     sampled_logprobs: the sampler's own, without a pass).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from engine.algorithms import shared_prefix
from engine.algorithms.losses import entropy_from_logprobs
from engine.sampling import make_sampler
from engine.sampling.base import Completion
from engine.tasks.base import Problem, Score, score_safely

# -- rollouts ---------------------------------------------------------------------------------


@dataclass
class Rollout:
    problem: Problem
    sample_idx: int  # which of the n samples of its problem
    prompt_text: str
    prompt_ids: list[int]
    completion: Completion
    score: Score
    reward: float = 0.0  # set by with_rewards


def sample_rollouts(policy, tokenizer, task, problems: list[Problem], n: int, cfg, seed: int,
                    prompt_suffix: str = "", prompt=None, sampler=None, stop: tuple[str, ...] = (),
                    cancel=None, keep_hidden: bool = False) -> list[Rollout]:
    """n samples per problem (consecutive), each scored by the task, reward 0 (with_rewards sets
    it). `prompt(problem)` makes the prompt text (default: the task's own prompt); `sampler` one
    from make_sampler(policy, ...) when several calls share it; else one is made that raises
    Cancelled once `cancel` (the run's ctx.interrupt) is set, and keeps the last hidden states with
    `keep_hidden`. The policy is left in eval mode."""
    policy.eval()
    prompt = prompt or task.prompt
    prompts = [prompt(p) + prompt_suffix for p in problems]
    sampler = sampler or make_sampler(policy, tokenizer, cfg, cancel=cancel, keep_hidden=keep_hidden)
    out = sampler.sample(prompts, n=n, temperature=cfg.temperature, top_p=cfg.top_p,
                         max_new_tokens=cfg.max_new_tokens, seed=seed, stop=stop)
    rollouts = []
    for p, prompt, completions in zip(problems, prompts, out):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for j, c in enumerate(completions):
            rollouts.append(Rollout(p, j, prompt, ids, c, score_safely(task, p, c.text)))
    return rollouts


def with_rewards(rollouts: list[Rollout], reward) -> list[Rollout]:
    """The rollouts, as new ones, with the rewards `reward(rollouts)` gives them (a function of
    engine/algorithms/rewards.py)."""
    values = reward(rollouts)
    return [replace(r, reward=float(v)) for r, v in zip(rollouts, values, strict=True)]


def summary(rollouts: list[Rollout]) -> dict:
    """Task accuracy, independent of the reward being optimised, length statistics and the policy's
    entropy: nats per sampled token, pooled over every token of the rollouts (a token mean, not a
    mean of per-sample means), at the sampling temperature (Completion.entropies says exactly what).
    `entropy` is left out when the sampler cannot tell it (vLLM), never guessed. Under several
    processes ctx.log averages each one's token mean: exact when their shares hold as many tokens."""
    n = max(len(rollouts), 1)
    tokens = sum(len(r.completion.token_ids) for r in rollouts)
    out = {"train/accuracy": sum(r.score.correct for r in rollouts) / n,
           "reward": sum(r.reward for r in rollouts) / n,
           "train/completion_tokens": tokens / n,
           "train/truncated": sum(r.completion.finish_reason == "length" for r in rollouts) / n}
    if tokens and all(r.completion.entropies is not None for r in rollouts):
        out["entropy"] = sum(sum(r.completion.entropies) for r in rollouts) / tokens
    return out


# -- the problems a step samples ----------------------------------------------------------------


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, step): a resumed run redraws the same samples."""
    return (seed * 1_000_003 + step * 7919 + salt) % (2**31 - 1)


def draw_problems(task, cfg, step: int, n: int) -> list[Problem]:
    pool = train_pool(task, cfg)
    rng = random.Random(step_seed(cfg.seed, step, salt=1))
    return rng.sample(pool, min(n, len(pool)))


_POOLS: dict = {}


def train_pool(task, cfg) -> list[Problem]:
    """The run's training problems (what draw_problems draws from; its size is logged as data/train_pool)."""
    key = (getattr(task, "key", task.name), cfg.train_problems)  # a file task's key names its files and versions
    if key not in _POOLS:
        _POOLS[key] = task.problems("train", cfg.train_problems)
    return _POOLS[key]


# -- token batches for policy-gradient updates -------------------------------------------------


@dataclass
class TokenBatch:
    """Rollouts as one right-padded batch of B rows of prompt + completion, L columns wide. The
    per-token tensors computed from it (log-probabilities, entropies, values, advantages) are
    (B, L-1): column j holds the prediction of token j + 1 (the *targets*, input shifted by one),
    so `mask` lines up with logits[:, :-1]. A row with prompt length P and total length N has its
    completion's targets at columns P-1 .. N-2."""

    input_ids: torch.Tensor  # (B, L) long: prompt + completion ids, right-padded with the pad id
    attention_mask: torch.Tensor  # (B, L) long: 1 on each row's N real tokens, 0 on padding
    mask: torch.Tensor  # (B, L-1) float: 1 where the target is a completion token, else 0
    prompt_len: torch.Tensor  # (B,) long: each row's prompt length P
    group: torch.Tensor  # (B,) long: the row's prompt among the batch's distinct ones (a problem's n samples share one)

    def take(self, idx: torch.Tensor, width: int | None = None) -> TokenBatch:
        """The rows `idx`, their first `width` columns (all by default; with right padding, a
        width of their longest row leaves out only padding)."""
        w = self.input_ids.shape[1] if width is None else width
        return TokenBatch(self.input_ids[idx, :w], self.attention_mask[idx, :w], self.mask[idx, :w - 1],
                          self.prompt_len[idx], self.group[idx])


def token_batch(rollouts: list[Rollout], pad_id: int, device) -> TokenBatch:
    """The rollouts' TokenBatch on `device` (the n samples of a problem share a `group`:
    shared_prefix computes their prompt once)."""
    rows_ = [r.prompt_ids + r.completion.token_ids for r in rollouts]
    groups: dict[tuple, int] = {}
    group = [groups.setdefault(tuple(r.prompt_ids), len(groups)) for r in rollouts]
    width_ = max(map(len, rows_))
    input_ids = torch.full((len(rows_), width_), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows_), width_), dtype=torch.long)
    mask = torch.zeros((len(rows_), width_ - 1))
    for i, (r, row) in enumerate(zip(rollouts, rows_)):
        input_ids[i, :len(row)] = torch.tensor(row)
        attention[i, :len(row)] = 1
        mask[i, len(r.prompt_ids) - 1:len(row) - 1] = 1  # targets at positions P..N-1
    return TokenBatch(input_ids.to(device), attention.to(device), mask.to(device),
                      torch.tensor([len(r.prompt_ids) for r in rollouts], device=device),
                      torch.tensor(group, device=device))


def forward_logprobs(model, batch: TokenBatch, with_hidden: bool = False, with_entropy: bool = False):
    """(B, L-1) log-probabilities of each next token and, when asked, the (B, L-1) entropy of each
    next-token distribution and the (B, L-1, H) last hidden states at the same positions (else
    None): at the completion tokens (`mask`), which are all a caller may read. Each prompt once for
    all its rows where the model allows (shared_prefix), else the plain pass."""
    if int(batch.prompt_len.min()) >= 1 and shared_prefix.inner(model) is not None:
        return shared_prefix.forward_logprobs(model, batch, with_hidden, with_entropy)
    return plain_logprobs(model, batch, with_hidden, with_entropy)


def plain_logprobs(model, batch: TokenBatch, with_hidden: bool = False, with_entropy: bool = False):
    """forward_logprobs by the model's own forward over every row's prompt + completion (also at
    the prompt's positions)."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=with_hidden)
    logp = F.log_softmax(out.logits[:, :-1].float(), dim=-1)
    targets = batch.input_ids[:, 1:]
    logprobs = torch.gather(logp, 2, targets.unsqueeze(-1)).squeeze(-1)
    hidden = out.hidden_states[-1][:, :-1] if with_hidden else None
    return logprobs, entropy_from_logprobs(logp) if with_entropy else None, hidden


def sampled_logprobs(rollouts: list[Rollout], batch: TokenBatch) -> torch.Tensor:
    """The (B, L-1) log-probabilities the sampler recorded for each completion token
    (Completion.logprobs, under the model's raw distribution), in the batch's layout: what
    batch_logprobs would compute again, without a forward pass."""
    return _completion_layout(rollouts, batch, [torch.tensor(r.completion.logprobs) for r in rollouts])


def sampled_hidden(rollouts: list[Rollout], batch: TokenBatch) -> torch.Tensor:
    """The (B, L-1, H) last hidden states the sampler kept (Completion.hidden) in the batch's
    layout, zero outside the completions: batch_logprobs(..., with_hidden=True)'s, without a pass."""
    return _completion_layout(rollouts, batch, [r.completion.hidden for r in rollouts])


def _completion_layout(rollouts: list[Rollout], batch: TokenBatch, values: list[torch.Tensor]):
    """Per-token `values` of each rollout's completion (T_i, ...) placed at its target columns of
    the batch's (B, L-1, ...) layout, zero elsewhere, on the batch's device."""
    first = values[0]
    out = torch.zeros(*batch.mask.shape, *first.shape[1:], dtype=first.dtype, device=first.device)
    for i, (r, v) in enumerate(zip(rollouts, values)):
        start = len(r.prompt_ids) - 1
        out[i, start:start + len(v)] = v
    return out.to(batch.mask.device)


@torch.no_grad()
def batch_logprobs(model, batch: TokenBatch, size: int, with_hidden: bool = False):
    """forward_logprobs of the whole batch without gradients (old and reference log-probabilities),
    in chunks of `size` rows of similar length (a prompt's rows together), each trimmed to its
    longest row: the (B, L-1) log-probabilities and, with_hidden, the (B, L-1, H) last hidden
    states (None without), both 0 at padding (and where shared_prefix ran, at the prompts)."""
    order = torch.sort(length_key(batch.attention_mask.sum(1), batch.group), stable=True).indices
    n, targets = batch.mask.shape
    logprobs, hidden = torch.zeros(n, targets, device=batch.mask.device), None
    for i in range(0, n, size):
        idx = order[i:i + size]
        mb, t = rows(batch, idx)
        lp, _, h = forward_logprobs(model, mb, with_hidden)
        logprobs[idx, :t] = lp
        if with_hidden:
            if hidden is None:
                hidden = torch.zeros(n, targets, h.shape[-1], dtype=h.dtype, device=h.device)
            hidden[idx, :t] = h
    return logprobs, hidden


def minibatches(n: int, size: int, generator: torch.Generator, lengths: torch.Tensor | None = None,
                groups: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Index minibatches covering 0..n-1 once, in a random order. With `lengths` (each row's
    length), rows of similar length go together: a random permutation, sorted stably by length, is
    cut into minibatches whose order is then shuffled. Trimmed to its longest row (`width`), a
    minibatch then skips most of the padding, which on the tiny model was a third of an update's
    compute (transformers' group_by_length does the same for fine-tuning). With `groups` too (each
    row's prompt, TokenBatch.group), a prompt's rows stay together, sorted by their longest,
    so that shared_prefix computes each prompt once per minibatch."""
    order = torch.randperm(n, generator=generator)  # on the CPU, as the generator: indices index any device
    if lengths is None:
        return [order[i:i + size] for i in range(0, n, size)]
    lengths, groups = lengths.cpu(), None if groups is None else groups.cpu()
    order = order[torch.sort(length_key(lengths, groups, generator)[order], stable=True).indices]
    chunks = [order[i:i + size] for i in range(0, n, size)]
    return [chunks[j] for j in torch.randperm(len(chunks), generator=generator).tolist()]


def length_key(lengths: torch.Tensor, groups: torch.Tensor | None, generator: torch.Generator | None = None):
    """Per row, what sorting by length sorts on: its length; with `groups`, its group's longest row
    and then the group (in a random order with a generator), so that a group's rows are adjacent."""
    if groups is None:
        return lengths
    _, g = torch.unique(groups, return_inverse=True)
    count = int(g.max()) + 1 if len(g) else 0
    longest = torch.zeros(count, dtype=lengths.dtype, device=lengths.device).scatter_reduce(
        0, g, lengths, "amax", include_self=False)
    rank = (torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)).to(g.device)
    return longest[g] * count + rank[g]


def width(batch: TokenBatch, idx: torch.Tensor) -> int:
    """The length of the longest of the batch's rows `idx`: with right padding, their first `w`
    columns (and a per-target tensor's first `w - 1`) leave out only padding, so nothing changes
    but the cost."""
    return int(batch.attention_mask[idx].sum(1).max())


def rows(batch: TokenBatch, idx: torch.Tensor) -> tuple[TokenBatch, int]:
    """(the minibatch of rows `idx`, trimmed to its longest row; its number of target positions,
    to trim per-target tensors of the whole batch the same way: `old_logprobs[idx, :t]`)."""
    w = width(batch, idx)
    return batch.take(idx, w), w - 1
