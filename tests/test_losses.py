"""Table-driven tests for engine.algorithms.losses on tiny hand-made tensors."""

import math

import pytest
import torch

from engine.algorithms.losses import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    gae,
    group_advantages,
    kl_penalty,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_logprobs,
    value_loss,
)

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def ragged(B=4, T=6, seed=0):
    """Random (B, T) rewards and values with right-padded masks of lengths T, T-1, ..., at least 1."""
    g = torch.Generator().manual_seed(seed)
    lengths = [max(1, T - i) for i in range(B)]
    mask = torch.tensor([[1.0] * n + [0.0] * (T - n) for n in lengths])
    return torch.randn(B, T, generator=g), torch.randn(B, T, generator=g), mask


# masked_mean / masked_whiten


@pytest.mark.parametrize(
    "dim, want",
    [(None, 7 / 3), (1, [1.5, 4.0]), (0, [2.5, 2.0, 0.0])],  # an all-padding column gives 0, not nan
)
def test_masked_mean(dim, want):
    got = masked_mean(X, MASK, dim=dim)
    torch.testing.assert_close(got, torch.tensor(want))


def test_masked_mean_all_padding_is_zero():
    assert masked_mean(X, torch.zeros_like(X)).item() == 0.0


@pytest.mark.parametrize("shift_mean", [True, False])
def test_masked_whiten_unit_std_over_masked_entries(shift_mean):
    x, _, mask = ragged()
    x = 3 * x + 5
    out = masked_whiten(x, mask, shift_mean=shift_mean)
    real = out[mask.bool()]
    want_mean = x[mask.bool()].mean().item() if not shift_mean else 0.0
    assert real.mean().item() == pytest.approx(want_mean, abs=1e-5)
    assert real.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)
    assert (out[~mask.bool()] == 0).all()
    noisy = torch.where(mask.bool(), x, torch.full_like(x, 1e3))  # padding does not move the statistics
    torch.testing.assert_close(masked_whiten(noisy, mask, shift_mean=shift_mean), out)


# gae


def naive_gae(rewards, values, mask, gamma, lam):
    adv, ret = torch.zeros_like(rewards), torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        n = int(mask[b].sum())
        next_adv = 0.0
        for t in reversed(range(n)):
            next_value = values[b, t + 1].item() if t + 1 < n else 0.0
            delta = rewards[b, t].item() + gamma * next_value - values[b, t].item()
            next_adv = delta + gamma * lam * next_adv
            adv[b, t] = next_adv
            ret[b, t] = next_adv + values[b, t].item()
    return adv, ret


@pytest.mark.parametrize("gamma, lam", [(1.0, 1.0), (1.0, 0.95), (0.9, 0.5), (0.99, 0.0)])
def test_gae_matches_naive_loop_on_ragged_rows(gamma, lam):
    rewards, values, mask = ragged(B=5, T=7, seed=1)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    want_adv, want_ret = naive_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, want_adv)
    torch.testing.assert_close(ret, want_ret)


@pytest.mark.parametrize(
    "rewards, values, mask, gamma, lam, want_adv, want_ret",
    [
        # gamma = lam = 1: returns are the reward-to-go 0.5 + 0 + 1, 0 + 1, 1
        ([0.5, 0.0, 1.0], [0.5, 0.2, 0.9], [1, 1, 1], 1.0, 1.0, [1.0, 0.8, 0.1], [1.5, 1.0, 1.0]),
        # the same row with a padded 4th token holding junk: it changes nothing and comes out 0
        ([0.5, 0.0, 1.0, 7.0], [0.5, 0.2, 0.9, -3.0], [1, 1, 1, 0], 1.0, 1.0,
         [1.0, 0.8, 0.1, 0.0], [1.5, 1.0, 1.0, 0.0]),
        # delta_1 = 1 - 2 = -1; delta_0 = 0 + 0.5 * 2 - 1 = 0; A_0 = 0 + 0.25 * -1
        ([0.0, 1.0], [1.0, 2.0], [1, 1], 0.5, 0.5, [-0.25, -1.0], [0.75, 1.0]),
    ],
)
def test_gae_hand_computed(rewards, values, mask, gamma, lam, want_adv, want_ret):
    adv, ret = gae(torch.tensor([rewards]), torch.tensor([values]), torch.tensor([mask], dtype=torch.float),
                   gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([want_adv]))
    torch.testing.assert_close(ret, torch.tensor([want_ret]))


