"""Table-driven tests for engine.evaluation.metrics: pass@k, majority vote, maj@k, curves."""

from fractions import Fraction
from math import comb

import numpy as np
import pytest

from engine.evaluation import curves, ks_up_to, maj_at_k, majority_vote, pass_at_k


def exact_pass_at_k(n, c, k):
    return 1 - Fraction(comb(n - c, k), comb(n, k))


@pytest.mark.parametrize(
    "n, c, k",
    [
        (1, 0, 1), (1, 1, 1), (5, 0, 1), (5, 0, 5), (5, 5, 1), (5, 5, 5),  # c = 0 -> 0, c = n -> 1
        (5, 1, 1), (5, 1, 5), (5, 2, 3), (5, 3, 3), (5, 4, 2),  # k = n and n - c < k -> 1
        (10, 3, 2), (20, 1, 10), (96, 7, 1), (96, 7, 16), (96, 50, 64), (96, 95, 96),
    ],
)
def test_pass_at_k_matches_exact_binomials(n, c, k):
    got = pass_at_k(n, c, k)
    assert isinstance(got, float)
    assert got == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "n, c, k, want", [(7, 0, 3, 0.0), (7, 7, 3, 1.0), (7, 5, 3, 1.0), (7, 2, 7, 1.0)]
)
def test_pass_at_k_edges_are_exact(n, c, k, want):
    assert pass_at_k(n, c, k) == want


@pytest.mark.parametrize(
    "n, c, k",
    [(1000, 1, 1), (1000, 1, 500), (1000, 3, 100), (1000, 500, 10), (1000, 990, 10), (5000, 2, 7)],
)
def test_pass_at_k_large_n_is_stable(n, c, k):
    got = pass_at_k(n, c, k)
    assert np.isfinite(got)
    assert got == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-10)


@pytest.mark.parametrize(
    "n, c, k",
    [
        ([10, 20, 96], [0, 5, 96], 4),
        (np.array([[8, 9], [10, 11]]), np.array([[1, 2], [3, 11]]), 8),
        (96, np.arange(97), 16),  # scalar n broadcast against an array of c
    ],
)
def test_pass_at_k_arrays_match_scalars(n, c, k):
    got = pass_at_k(n, c, k)
    nb, cb = np.broadcast_arrays(np.asarray(n), np.asarray(c))
    assert isinstance(got, np.ndarray) and got.shape == nb.shape
    want = [pass_at_k(int(ni), int(ci), k) for ni, ci in zip(nb.flat, cb.flat)]
    np.testing.assert_array_equal(got.ravel(), want)


