"""What every training loop shares besides its run context (context.py): sampling + scoring of
rollouts, rewards, token-level batches, and PolicyRun, the frame around PPO's and GRPO's updates.

The algorithms themselves (expert_iteration, rcrl, continued_sft, ppo, grpo) are one loop each on
top of this: Rounds is the frame of the first three, PolicyRun of the last two.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.algorithms import shared_prefix
from engine.algorithms.losses import entropy_from_logprobs
from engine.algorithms.context import RunContext  # the loops import it from here too
from engine.algorithms.sft import finetune
from engine.model.checkpoint import load_checkpoint
from engine.model.lora import maybe_lora, trainable
from engine.sampling import make_sampler
from engine.sampling.base import Cancelled, Completion, check_cancel
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
    reward: float = 0.0


def sample_rollouts(model, tokenizer, task, problems: list[Problem], n: int, cfg, seed: int,
                    prompt_suffix: str = "", prompt=None, sampler=None, stop: tuple[str, ...] = (),
                    cancel=None, keep_hidden: bool = False) -> list[Rollout]:
    """n samples per problem (consecutive), each scored by the task. `prompt(problem)` makes the
    prompt text (default: the task's own prompt); `sampler` one from make_sampler(model, ...)
    when several calls share it; else one is made that raises Cancelled once `cancel` (the run's
    ctx.interrupt) is set, and keeps the last hidden states with `keep_hidden`. The model is left
    in eval mode."""
    model.eval()
    prompt = prompt or task.prompt
    prompts = [prompt(p) + prompt_suffix for p in problems]
    sampler = sampler or make_sampler(model, tokenizer, cfg, cancel=cancel, keep_hidden=keep_hidden)
    out = sampler.sample(prompts, n=n, temperature=cfg.temperature, top_p=cfg.top_p,
                         max_new_tokens=cfg.max_new_tokens, seed=seed, stop=stop)
    rollouts = []
    for p, prompt, completions in zip(problems, prompts, out):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for j, c in enumerate(completions):
            rollouts.append(Rollout(p, j, prompt, ids, c, score_safely(task, p, c.text)))
    return rollouts


def load_model(cfg, path=None):
    """(model, tokenizer) of the base (or `path`) as the run config asks: device, dtype, remote code."""
    return load_checkpoint(path or cfg.base, device=cfg.device, dtype=cfg.dtype,
                           trust_remote_code=cfg.trust_remote_code)


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, step): a resumed run redraws the same samples."""
    return (seed * 1_000_003 + step * 7919 + salt) % (2**31 - 1)


def draw_problems(task, cfg, step: int, n: int) -> list[Problem]:
    pool = _pool(task, cfg.train_problems)
    rng = random.Random(step_seed(cfg.seed, step, salt=1))
    return rng.sample(pool, min(n, len(pool)))


_POOLS: dict = {}


def train_pool(task, cfg) -> list[Problem]:
    """The run's training problems (what draw_problems draws from; its size is logged as data/train_pool)."""
    return _pool(task, cfg.train_problems)


def _pool(task, n: int) -> list[Problem]:
    key = (getattr(task, "key", task.name), n)  # a file task's key names its files and their versions
    if key not in _POOLS:
        _POOLS[key] = task.problems("train", n)
    return _POOLS[key]


# -- token batches for policy-gradient updates -------------------------------------------------


def token_batch(rollouts: list[Rollout], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded prompt + completion ids. `mask` marks the completion tokens among the
    *targets* (input shifted by one), so logits[:, :-1] line up with it; `prompt_len` holds each
    row's prompt length, `group` the index of its prompt among the batch's distinct ones (the n
    samples of a problem share one: shared_prefix computes it once)."""
    rows = [r.prompt_ids + r.completion.token_ids for r in rollouts]
    groups: dict[tuple, int] = {}
    group = [groups.setdefault(tuple(r.prompt_ids), len(groups)) for r in rollouts]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1))
    for i, (r, row) in enumerate(zip(rollouts, rows)):
        input_ids[i, :len(row)] = torch.tensor(row)
        attention[i, :len(row)] = 1
        mask[i, len(r.prompt_ids) - 1:len(row) - 1] = 1  # targets at positions P..L-1
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "mask": mask.to(device),
            "prompt_len": torch.tensor([len(r.prompt_ids) for r in rollouts], device=device),
            "group": torch.tensor(group, device=device)}


def forward_logprobs(model, batch, with_hidden: bool = False, with_entropy: bool = False):
    """(B, L-1) log-probabilities of each next token and, when asked, the (B, L-1) entropy of each
    next-token distribution and the (B, L-1, H) last hidden states at the same positions (else
    None): at the completion tokens (`mask`), which are all a caller may read. Each prompt once for
    all its rows where the model allows (shared_prefix), else the plain pass."""
    if "group" in batch and int(batch["prompt_len"].min()) >= 1 and shared_prefix.inner(model) is not None:
        return shared_prefix.forward_logprobs(model, batch, with_hidden, with_entropy)
    return plain_logprobs(model, batch, with_hidden, with_entropy)


def plain_logprobs(model, batch, with_hidden: bool = False, with_entropy: bool = False):
    """forward_logprobs by the model's own forward over every row's prompt + completion (also at
    the prompt's positions)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=with_hidden)
    logp = F.log_softmax(out.logits[:, :-1].float(), dim=-1)
    targets = batch["input_ids"][:, 1:]
    logprobs = torch.gather(logp, 2, targets.unsqueeze(-1)).squeeze(-1)
    hidden = out.hidden_states[-1][:, :-1] if with_hidden else None
    return logprobs, entropy_from_logprobs(logp) if with_entropy else None, hidden


def sampled_logprobs(rollouts: list[Rollout], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The (B, L-1) log-probabilities the sampler recorded for each completion token
    (Completion.logprobs, under the model's raw distribution), in token_batch's layout: what
    batch_logprobs would compute again, without a forward pass."""
    return _completion_layout(rollouts, batch, [torch.tensor(r.completion.logprobs) for r in rollouts])


def sampled_hidden(rollouts: list[Rollout], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The (B, L-1, H) last hidden states the sampler kept (Completion.hidden) in token_batch's
    layout, zero outside the completions: batch_logprobs(..., with_hidden=True)'s, without a pass."""
    return _completion_layout(rollouts, batch, [r.completion.hidden for r in rollouts])


def _completion_layout(rollouts: list[Rollout], batch: dict[str, torch.Tensor], values: list[torch.Tensor]):
    """Per-token `values` of each rollout's completion (T_i, ...) placed at its target columns of
    token_batch's (B, L-1, ...) layout, zero elsewhere, on the batch's device."""
    first = values[0]
    out = torch.zeros(*batch["mask"].shape, *first.shape[1:], dtype=first.dtype, device=first.device)
    for i, (r, v) in enumerate(zip(rollouts, values)):
        start = len(r.prompt_ids) - 1
        out[i, start:start + len(v)] = v
    return out.to(batch["mask"].device)


@torch.no_grad()
def batch_logprobs(model, batch: dict[str, torch.Tensor], size: int, with_hidden: bool = False):
    """forward_logprobs of the whole batch without gradients (old and reference log-probabilities),
    in chunks of `size` rows of similar length (a prompt's rows together), each trimmed to its
    longest row: the (B, L-1) log-probabilities and, with_hidden, the (B, L-1, H) last hidden
    states (None without), both 0 at padding (and where shared_prefix ran, at the prompts)."""
    order = torch.sort(length_key(batch["attention_mask"].sum(1), batch.get("group")), stable=True).indices
    n, targets = batch["mask"].shape
    logprobs, hidden = torch.zeros(n, targets, device=batch["mask"].device), None
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
    row's prompt, token_batch's `group`), a prompt's rows stay together, sorted by their longest,
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


def width(batch: dict[str, torch.Tensor], idx: torch.Tensor) -> int:
    """The length of the longest of the batch's rows `idx`: with right padding, `batch[k][idx, :w]`
    (and a per-target tensor's `[idx, :w - 1]`) leaves out only padding, so nothing changes but the cost."""
    return int(batch["attention_mask"][idx].sum(1).max())


def rows(batch: dict[str, torch.Tensor], idx: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
    """(the minibatch of rows `idx`, trimmed to its longest row; its number of target positions,
    to trim per-target tensors of the whole batch the same way: `old_logprobs[idx, :t]`)."""
    w = width(batch, idx)
    mb = {"input_ids": batch["input_ids"][idx, :w], "attention_mask": batch["attention_mask"][idx, :w],
          "mask": batch["mask"][idx, :w - 1]}
    mb.update({k: batch[k][idx] for k in ("prompt_len", "group") if k in batch})
    return mb, w - 1


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


class Stats:
    """Running means of per-minibatch statistics."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


# -- rewards ------------------------------------------------------------------------------------


def assign_rewards(rollouts: list[Rollout], reward: str, orm=None) -> None:
    """sparse: 1 for a correct final answer; dense: share of the reference's intermediate results
    reached (Havrilla et al.'s heuristic); orm: the reward model's probability of correctness."""
    if reward == "sparse":
        values = [float(r.score.correct) for r in rollouts]
    elif reward == "dense":
        values = [float(r.score.dense) for r in rollouts]
    elif reward == "orm":
        prompts = [r.prompt_text for r in rollouts]
        values = [float(v) for v in orm.score(prompts, [r.completion.text for r in rollouts])]
    else:
        raise ValueError(f"unknown reward {reward!r}")
    for r, v in zip(rollouts, values):
        r.reward = v


class Rounds:
    """What the round-based loops (expert iteration, RCRL, continued SFT) share around their own
    choice of training data: start or resume (the policy, what a restart resets to, the dataset
    D_i carried in checkpoints), the base evaluation, one round's fine-tuning on D_i with progress
    and cancel, and the round's checkpoint. `dataset` maps a dedup key to (prompt, completion)
    in insertion order."""

    def __init__(self, ctx: RunContext, cfg):
        self.ctx, self.cfg = ctx, cfg
        base, self.tokenizer = load_model(cfg)
        self.initial = maybe_lora(base, cfg)  # with lora_r > 0, fine-tuning trains adapters only
        ctx.use_tokenizer(self.tokenizer)
        # what a restart resets: the trainable weights (every weight, or the LoRA adapters only)
        trained = {name for name, p in self.initial.named_parameters() if p.requires_grad}
        self.initial_state = {k: v.clone() for k, v in self.initial.state_dict().items() if k in trained}
        self.policy = self.initial
        self.dataset: dict = {}
        self.first = 1  # the first round still to run
        if (resume := ctx.resume_point()) is not None:
            step, path, state = resume
            ctx.restore(state)
            self.dataset = {k: (p, c) for k, p, c in state["dataset"]}
            self.policy = maybe_lora(load_model(cfg, path)[0], cfg)  # merged weights, fresh adapters
            self.first = step + 1
            ctx.meta.update(state.get("meta", {}))
        else:
            ctx.progress(0, cfg.rounds, 0.0, "evaluating the base checkpoint")
            ctx.evaluate_base(self.policy, self.tokenizer)

    def fit(self, r: int, start: float, losses: list[float] | None = None) -> tuple[int, float | None]:
        """Round r's fine-tuning on D_i (from the initial weights with restart=True), filling the
        round's progress from `start` (its share done before) to 0.9. Returns the optimizer steps
        and finetune's final smoothed loss; (steps, None) with an empty dataset."""
        ctx, cfg, dataset = self.ctx, self.cfg, self.dataset
        if cfg.restart:
            self.policy = self.initial
            self.policy.load_state_dict(self.initial_state, strict=False)
        steps = min(cfg.sft_max_steps, max(1, math.ceil(cfg.sft_epochs * len(dataset) / cfg.batch_size)))
        done = (r - 1) / cfg.rounds

        def on_step(s: int) -> bool:
            if s % 10 == 0:
                ctx.progress(r - 1, cfg.rounds, done + (start + (0.9 - start) * s / steps) / cfg.rounds,
                             f"round {r}/{cfg.rounds}: fine-tuning {s}/{steps} steps on {len(dataset)} solutions")
                return ctx.stop_requested()
            # between the collective checks, one process reads its stop signal (a flag) every step
            return ctx.interrupt is not None and ctx.interrupt.is_set()

        if not dataset:
            return steps, None
        with ctx.phases.time("update"):
            return steps, finetune(self.policy, self.tokenizer, list(dataset.values()), steps, cfg.batch_size, cfg.lr,
                                   seed=step_seed(cfg.seed, r, salt=2), on_step=on_step, losses=losses)

    def save(self, r: int) -> None:
        """Round r's checkpoint (with D_i and the run's meta, for resume) and its evaluation."""
        ctx, rounds = self.ctx, self.cfg.rounds
        ctx.progress(r - 1, rounds, (r - 1 + 0.9) / rounds, f"round {r}/{rounds}: evaluating")
        ctx.save(r, self.policy, self.tokenizer, {"dataset": [(k, p, c) for k, (p, c) in self.dataset.items()],
                                                  "meta": dict(ctx.meta)})
        ctx.progress(r, rounds, r / rounds, f"round {r}/{rounds} done")


class PolicyRun:
    """What PPO and GRPO share around their update: start or resume (policy, optimizer, extra
    heads and controllers), the frozen reference, the reward model, rollouts with rewards, the
    cancel check and the checkpoint schedule. The update itself stays in each algorithm's loop.

    `policy` and `heads` are the modules themselves (sampling, old log-probabilities, saving);
    `model` and `trained_heads` are the same modules as accelerate prepared them for the gradient
    passes (DDP-wrapped under a multi-process launch). Each process trains on its share of a step:
    `minibatch_size` is the configured one divided by the number of processes."""

    def __init__(self, ctx: RunContext, cfg, heads: dict | None = None, stateful: dict | None = None,
                 hidden: bool = False):
        self.ctx, self.cfg = ctx, cfg
        self.heads = heads or {}  # extra trainable modules, e.g. PPO's value head
        self.stateful = stateful or {}  # objects with state_dict()/load_state_dict(), e.g. a KL controller
        base, self.tokenizer = load_model(cfg)
        self.policy = maybe_lora(base, cfg)
        ctx.use_tokenizer(self.tokenizer)
        self.reference = None
        if cfg.kl_coef > 0 or getattr(cfg, "kl_target", 0) > 0:
            self.reference, _ = load_model(cfg)
            self.reference.requires_grad_(False)
        for head in self.heads.values():
            head.to(cfg.device)
        params = trainable(self.policy) + [p for h in self.heads.values() for p in h.parameters()]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
        self.orm = None
        self.first_step, self.last_saved = 1, 0
        if (resume := ctx.resume_point()) is not None:
            step, path, state = resume
            ctx.restore(state)
            self.policy = maybe_lora(load_model(cfg, path)[0], cfg)  # merged weights, fresh adapters
            params = trainable(self.policy) + [p for h in self.heads.values() for p in h.parameters()]
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
            self.opt.load_state_dict(state["optimizer"])
            for name, head in self.heads.items():
                head.load_state_dict(state["heads"][name])
            for name, obj in self.stateful.items():
                obj.load_state_dict(state["stateful"][name])
            self.first_step, self.last_saved = step + 1, step
        else:
            ctx.progress(0, cfg.steps, 0.0, "evaluating the base checkpoint")
            ctx.evaluate_base(self.policy, self.tokenizer)
        if cfg.reward == "orm":
            self.orm = self._reward_model()
        self.minibatch_size = cfg.minibatch_size // ctx.world
        # the torch sampler's log-probabilities are the update's up to float rounding in float32
        # (tests/test_shared_prefix.py); vLLM's come from its own copy, kernels and dtype
        self.sampler_logprobs = cfg.sampler == "torch" and all(p.dtype == torch.float32
                                                               for p in self.policy.parameters())
        # old_logprobs(with_hidden=True) reads them; several processes gather their rollouts: not with those
        self.keep_hidden = hidden and self.sampler_logprobs and ctx.world == 1
        self.model, *heads, self.opt = ctx.acc.prepare(self.policy, *self.heads.values(), self.opt)
        self.trained_heads = dict(zip(self.heads, heads))

    def _reward_model(self):
        from engine.algorithms.orm import OutcomeRewardModel

        cfg = self.cfg
        path = cfg.orm or self.ctx.run_dir / "orm"
        if not cfg.orm and self.ctx.is_main and not (path / "orm_head.safetensors").is_file():
            with self.ctx.phases.time("orm"):
                train_orm_from_samples(self.ctx, cfg, self.policy, self.tokenizer, path)
        self.ctx.acc.wait_for_everyone()
        return OutcomeRewardModel.load(path, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)

    def iterations(self):
        """(step, rollouts) for each remaining step: the cancel check, then sampled and scored
        rollouts. `step_started` times the whole step; `sample_s` the sampling part."""
        for step in range(self.first_step, self.cfg.steps + 1):
            if self.stopping(step - 1):
                return
            self.step_started = time.time()
            try:
                rollouts = self.rollouts(step)
            except Cancelled:  # mid-sampling the policy is still step - 1's: keep it, as stopping() does
                if step - 1 > self.last_saved:
                    self._save(step - 1, evaluate_now=False)
                raise
            self.sample_s = time.time() - self.step_started
            yield step, rollouts

    def rollouts(self, step: int) -> list[Rollout]:
        """Sample n solutions for this process's share of the step's problems, score them, assign
        rewards, store every process's. A problem's n samples (a GRPO group) stay on one process."""
        ctx, cfg = self.ctx, self.cfg
        problems = ctx.shard(draw_problems(ctx.task, cfg, step, cfg.prompts_per_step))
        with ctx.phases.time("sample"):
            rollouts = sample_rollouts(self.policy, self.tokenizer, ctx.task, problems, cfg.n, cfg,
                                       seed=step_seed(cfg.seed, step) + ctx.rank, prompt=ctx.prompt, stop=ctx.stop,
                                       cancel=ctx.interrupt, keep_hidden=self.keep_hidden)
        ctx.phases.count("sample_tokens", sum(len(r.completion.token_ids) for r in rollouts))
        with ctx.phases.time("score"):
            assign_rewards(rollouts, cfg.reward, self.orm)
        everyone = ctx.gather(rollouts)
        ctx.samples_seen += len(everyone)
        ctx.log_rollouts(step, everyone)
        return rollouts

    def old_logprobs(self, rollouts: list[Rollout], batch: dict[str, torch.Tensor], with_hidden: bool = False):
        """((B, L-1) log-probabilities of the rollouts' tokens under the policy that sampled them,
        with_hidden: the (B, L-1, H) last hidden states, else None), as batch_logprobs. Those the
        torch sampler recorded when the model is float32 (the same weights: a forward pass would
        repeat them to float rounding; the hidden states when the run asked the sampler to keep
        them), else a forward pass without gradients (vLLM samples from its own copy of the
        weights; in bfloat16 the sampler's cached pass and the update's differ by more than rounding)."""
        c = [r.completion for r in rollouts]
        if (self.sampler_logprobs and all(len(x.logprobs) == len(x.token_ids) for x in c)
                and (not with_hidden or all(x.hidden is not None and len(x.hidden) == len(x.token_ids) for x in c))):
            return sampled_logprobs(rollouts, batch), sampled_hidden(rollouts, batch) if with_hidden else None
        return batch_logprobs(self.policy, batch, self.minibatch_size, with_hidden=with_hidden)

    def update_batches(self, step: int, batch: dict[str, torch.Tensor], carries: torch.Tensor | None = None):
        """The minibatches of a step's update, over cfg.epochs passes: (idx, the rows `idx` trimmed
        to their longest, its number of target positions, share). A prompt's rows together and
        rows of similar lengths (minibatches), shuffled per step so that a resumed run replays
        them; the cancel check before each; the whole loop timed as the update, with the tokens
        it computes counted.

        `carries` (B,) bool: the rows whose loss has a gradient. The others (a GRPO group whose
        rewards are all equal has advantage 0, and without a KL term no gradient) are left out of
        each minibatch's passes, and `share` is the minibatch's tokens that are computed over all
        of its tokens: a token mean over the rows computed, times `share`, is the mean over the
        whole minibatch, so the gradient, and the optimizer's step, are the same up to float
        rounding. A minibatch with no such row computes one row, with share 0: the step still
        runs on a zero gradient, as Adam's moments move the weights. Under several processes
        every minibatch is computed whole (DDP's gradient sync needs every process's pass)."""
        cfg, ctx = self.cfg, self.ctx
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, step, salt=5))
        lengths = batch["attention_mask"].sum(1)
        if carries is not None:
            carries = carries.cpu() if ctx.world == 1 else None  # the minibatches' indices are on the CPU
        self.policy.train()
        with ctx.phases.time("update"):
            for _ in range(cfg.epochs):
                for idx in minibatches(len(lengths), self.minibatch_size, gen, lengths, batch["group"]):
                    self.check_update_cancel(step)
                    share = 1.0
                    if carries is not None and not carries[idx].all():
                        tokens = batch["mask"][idx].sum()
                        kept = idx[carries[idx]]
                        share = float(batch["mask"][kept].sum() / tokens) if len(kept) and tokens else 0.0
                        idx = kept if len(kept) else idx[:1]
                    mb, t = rows(batch, idx)
                    ctx.phases.count("update_tokens", int(mb["attention_mask"].sum()))
                    yield idx, mb, t, share

    def check_update_cancel(self, step: int) -> None:
        """Inside a step's update, per minibatch: raise Cancelled on a stop signal when that loses
        no finished step (the last one is checkpointed). Otherwise the update runs on to the step's
        end and the check between steps saves it: a half-updated policy is no step's, never kept."""
        if self.last_saved == step - 1:
            check_cancel(self.ctx.interrupt)

    def stopping(self, last_done: int) -> bool:
        """True when a cancel was requested; the work done so far is saved first (unevaluated)."""
        if not self.ctx.stop_requested():
            return False
        if last_done > self.last_saved:
            self._save(last_done, evaluate_now=False)
        return True

    def after_step(self, step: int) -> None:
        cfg = self.cfg
        self.ctx.progress(step, cfg.steps, step / cfg.steps, f"step {step}/{cfg.steps}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            self.ctx.progress(step, cfg.steps, step / cfg.steps, f"step {step}/{cfg.steps}: evaluating")
            self._save(step, evaluate_now=True)

    def _save(self, step: int, evaluate_now: bool) -> None:
        state = {"optimizer": self.opt.state_dict(),
                 "heads": {k: h.state_dict() for k, h in self.heads.items()},
                 "stateful": {k: o.state_dict() for k, o in self.stateful.items()}}
        self.ctx.save(step, self.policy, self.tokenizer, state, evaluate_now=evaluate_now)
        self.last_saved = step


def train_orm_from_samples(ctx: RunContext, cfg, policy, tokenizer, out: Path, problems: int = 256, n: int = 8):
    """reward=orm with no ORM given: label the base's own samples on training problems (stored as
    this run's step-0 rollouts) and train an outcome reward model on them. Each problem's reference
    solution is added as a correct example, so a weak base that solves little still gives both
    classes."""
    from engine.algorithms.orm import ORMConfig, train_orm

    ctx.progress(0, getattr(cfg, "steps", 0), 0.0, "training the outcome reward model")
    pool = _pool(ctx.task, cfg.train_problems)
    rng = random.Random(step_seed(cfg.seed, 0, salt=3))
    chosen = rng.sample(pool[len(pool) // 2:], min(problems, len(pool) // 2))  # apart from early RL steps
    rollouts = sample_rollouts(policy, tokenizer, ctx.task, chosen, n, cfg, seed=step_seed(cfg.seed, 0, salt=4),
                               prompt=ctx.prompt, stop=ctx.stop, cancel=ctx.interrupt)
    for r in rollouts:
        r.reward = float(r.score.correct)
    ctx.log_rollouts(0, rollouts)
    examples = [(r.prompt_text, r.completion.text, bool(r.score.correct)) for r in rollouts]
    examples += [(ctx.prompt(p), p.reference, True) for p in chosen]
    return train_orm(cfg.base, examples, out, ORMConfig(steps=cfg.orm_steps, seed=cfg.seed, device=cfg.device,
                                                        dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code),
                     cancel=ctx.interrupt)