def test_gae_gives_no_gradient_to_values():
    rewards, values, mask = ragged()
    adv, ret = gae(rewards, values.requires_grad_(), mask, 1.0, 0.95)
    assert not adv.requires_grad and not ret.requires_grad


# policy_loss


@pytest.mark.parametrize(
    "adv, ratio, want_loss, clipped, want_clipfrac",
    [
        (1.0, 1.1, -1.1, False, 0.0),   # inside the range: plain -A * ratio
        (-2.0, 0.9, 1.8, False, 0.0),
        (1.0, 1.5, -1.2, True, 1.0),    # A > 0 pushes the ratio up: capped at 1 + eps
        (1.0, 0.5, -0.5, False, 1.0),   # A > 0, ratio fell: the worse, unclipped value counts
        (-1.0, 0.5, 0.8, True, 1.0),    # A < 0 pushes the ratio down: floored at 1 - eps
        (-1.0, 1.5, 1.5, False, 1.0),   # A < 0, ratio rose: unclipped
    ],
)
def test_policy_loss_single_token(adv, ratio, want_loss, clipped, want_clipfrac):
    old = torch.tensor([[-1.3]])
    logp = (old + math.log(ratio)).requires_grad_()
    loss, clipfrac, approx_kl = policy_loss(logp, old, torch.tensor([[adv]]), torch.ones(1, 1), clip_eps=0.2)
    assert loss.item() == pytest.approx(want_loss, abs=1e-6)
    assert clipfrac.item() == want_clipfrac
    assert approx_kl.item() == pytest.approx(0.5 * math.log(ratio) ** 2, abs=1e-6)
    loss.backward()
    want_grad = 0.0 if clipped else -adv * ratio  # d(-A * exp(logp - old)) / d logp
    assert logp.grad.item() == pytest.approx(want_grad, abs=1e-6)


def test_policy_loss_ignores_masked_positions():
    g = torch.Generator().manual_seed(0)
    _, _, mask = ragged(B=3, T=5)
    old = -torch.rand(3, 5, generator=g)
    logp = old + 0.3 * torch.randn(3, 5, generator=g)
    adv = torch.randn(3, 5, generator=g)
    base = policy_loss(logp.clone().requires_grad_(), old, adv, mask, 0.2)

    pad = ~mask.bool()
    junk_logp = torch.where(pad, torch.full_like(logp, 3.0), logp).requires_grad_()
    junk = policy_loss(junk_logp, torch.where(pad, -5.0, old), torch.where(pad, 100.0, adv), mask, 0.2)
    for a, b in zip(base, junk):
        assert a.item() == pytest.approx(b.item(), abs=1e-6)
    junk[0].backward()
    assert (junk_logp.grad[pad] == 0).all() and (junk_logp.grad[~pad] != 0).any()

    # and the loss is the mean over real tokens only
    ratio = (logp - old).exp()
    per_token = torch.max(-adv * ratio, -adv * ratio.clamp(0.8, 1.2))
    assert base[0].item() == pytest.approx(per_token[mask.bool()].mean().item(), abs=1e-6)


def test_policy_loss_stats_are_detached():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, clipfrac, approx_kl = policy_loss(logp, torch.tensor([[-1.5, -1.0]]), torch.ones(1, 2), torch.ones(1, 2), 0.2)
    assert loss.requires_grad and not clipfrac.requires_grad and not approx_kl.requires_grad


# value_loss