@pytest.mark.parametrize(
    "n, c, k, message",
    [
        (5, 2, 6, "exceeds"),
        (5, 2, 0, ">= 1"),
        (5, 2, -1, ">= 1"),
        (5, 6, 2, "c"),
        (5, -1, 2, "c"),
        ([5, 3], [1, 1], 4, "exceeds"),
        ([5, 3], [1, 4], 2, "c"),
        (5.5, 2, 2, "integers"),
        (5, 2.0, 2, "integers"),
        (5, 2, 2.0, "integer"),
        (5, 2, True, "integer"),
    ],
)
def test_pass_at_k_rejects_bad_input(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


@pytest.mark.parametrize(
    "answers, counts, winners",
    [
        (["1", "2", "1"], {"1": 2, "2": 1}, ("1",)),
        (["1", "2"], {"1": 1, "2": 1}, ("1", "2")),
        ([None, None, "3"], {"3": 1}, ("3",)),  # abstentions never win over a real vote
        ([None, None], {}, ()),
        ([], {}, ()),
    ],
)
def test_majority_vote_counts_and_winners(answers, counts, winners):
    vote = majority_vote(answers)
    assert vote.counts == counts and vote.winners == winners


@pytest.mark.parametrize(
    "answers, reference, want",
    [
        (["1", "2", "1"], "1", 1.0),
        (["1", "2", "1"], "2", 0.0),
        (["1", "2"], "1", 0.5),  # a two-way tie splits the credit
        (["1", "2", "3", "3", "2", "1"], "1", 1 / 3),
        ([None, None, "3"], "3", 1.0),
        ([None, None, "3"], "4", 0.0),
        ([None, None], "1", 0.0),  # every sample abstains
    ],
)
def test_majority_vote_accuracy_and_maj_at_n(answers, reference, want):
    assert majority_vote(answers).accuracy(reference) == pytest.approx(want)
    assert maj_at_k(answers, reference, len(answers)) == pytest.approx(want)


@pytest.mark.parametrize(
    "answers, reference",
    [
        (["1", "2", None, "1", "3"], "1"),
        ([None] * 4, "1"),
        (["7"] * 3 + ["8"] * 5, "7"),
        (["a", "b", "c"], "z"),
    ],
)
def test_maj_at_1_is_fraction_correct(answers, reference):
    assert maj_at_k(answers, reference, 1) == sum(a == reference for a in answers) / len(answers)


@pytest.mark.parametrize(
    "answers, reference, k, want",
    [
        (["1"] * 10, "1", 4, 1.0),
        (["2"] * 10, "1", 4, 0.0),
        ([None] * 10, "1", 4, 0.0),
        (["1"] + [None] * 9, "1", 5, 0.5),  # right whenever the one real vote is in the subset
        (["1", "2", "2"], "1", 2, 1 / 3),  # {1,2}: tie -> 1/2, twice; {2,2}: 0 -> (1/2+1/2+0)/3
    ],
)
def test_maj_at_k_monte_carlo(answers, reference, k, want):
    assert maj_at_k(answers, reference, k, n_resamples=4000) == pytest.approx(want, abs=0.03)


def test_maj_at_k_is_deterministic_for_a_seed():
    rng = np.random.default_rng(3)
    answers = [None if x == 0 else str(x) for x in rng.integers(0, 5, 40)]
    first = maj_at_k(answers, "1", 8, seed=7)
    assert maj_at_k(answers, "1", 8, seed=7) == first
    assert any(maj_at_k(answers, "1", 8, seed=s) != first for s in range(1, 5))


@pytest.mark.parametrize("k", [0, 4, 2.0])
def test_maj_at_k_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        maj_at_k(["1", "2", "3"], "1", k)


def test_curves_match_per_problem_functions():
    problems = [
        ["1", "2", "1", None, "1", "3", "2", "2"],
        ["5", "5", None, None, "4", "4", "4", "5"],
        [None] * 8,
        ["9", "8", "7", "9"],  # fewer samples: its own batch
    ]
    references = ["1", "4", "1", "9"]
    ks = [1, 2, 3, 4]
    got = curves(problems, references, ks, seed=5)
    assert list(got) == [f"{m}@{k}" for k in ks for m in ("pass", "maj")]
    for k in ks:
        c = [sum(a == r for a in ans) for ans, r in zip(problems, references)]
        want_pass = np.mean([pass_at_k(len(a), ci, k) for a, ci in zip(problems, c)])
        want_maj = np.mean([maj_at_k(a, r, k, seed=5) for a, r in zip(problems, references)])
        assert got[f"pass@{k}"] == pytest.approx(want_pass)
        assert got[f"maj@{k}"] == pytest.approx(want_maj)


@pytest.mark.parametrize(
    "problems, references, ks",
    [
        ([["1", "2"]], ["1"], [3]),  # k beyond the smallest sample count
        ([["1", "2"]], ["1", "2"], [1]),  # one reference per problem
        ([], [], [1]),
    ],
)
def test_curves_rejects_bad_input(problems, references, ks):
    with pytest.raises(ValueError):
        curves(problems, references, ks)


@pytest.mark.parametrize(
    "K, ks",
    [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (64, [1, 2, 4, 8, 16, 32, 64]),
     (96, [1, 2, 4, 8, 16, 32, 64, 96]), (100, [1, 2, 4, 8, 16, 32, 64, 100])],
)
def test_ks_up_to(K, ks):
    assert ks_up_to(K) == ks


def test_ks_up_to_rejects_zero():
    with pytest.raises(ValueError):
        ks_up_to(0)


def test_maj_at_n_over_many_problems_is_each_ones_majority_vote():
    """The batched k = n path (every sample votes, no resampling) problem by problem."""
    from engine.evaluation.metrics import _encode, _maj_at_ks

    rng = np.random.default_rng(11)
    problems = [[None if x == 0 else str(x) for x in rng.integers(0, rng.integers(2, 6), 12)] for _ in range(40)]
    references = [str(rng.integers(1, 6)) for _ in problems]
    encoded = [_encode(a, r) for a, r in zip(problems, references)]
    ids, ref = np.stack([e[0] for e in encoded]), np.array([e[1] for e in encoded])
    got = _maj_at_ks(ids, ref, [1, 6, 12], n_resamples=64, seed=0)
    want = [majority_vote(a).accuracy(r) for a, r in zip(problems, references)]
    np.testing.assert_allclose(got[12], want)
    assert len(set(np.round(want, 3))) > 2  # wins, losses and split ties all occur
    np.testing.assert_allclose(got[1], [sum(x == r for x in a) / 12 for a, r in zip(problems, references)])
    assert ((0 <= got[6]) & (got[6] <= 1)).all()
