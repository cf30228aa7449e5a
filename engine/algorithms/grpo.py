"""GRPO (Shao et al. 2024): no value model; each sample's advantage is its reward relative to the
other samples of the same problem. Each iteration:

  1) sample n solutions for each of `prompts_per_step` training problems;
  2) score them (sparse, dense or ORM reward);
  3) advantages: (r - mean of the group) / std of the group, the same for every token;
  4) a few epochs of the clipped policy loss against the sampler's log-probabilities (+ optional k3 KL to the frozen base);
  5) log; checkpoint and evaluate every `checkpoint_every` iterations.

Under a multi-process launch each process samples and trains on its share of the problems (whole
groups), and `accelerator.backward` averages the gradients (DDP; each process's loss weighted by
its share of the minibatch's tokens, so it is the mean over all of them).
"""

from __future__ import annotations

import time

from engine import distributed
from engine.algorithms.common import PolicyRun, Stats
from engine.algorithms.context import RunContext
from engine.algorithms.losses import group_advantages, kl_penalty, masked_mean, policy_loss
from engine.algorithms.rollout import forward_logprobs, summary, token_batch
from engine.config import GRPOConfig


def train(ctx: RunContext, cfg: GRPOConfig) -> None:
    run = PolicyRun(ctx, cfg)
    tokenizer, opt = run.tokenizer, run.opt
    policy_ddp, acc = run.policy_ddp, ctx.acc  # the policy as accelerate prepared it for gradient passes

    # 1) sample, 2) score (the cancel check and sampling live in run.iterations)
    for step in run.iterations():
        rollouts, rewards = step.rollouts, step.rewards

        # 3) group-normalised advantages, broadcast over each sample's tokens
        adv = group_advantages(rewards, cfg.n, scale=cfg.scale_rewards).to(cfg.device)
        batch = token_batch(rollouts, tokenizer.pad_token_id, cfg.device)
        with ctx.phases.time("logprobs"):
            old_logprobs = run.old_logprobs(rollouts, batch)[0]
            ref_logprobs = run.reference_logprobs(batch) if cfg.kl_coef > 0 else None

        # 4) clipped policy loss over minibatches (run.update_batches: shuffled per step, resumable;
        # without a KL term the rows of advantage 0 have no gradient, and are not computed)
        stats = Stats()
        carries = adv != 0 if cfg.kl_coef == 0 else None
        for idx, mb, t, share in run.update_batches(step.index, batch, carries):
            logprobs, _, _ = forward_logprobs(policy_ddp, mb)
            mask = mb.mask
            pg_loss, clipfrac, approx_kl = policy_loss(logprobs, old_logprobs[idx, :t],
                                                       adv[idx, None].expand_as(logprobs), mask, cfg.clip_eps)
            pg_loss = pg_loss * share  # the whole minibatch's token mean (1 unless rows were left out)
            loss = pg_loss
            if ref_logprobs is not None:
                kl = masked_mean(kl_penalty(logprobs, ref_logprobs[idx, :t], "k3"), mask)
                loss = loss + cfg.kl_coef * kl
                stats.add(kl_ref=kl.item())
            opt.zero_grad(set_to_none=True)
            acc.backward(loss * distributed.share_weight(mask, acc))  # token means over every process
            grad_norm = acc.clip_grad_norm_(policy_ddp.parameters(), 1.0)
            opt.step()
            stats.add(policy_loss=pg_loss.item(), grad_norm=grad_norm.item())
            if share:  # over the rows computed: those that learn
                stats.add(approx_kl=approx_kl.item(), clip_frac=clipfrac.item())

        # 5) log, checkpoint
        tokens = int(batch.mask.sum())
        groups = rewards.view(-1, cfg.n)
        ctx.log(step.index, {**summary(rollouts), **stats.means(),
                             "grpo/zero_std_groups": float((groups.std(1) == 0).float().mean()),
                             "tokens_per_s": tokens / max(step.sample_s, 1e-9),
                             "time/step_s": time.time() - step.started})
        run.after_step(step.index)