@pytest.mark.parametrize(
    "v, old, ret, want_loss, want_clipfrac, want_grad",
    [
        (1.1, 1.0, 2.0, 0.5 * 0.9**2, 0.0, -0.9),  # moved less than eps: plain 0.5 * (v - R)^2
        (1.5, 1.0, 2.0, 0.5 * 0.8**2, 1.0, 0.0),   # v_clipped = 1.2 is farther from R: clipped, no gradient
        (1.5, 1.0, 1.0, 0.5 * 0.5**2, 0.0, 0.5),   # v_clipped = 1.2 is closer to R: unclipped error counts
        (0.5, 1.0, 0.0, 0.5 * 0.8**2, 1.0, 0.0),   # downward: v_clipped = 0.8
    ],
)
def test_value_loss_single_token(v, old, ret, want_loss, want_clipfrac, want_grad):
    values = torch.tensor([[v]], requires_grad=True)
    loss, clipfrac = value_loss(values, torch.tensor([[old]]), torch.tensor([[ret]]), torch.ones(1, 1), clip_eps=0.2)
    assert loss.item() == pytest.approx(want_loss, abs=1e-6)
    assert clipfrac.item() == want_clipfrac and not clipfrac.requires_grad
    loss.backward()
    assert values.grad.item() == pytest.approx(want_grad, abs=1e-6)


def test_value_loss_ignores_masked_positions():
    values, returns, mask = ragged(B=3, T=5, seed=2)
    old = values + 0.3
    pad = ~mask.bool()
    base = value_loss(values, old, returns, mask, 0.2)
    junk = value_loss(torch.where(pad, 9.0, values), torch.where(pad, -9.0, old), torch.where(pad, 50.0, returns),
                      mask, 0.2)
    for a, b in zip(base, junk):
        assert a.item() == pytest.approx(b.item(), abs=1e-6)


# kl_penalty


@pytest.mark.parametrize(
    "logp, ref, k1, k2, k3",
    [
        (-1.0, -1.0, 0.0, 0.0, 0.0),
        (-1.0, -2.0, 1.0, 0.5, math.exp(-1) + 1 - 1),  # r = ref / pi = e^-1
        (-2.0, -1.0, -1.0, 0.5, math.exp(1) - 1 - 1),  # k1 can be negative, k3 cannot
    ],
)
def test_kl_penalty_hand_values(logp, ref, k1, k2, k3):
    lp, rf = torch.tensor([[logp]]), torch.tensor([[ref]])
    for kind, want in [("k1", k1), ("k2", k2), ("k3", k3)]:
        got = kl_penalty(lp, rf, kind)
        assert got.shape == (1, 1)
        assert got.item() == pytest.approx(want, abs=1e-6), kind


def test_kl_penalty_zero_when_equal():
    logp = -torch.rand(3, 4)
    for kind in ("k1", "k2", "k3"):
        assert (kl_penalty(logp, logp.clone(), kind) == 0).all(), kind


def test_k3_is_never_negative():
    g = torch.Generator().manual_seed(0)
    ref = -5 * torch.rand(64, 64, generator=g)
    # large gaps and gaps below float32 resolution, where exp(x) - x - 1 rounds below 0
    gaps = torch.cat([10 * torch.randn(64, 32, generator=g), 1e-7 * torch.randn(64, 32, generator=g)], dim=1)
    assert (kl_penalty(ref + gaps, ref, "k3") >= 0).all()


def test_kl_penalty_rejects_unknown_kind():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


@pytest.mark.parametrize("kind", ["k1", "k3"])  # the unbiased estimators
def test_kl_estimators_approximate_true_kl(kind):
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    q = torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2])
    true_kl = (p * (p / q).log()).sum().item()  # ~0.24 nats
    x = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = kl_penalty(p.log()[x][None], q.log()[x][None], kind).mean().item()
    assert est == pytest.approx(true_kl, abs=0.01)


# group_advantages


@pytest.mark.parametrize(
    "rewards, group_size, scale, want",
    [
        # mean 0.5, population std 0.5; the all-ones group carries no signal
        ([1, 0, 0, 1, 1, 1, 1, 1], 4, True, [0.5 / 0.5001, -0.5 / 0.5001, -0.5 / 0.5001, 0.5 / 0.5001, 0, 0, 0, 0]),
        ([1, 0, 0, 1, 1, 1, 1, 1], 4, False, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]),
        # population std sqrt(2) (the unbiased one would be sqrt(3))
        ([0, 0, 3], 3, True, [-1 / (2**0.5 + 1e-4), -1 / (2**0.5 + 1e-4), 2 / (2**0.5 + 1e-4)]),
        ([0, 0, 3], 3, False, [-1, -1, 2]),
        ([2, 5], 1, True, [0, 0]),  # one sample per prompt: nothing to compare against
    ],
)
def test_group_advantages(rewards, group_size, scale, want):
    got = group_advantages(torch.tensor(rewards, dtype=torch.float), group_size, scale=scale)
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float))


