"""The frames around the training loops: Rounds for the round-based ones (expert_iteration, rcrl,
continued_sft), PolicyRun for the policy-gradient ones (ppo, grpo), each loop on top of one.
Rollouts, their token batches and log-probabilities are rollout.py's; rewards are rewards.py's;
the job around a run (store, cancel, checkpoints) is context.py's RunContext.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.algorithms import rewards
from engine.algorithms.context import RunContext
from engine.algorithms.optim import adamw
from engine.algorithms.rollout import (Rollout, TokenBatch, batch_logprobs, draw_problems, minibatches, rows,
                                       sample_rollouts, sampled_hidden, sampled_logprobs, step_seed, train_pool,
                                       with_rewards)
from engine.algorithms.sft import finetune
from engine.model.checkpoint import load_checkpoint
from engine.model.lora import maybe_lora, trainable
from engine.sampling.base import Cancelled, check_cancel


def load_model(cfg, path=None):
    """(model, tokenizer) of the base (or `path`) as the run config asks: device, dtype, remote code."""
    return load_checkpoint(path or cfg.base, device=cfg.device, dtype=cfg.dtype,
                           trust_remote_code=cfg.trust_remote_code)


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


@dataclass
class Step:
    """One step of a PolicyRun, as its loop reads it: what run.iterations() yields."""

    index: int  # 1 .. cfg.steps
    rollouts: list[Rollout]  # this process's share: n consecutive samples per problem, scored and rewarded
    started: float  # time.time() as the step began (after the cancel check): time/step_s runs from it
    sample_s: float  # seconds spent sampling and scoring the rollouts: tokens_per_s is over them

    @property
    def rewards(self) -> torch.Tensor:
        """(B,) float32: each rollout's reward, in the rollouts' order."""
        return torch.tensor([r.reward for r in self.rollouts])


class PolicyRun:
    """What PPO and GRPO share around their update: start or resume (policy, optimizer, extra
    heads and controllers), the frozen reference, the reward, rollouts with rewards, the cancel
    check and the checkpoint schedule. The update itself stays in each algorithm's loop.

    `policy` and `heads` are the modules themselves (sampling, old log-probabilities, saving);
    `policy_ddp` and `heads_ddp` are the same modules as accelerate prepared them for the gradient
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
        self.first_step, self.last_saved = 1, 0
        resume = ctx.resume_point()
        if resume is not None:
            step, path, state = resume
            ctx.restore(state)
            self.policy = maybe_lora(load_model(cfg, path)[0], cfg)  # merged weights, fresh adapters
            self.first_step, self.last_saved = step + 1, step
        # the one optimizer of the run, over the policy it trains (the resumed one's, on resume)
        params = trainable(self.policy) + [p for h in self.heads.values() for p in h.parameters()]
        self.opt = adamw(params, lr=cfg.lr)
        if resume is not None:
            self.opt.load_state_dict(state["optimizer"])
            for name, head in self.heads.items():
                head.load_state_dict(state["heads"][name])
            for name, obj in self.stateful.items():
                obj.load_state_dict(state["stateful"][name])
        else:
            ctx.progress(0, cfg.steps, 0.0, "evaluating the base checkpoint")
            ctx.evaluate_base(self.policy, self.tokenizer)
        orm_model = self._reward_model() if cfg.reward == "orm" else None
        self.reward = rewards.reward_function(cfg.reward, orm_model)
        self.minibatch_size = cfg.minibatch_size // ctx.world
        # the torch sampler's log-probabilities are the update's up to float rounding in float32
        # (tests/test_shared_prefix.py); vLLM's come from its own copy, kernels and dtype
        self.sampler_logprobs = cfg.sampler == "torch" and all(p.dtype == torch.float32
                                                               for p in self.policy.parameters())
        # old_logprobs(with_hidden=True) reads them; several processes gather their rollouts: not with those
        self.keep_hidden = hidden and self.sampler_logprobs and ctx.world == 1
        self.policy_ddp, *heads_ddp, self.opt = ctx.acc.prepare(self.policy, *self.heads.values(), self.opt)
        self.heads_ddp = dict(zip(self.heads, heads_ddp))

    def _reward_model(self):
        from engine.algorithms.orm import OutcomeRewardModel

        cfg = self.cfg
        path = cfg.orm or self.ctx.run_dir / "orm"
        if not cfg.orm and self.ctx.is_main and not (path / "orm_head.safetensors").is_file():
            with self.ctx.phases.time("orm"):
                train_orm_from_samples(self.ctx, cfg, self.policy, self.tokenizer, path)
        self.ctx.acc.wait_for_everyone()
        return OutcomeRewardModel.load(path, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)

    def iterations(self) -> Iterator[Step]:
        """Each remaining step: the cancel check, then its sampled, scored and rewarded rollouts."""
        for step in range(self.first_step, self.cfg.steps + 1):
            if self.stopping(step - 1):
                return
            started = time.time()
            try:
                rollouts = self.rollouts(step)
            except Cancelled:  # mid-sampling the policy is still step - 1's: keep it, as stopping() does
                if step - 1 > self.last_saved:
                    self._save(step - 1, evaluate_now=False)
                raise
            yield Step(step, rollouts, started, time.time() - started)

    def rollouts(self, step: int) -> list[Rollout]:
        """Sample n solutions for this process's share of the step's problems, score them, set
        their rewards, store every process's. A problem's n samples (a GRPO group) stay on one process."""
        ctx, cfg = self.ctx, self.cfg
        problems = ctx.shard(draw_problems(ctx.task, cfg, step, cfg.prompts_per_step))
        with ctx.phases.time("sample"):
            rollouts = sample_rollouts(self.policy, self.tokenizer, ctx.task, problems, cfg.n, cfg,
                                       seed=step_seed(cfg.seed, step) + ctx.rank, prompt=ctx.prompt, stop=ctx.stop,
                                       cancel=ctx.interrupt, keep_hidden=self.keep_hidden)
        ctx.phases.count("sample_tokens", sum(len(r.completion.token_ids) for r in rollouts))
        with ctx.phases.time("score"):
            rollouts = with_rewards(rollouts, self.reward)
        everyone = ctx.gather(rollouts)
        ctx.samples_seen += len(everyone)
        ctx.log_rollouts(step, everyone)
        return rollouts

    def old_logprobs(self, rollouts: list[Rollout], batch: TokenBatch, with_hidden: bool = False):
        """((B, L-1) log-probabilities of the rollouts' tokens under the policy that sampled them,
        with_hidden: the (B, L-1, H) last hidden states, else None), as batch_logprobs. Those the
        torch sampler recorded when the policy is float32 (the same weights: a forward pass would
        repeat them to float rounding; the hidden states when the run asked the sampler to keep
        them), else a forward pass without gradients (vLLM samples from its own copy of the
        weights; in bfloat16 the sampler's cached pass and the update's differ by more than rounding)."""
        c = [r.completion for r in rollouts]
        if (self.sampler_logprobs and all(len(x.logprobs) == len(x.token_ids) for x in c)
                and (not with_hidden or all(x.hidden is not None and len(x.hidden) == len(x.token_ids) for x in c))):
            return sampled_logprobs(rollouts, batch), sampled_hidden(rollouts, batch) if with_hidden else None
        return batch_logprobs(self.policy, batch, self.minibatch_size, with_hidden=with_hidden)

    def reference_logprobs(self, batch: TokenBatch) -> torch.Tensor:
        """(B, L-1) log-probabilities of the batch's tokens under the frozen reference, as batch_logprobs."""
        return batch_logprobs(self.reference, batch, self.minibatch_size)[0]

    def update_batches(self, step: int, batch: TokenBatch, carries: torch.Tensor | None = None):
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
        lengths = batch.attention_mask.sum(1)
        if carries is not None:
            carries = carries.cpu() if ctx.world == 1 else None  # the minibatches' indices are on the CPU
        self.policy.train()
        with ctx.phases.time("update"):
            for _ in range(cfg.epochs):
                for idx in minibatches(len(lengths), self.minibatch_size, gen, lengths, batch.group):
                    self.check_update_cancel(step)
                    share = 1.0
                    if carries is not None and not carries[idx].all():
                        tokens = batch.mask[idx].sum()
                        kept = idx[carries[idx]]
                        share = float(batch.mask[kept].sum() / tokens) if len(kept) and tokens else 0.0
                        idx = kept if len(kept) else idx[:1]
                    mb, t = rows(batch, idx)
                    ctx.phases.count("update_tokens", int(mb.attention_mask.sum()))
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
    from engine.algorithms.orm import train_orm
    from engine.config import ORMConfig

    ctx.progress(0, getattr(cfg, "steps", 0), 0.0, "training the outcome reward model")
    pool = train_pool(ctx.task, cfg)
    rng = random.Random(step_seed(cfg.seed, 0, salt=3))
    chosen = rng.sample(pool[len(pool) // 2:], min(problems, len(pool) // 2))  # apart from early RL steps
    rollouts = sample_rollouts(policy, tokenizer, ctx.task, chosen, n, cfg, seed=step_seed(cfg.seed, 0, salt=4),
                               prompt=ctx.prompt, stop=ctx.stop, cancel=ctx.interrupt)
    rollouts = with_rewards(rollouts, rewards.sparse)  # the labels, as rewards
    ctx.log_rollouts(0, rollouts)
    examples = [(r.prompt_text, r.completion.text, bool(r.score.correct)) for r in rollouts]
    examples += [(ctx.prompt(p), p.reference, True) for p in chosen]
    return train_orm(cfg.base, examples, out, ORMConfig(steps=cfg.orm_steps, seed=cfg.seed, device=cfg.device,
                                                        dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code),
                     cancel=ctx.interrupt)
