"""PPO (Schulman et al. 2017) as used for RLHF (Ziegler et al. 2019) and by Havrilla et al. 2024.
Each iteration:

  1) sample n solutions for each of `prompts_per_step` training problems;
  2) score them: sparse, dense or ORM reward at the last token, optionally scaled and clipped;
  3) per-token rewards: minus kl_coef * (log pi - log pi_ref) everywhere, plus the score at the end;
  4) GAE(gamma, lambda) over the value head's estimates -> advantages and returns;
  5) epochs of minibatches: clipped policy loss + clipped value loss - entropy bonus;
  6) adapt the KL coefficient (if kl_target), log; checkpoint and evaluate every few iterations.

The value head is one linear layer on the policy's last hidden state (a shared body, as in TRL).
The old log-probabilities and values read what the torch sampler recorded while sampling (its
log-probabilities and last hidden states, in float32; PolicyRun.old_logprobs), not a second pass.
Under a multi-process launch each process samples and trains on its share of the problems,
`accelerator.backward` averages the gradients (DDP; each process's losses weighted by its share
of the minibatch's tokens, so they are means over all of them), and the reward scale and the
adaptive KL coefficient are updated from every process's samples, so they stay the same on all
of them.
Advantages are whitened within each process's share.
"""

from __future__ import annotations

import math
import time

import torch
from transformers import AutoConfig

from engine import distributed
from engine.algorithms.common import PolicyRun, Stats
from engine.algorithms.context import RunContext
from engine.algorithms.losses import (AdaptiveKLController, FixedKLController, gae,
                                      masked_mean, masked_whiten, policy_loss, value_loss)
from engine.algorithms.rollout import forward_logprobs, summary, token_batch
from engine.config import PPOConfig


class RunningMoments:
    """Running standard deviation of scores (for reward scaling), with a state for resume."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, xs: torch.Tensor) -> None:  # Chan et al.'s parallel Welford update
        n, mean, m2 = len(xs), xs.mean().item(), ((xs - xs.mean()) ** 2).sum().item()
        delta, total = mean - self.mean, self.n + n
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.n * n / total
        self.n = total

    @property
    def std(self) -> float:
        """1.0 until the scores have spread: dividing by the std of identical scores (a batch where
        every reward was 0) would turn them into NaN and the policy with them."""
        var = self.m2 / self.n if self.n > 1 else 0.0
        return math.sqrt(var) if var > 1e-12 else 1.0

    def state_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, d: dict) -> None:
        self.n, self.mean, self.m2 = d["n"], d["mean"], d["m2"]


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last completion token in a (B, T) mask."""
    return mask.shape[1] - 1 - mask.flip(1).argmax(1)


def train(ctx: RunContext, cfg: PPOConfig) -> None:
    hidden = AutoConfig.from_pretrained(cfg.base, local_files_only=True,
                                        trust_remote_code=cfg.trust_remote_code).hidden_size
    value_head = torch.nn.Linear(hidden, 1)
    torch.nn.init.zeros_(value_head.weight)
    torch.nn.init.zeros_(value_head.bias)
    kl_ctl = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.kl_target > 0
              else FixedKLController(cfg.kl_coef))
    moments = RunningMoments()
    run = PolicyRun(ctx, cfg, heads={"value_head": value_head}, stateful={"kl": kl_ctl, "rewards": moments},
                    hidden=True)  # the sampler keeps the hidden states the old values read
    tokenizer, opt = run.tokenizer, run.opt
    policy_ddp, value_head_ddp = run.policy_ddp, run.heads_ddp["value_head"]  # as prepared for gradients
    acc = ctx.acc

    # 1) sample, 2) score (scaled by a running std, clipped); run.iterations checks for a cancel
    for step in run.iterations():
        rollouts, scores = step.rollouts, step.rewards
        if cfg.reward_scale:
            moments.update(torch.tensor(ctx.gather(scores.tolist())))
            scores = scores / moments.std
        if cfg.reward_clip > 0:
            scores = scores.clamp(-cfg.reward_clip, cfg.reward_clip)

        batch = token_batch(rollouts, tokenizer.pad_token_id, cfg.device)
        mask = batch.mask
        with torch.no_grad(), ctx.phases.time("logprobs"):
            old_logprobs, hidden = run.old_logprobs(rollouts, batch, with_hidden=True)
            old_values = value_head(hidden.float()).squeeze(-1) * mask  # the head stays float32 under bf16
            ref_logprobs = run.reference_logprobs(batch) if run.reference is not None else old_logprobs

            # 3) per-token rewards: KL penalty on every token, the score on the last one
            kl = (old_logprobs - ref_logprobs) * mask
            rewards = -kl_ctl.value * kl
            every = torch.arange(len(rollouts))
            rewards[every, last_token_index(mask)] += scores.to(cfg.device)

            # 4) GAE
            advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:
                advantages = masked_whiten(advantages, mask)

        # 5) clipped policy and value losses over minibatches (run.update_batches: shuffled per step, resumable)
        stats = Stats()
        for idx, mb, t, _ in run.update_batches(step.index, batch):
            logprobs, entropies, hidden = forward_logprobs(policy_ddp, mb, with_hidden=True, with_entropy=True)
            values = value_head_ddp(hidden.float()).squeeze(-1)
            m = mb.mask
            pg_loss, clipfrac, approx_kl = policy_loss(logprobs, old_logprobs[idx, :t], advantages[idx, :t], m,
                                                       cfg.clip_eps)
            v_loss, vf_clipfrac = value_loss(values, old_values[idx, :t], returns[idx, :t], m, cfg.vf_clip)
            entropy = masked_mean(entropies, m)
            loss = pg_loss + cfg.vf_coef * v_loss
            if cfg.entropy_coef:  # else the entropy is only logged: nothing to differentiate
                loss = loss - cfg.entropy_coef * entropy
            opt.zero_grad(set_to_none=True)
            acc.backward(loss * distributed.share_weight(m, acc))  # token means over every process
            grad_norm = acc.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
            opt.step()
            stats.add(policy_loss=pg_loss.item(), value_loss=v_loss.item(), approx_kl=approx_kl.item(),
                      clip_frac=clipfrac.item(), vf_clip_frac=vf_clipfrac.item(),
                      update_entropy=entropy.item(),  # the bonus's (temperature 1); `entropy` is the rollouts'
                      grad_norm=grad_norm.item())

        # 6) adapt the KL coefficient, log, checkpoint
        seq_kls = torch.tensor(ctx.gather(kl.sum(1).tolist()))  # (every process's samples,)
        seq_kl = seq_kls.mean().item()
        kl_ctl.update(seq_kl, len(seq_kls))
        ctx.log(step.index, {**summary(rollouts), **stats.means(), "reward_mean": scores.mean().item(),
                             "kl_ref": seq_kl, "kl_coef": kl_ctl.value,
                             "value_mean": masked_mean(old_values, mask).item(),
                             "tokens_per_s": int(mask.sum()) / max(step.sample_s, 1e-9),
                             "time/step_s": time.time() - step.started})
        run.after_step(step.index)