@pytest.mark.parametrize("scale", [True, False])
def test_group_advantages_equal_rewards_give_exact_zero(scale):
    # float32 mean of six 0.3s is off by an ulp; scaled by 1 / eps that would be ~3e-4
    got = group_advantages(torch.tensor([0.3] * 6 + [0.0, 1.0] * 3), 6, scale=scale)
    assert (got[:6] == 0).all() and (got[6:] != 0).all()


@pytest.mark.parametrize("shape, group_size", [((6,), 4), ((7,), 2), ((2, 4), 4)])
def test_group_advantages_rejects_bad_shapes(shape, group_size):
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(shape), group_size)


# KL controllers


@pytest.mark.parametrize(
    "kl, want",
    [
        (6.0, 0.1),                              # on target: unchanged
        (7.0, 0.1 * (1 + (1 / 6) * 1000 / 10000)),  # above: up, proportionally
        (100.0, 0.1 * (1 + 0.2 * 0.1)),          # far above: error clipped at +20%
        (5.4, 0.1 * (1 - 0.1 * 0.1)),            # below: down
        (0.0, 0.1 * (1 - 0.2 * 0.1)),            # far below: clipped at -20%
    ],
)
def test_adaptive_kl_controller_update(kl, want):
    ctl = AdaptiveKLController(init_coef=0.1, target=6.0, horizon=10000)
    ctl.update(kl, n_steps=1000)
    assert ctl.value == pytest.approx(want, rel=1e-12)


def test_kl_controllers_resume_from_state_dict():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    for kl in (8.0, 9.0, 3.0):
        ctl.update(kl, 512)
    resumed = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    resumed.load_state_dict(ctl.state_dict())
    assert resumed.value == ctl.value != 0.1
    ctl.update(10.0, 512)
    resumed.update(10.0, 512)
    assert resumed.value == ctl.value

    fixed = FixedKLController(0.05)
    fixed.update(100.0, 512)
    assert fixed.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(fixed.state_dict())
    assert other.value == 0.05


# token_logprobs / entropy_from_logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_match_categorical(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(2, 4, 11, generator=g)).to(dtype)
    labels = torch.randint(0, 11, (2, 4), generator=g)
    got = token_logprobs(logits, labels)
    assert got.shape == (2, 4) and got.dtype == torch.float32
    want = torch.distributions.Categorical(logits=logits.float()).log_prob(labels)
    torch.testing.assert_close(got, want)


def test_entropy_matches_categorical():
    logits = 3 * torch.randn(2, 4, 11, generator=torch.Generator().manual_seed(1))
    got = entropy_from_logits(logits)
    torch.testing.assert_close(got, torch.distributions.Categorical(logits=logits).entropy())
    assert entropy_from_logits(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8))  # uniform


def test_entropy_with_masked_vocab_is_finite_with_finite_grad():
    logits = torch.tensor([[[0.0, 0.0, -math.inf, -math.inf]]], requires_grad=True)
    ent = entropy_from_logits(logits)
    assert ent.item() == pytest.approx(math.log(2))
    ent.sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("batches, std", [
    ([[0.0, 0.0, 0.0]], 1.0),  # no spread yet: scores are left as they are (0 / 0 was NaN)
    ([[1.0, 1.0], [1.0, 1.0]], 1.0),
    ([[0.0, 1.0]], 0.5),
    ([[0.0, 0.0], [1.0, 1.0]], 0.5),  # the same as one batch of all four
])
def test_running_reward_std_is_finite_and_matches_the_population_std(batches, std):
    from engine.algorithms.ppo import RunningMoments

    moments = RunningMoments()
    for b in batches:
        moments.update(torch.tensor(b))
    assert moments.std == pytest.approx(std)
    assert torch.isfinite(torch.tensor(batches[-1]) / moments.std).all()
