"""Pure tensor math shared by the PPO, GRPO and RCRL loops: masked statistics, GAE, clipped
policy / value losses, KL estimators and controllers, group advantages, log-probs and entropy.

Per-token tensors are (B, T) over completion tokens, right-padded; `mask` (B, T) is a float that
is 1 on real completion tokens and 0 on padding. Nothing here touches a model or an optimizer.
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask == 1: a scalar (dim None) or along `dim`. An all-padding row gives 0."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries (population variance); padding comes out 0.

    shift_mean=False adds the mean back: rewards keep their sign and level, only their scale
    changes (as TRL / OpenRLHF do for rewards).
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


@torch.no_grad()
def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016). Returns (advantages, returns), (B, T).

    The episode ends at the last real token, so the value after it is 0: multiplying V_{t+1} and
    A_{t+1} by m_{t+1} cuts the bootstrap there, and padding never leaks backwards. Targets only,
    hence no_grad.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    next_value = next_adv = next_mask = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value * next_mask - values[:, t]
        next_adv = delta + gamma * lam * next_mask * next_adv
        advantages[:, t] = next_adv
        next_value, next_mask = values[:, t], mask[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate. Returns (pg_loss, clipfrac, approx_kl), scalars; the last two detached.

    The max of the two losses is the pessimistic bound: a token is clipped (zero gradient) only
    when the ratio has already moved past 1 +- eps in the direction its advantage pushes.
    approx_kl is Schulman's k2 estimator, mean of 0.5 * (log pi - log pi_old)^2 over tokens
    sampled from pi_old: low variance, always >= 0, second-order accurate for small steps.
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * ratio.clamp(1 - clip_eps, 1 + clip_eps)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean(((ratio - 1).abs() > clip_eps).float(), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return pg_loss, clipfrac, approx_kl


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (PPO2 baselines). Returns (v_loss, vf_clipfrac), scalars.

    vf_clipfrac (detached) is the share of tokens where the clipped error is the larger one,
    i.e. where the max picks the clipped branch.
    """
    v_clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    v_loss_unclipped = (values - returns) ** 2
    v_loss_clipped = (v_clipped - returns) ** 2
    v_loss = 0.5 * masked_mean(torch.max(v_loss_unclipped, v_loss_clipped), mask)
    with torch.no_grad():
        vf_clipfrac = masked_mean((v_loss_clipped > v_loss_unclipped).float(), mask)
    return v_loss, vf_clipfrac


KL_KINDS = ("k1", "k2", "k3")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token (B, T) estimate of KL(pi || ref) from tokens sampled from pi (Schulman 2020,
    "Approximating KL divergence"). k1 = log pi - log ref: unbiased, high variance, can be < 0.
    k2 = 0.5 * (log pi - log ref)^2: biased, low variance, >= 0. k3 = r - log r - 1 with
    r = ref / pi: unbiased and >= 0 (computed with expm1 so tiny differences stay >= 0).
    """
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r}; choose one of {', '.join(KL_KINDS)}")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO advantages of B = P * group_size rewards (1-D, consecutive rows share a prompt), (B,).

    scale=True: (r - group mean) / (group std + eps) (Shao et al. 2024), with the population std
    (unbiased=False) so a group's scale does not depend on group_size through Bessel's correction.
    scale=False: r - group mean only (Dr. GRPO, Liu et al. 2025), no per-question difficulty bias.
    A group whose rewards are all equal carries no signal and gets exactly 0.
    """
    if rewards.dim() != 1 or group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"need a 1-D rewards tensor whose length is a multiple of group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    r = rewards.view(-1, group_size)  # (P, G)
    centered = r - r.mean(dim=1, keepdim=True)
    if scale:
        centered = centered / (r.std(dim=1, unbiased=False, keepdim=True) + eps)
    # the float mean of equal values can be off by an ulp; zero such groups exactly
    same = (r == r[:, :1]).all(dim=1, keepdim=True)
    return torch.where(same, torch.zeros_like(centered), centered).view(-1)


class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019): nudge `value` so the measured KL tracks `target`."""

    def __init__(self, init_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value, self.target, self.horizon = float(init_coef), float(target), horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(float(current_kl) / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, d: dict) -> None:
        self.value = float(d["value"])


class FixedKLController:
    """A constant KL coefficient with the adaptive controller's interface."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, d: dict) -> None:
        self.value = float(d["value"])


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels) (B, T), float32, from logits (B, T, V). Labels must be valid ids everywhere
    (put any id, e.g. pad, on padding and mask it later)."""
    logp = logits.float().log_softmax(dim=-1)
    return logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats (B, T), float32, of the categorical given by logits (B, T, V)."""
    return entropy_from_logprobs(logits.float().log_softmax(dim=-1))


def entropy_from_logprobs(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in nats (...) of the categorical given by log-probabilities (..., V)."""
    # -inf logits (a masked vocabulary) would give 0 * -inf = nan, in the forward and backward pass
    logp = logp.clamp(min=torch.finfo(logp.dtype).min)
    return -(logp.exp() * logp).sum(dim=-1)
