"""pass@k, majority vote and maj@k over sampled final answers: pure numpy functions.

An answer is a string the caller has already normalised, or None when no final answer could be
extracted from a sample (an abstention). A sample is correct when its answer == the reference.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Answers = Sequence[str | None]

N_RESAMPLES = 256  # random k-subsets per maj@k estimate: std error <= 0.5 / 16 per problem


def pass_at_k(n, c, k: int):
    """Unbiased pass@k of Chen et al. 2021: 1 - C(n-c, k) / C(n, k), the chance that a random
    k-subset of n samples, c of them correct, holds at least one correct sample.

    n and c are ints (returns a float) or integer arrays/lists, broadcast elementwise (returns an
    ndarray); k is one int with 1 <= k <= n. Gives 1.0 whenever n - c < k.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"pass_at_k: k must be an integer, got {k!r}")
    n, c = np.broadcast_arrays(_as_ints("n", n), _as_ints("c", c))
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got {k}")
    if (n < k).any():
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n.min()}")
    if ((c < 0) | (c > n)).any():
        raise ValueError(f"pass_at_k: c (correct samples) must lie in [0, n], got c={c}, n={n}")
    out = np.array([_pass_at_k(int(ni), int(ci), int(k)) for ni, ci in zip(n.flat, c.flat)])
    return float(out[0]) if n.ndim == 0 else out.reshape(n.shape)


def _as_ints(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool or a.dtype.kind not in "iu":
        raise ValueError(f"pass_at_k: {name} must be integers, got {x!r}")
    return a.astype(np.int64)


def _pass_at_k(n: int, c: int, k: int) -> float:
    if n - c < k:
        return 1.0
    if c == 0:
        return 0.0
    # 1 - prod(1 - k / i) over i in (n-c, n], the product summed as logs so small values keep
    # their digits; no binomial is ever formed, so n in the thousands cannot overflow.
    return float(-np.expm1(np.log1p(-k / np.arange(n - c + 1, n + 1)).sum()))


@dataclass(frozen=True)
class Vote:
    """The outcome of one majority vote."""

    counts: dict[str, int]  # answer -> votes, in first-seen order; abstentions are not votes
    winners: tuple[str, ...]  # the answers tied for the most votes; empty when all abstain

    def accuracy(self, reference: str) -> float:
        """Expected accuracy under the tie rule: each of m tied winners is chosen w.p. 1/m."""
        return self.winners.count(reference) / len(self.winners) if self.winners else 0.0


def majority_vote(answers: Answers) -> Vote:
    """Count the votes; abstentions (None) never win.

    Tie rule: when m answers tie for the most votes, each is taken as the choice with probability
    1/m, so the expected accuracy is (# correct among the tied) / m. If every sample abstains
    there is no winner and the accuracy is 0.
    """
    counts = dict(Counter(a for a in answers if a is not None))
    top = max(counts.values(), default=0)
    return Vote(counts, tuple(a for a, v in counts.items() if v == top))


def maj_at_k(
    answers: Answers, reference: str, k: int, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> float:
    """Expected accuracy of a majority vote over k of the n samples, drawn without replacement.

    Exact for k == 1 (fraction of samples that are correct; abstentions count 0) and k == n (one
    vote over all samples). Otherwise the mean over n_resamples random k-subsets drawn with a fixed
    seed, so the result is deterministic. Ties follow majority_vote's rule.
    """
    _check_k(k, len(answers))
    ids, ref = _encode(answers, reference)
    return float(_maj_at_ks(ids[None], np.array([ref]), [k], n_resamples, seed)[k][0])


def curves(
    answers_per_problem: Sequence[Answers],
    references: Sequence[str],
    ks: Sequence[int],
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> dict[str, float]:
    """Mean over problems of pass@k and maj@k for every k in ks: {"pass@1": ..., "maj@1": ...}.

    For problem i, c = number of its samples whose answer == references[i]. Equal to averaging
    pass_at_k and maj_at_k (same seed) over the problems; problems may have different sample counts.
    """
    if len(answers_per_problem) != len(references) or not references:
        raise ValueError(
            f"curves: need one reference per problem and at least one problem, got "
            f"{len(answers_per_problem)} answer lists and {len(references)} references"
        )
    for k in ks:
        _check_k(k, min(len(a) for a in answers_per_problem))
    encoded = [_encode(a, r) for a, r in zip(answers_per_problem, references)]
    n = np.array([len(ids) for ids, _ in encoded])
    c = np.array([(ids == ref).sum() if ref >= 0 else 0 for ids, ref in encoded])
    maj = {k: np.zeros(len(encoded)) for k in ks}
    for size in np.unique(n):  # one batch per sample count
        rows = np.flatnonzero(n == size)
        ids = np.stack([encoded[i][0] for i in rows])
        ref = np.array([encoded[i][1] for i in rows])
        for k, acc in _maj_at_ks(ids, ref, ks, n_resamples, seed).items():
            maj[k][rows] = acc
    out = {}
    for k in ks:
        out[f"pass@{k}"] = float(np.mean(pass_at_k(n, c, k)))
        out[f"maj@{k}"] = float(maj[k].mean())
    return out


def ks_up_to(K: int) -> list[int]:
    """1, 2, 4, ... below K, then K itself: ks_up_to(96) == [1, 2, 4, 8, 16, 32, 64, 96]."""
    if K < 1:
        raise ValueError(f"ks_up_to: K must be >= 1, got {K}")
    return [2**i for i in range(K.bit_length()) if 2**i < K] + [K]


def _check_k(k: int, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n={n}] (the number of samples), got {k!r}")


def _encode(answers: Answers, reference: str) -> tuple[np.ndarray, int]:
    """Answers as vote ids 0..u-1 in first-seen order, abstentions as -1; the reference's id, or
    -1 when no sample gave it."""
    index: dict[str, int] = {}
    ids = [-1 if a is None else index.setdefault(a, len(index)) for a in answers]
    return np.array(ids, dtype=np.int64), index.get(reference, -1)


def _maj_at_ks(
    ids: np.ndarray, ref: np.ndarray, ks: Sequence[int], n_resamples: int, seed: int
) -> dict[int, np.ndarray]:
    """Expected majority-vote accuracy per problem for each k in ks, as {k: (P,) array}.

    ids: (P, n) vote ids, -1 = abstain; ref: (P,) the reference's vote id, -1 = never sampled.
    A k-subset is the first k positions of a random permutation of the n positions, so votes grow
    one position at a time and every k reuses the same R permutations; k == n is thus exact. The
    same permutations serve every problem: samples are i.i.d., so positions are exchangeable.
    """
    P, n = ids.shape
    hit_ref = (ids == ref[:, None]) & (ref >= 0)[:, None]  # (P, n) sample is correct
    out = {1: hit_ref.mean(1)} if 1 in ks else {}
    if n in ks and n > 1:  # every sample votes: one vote per problem, no resampling
        out[n] = _vote_accuracy(_vote_counts(ids), ref)
    wanted = {k for k in ks if 1 < k < n}
    if not wanted:
        return out
    perms = np.argsort(np.random.default_rng(seed).random((n_resamples, n)), axis=1)  # (R, n)
    # (P, R, 1 + answers) votes so far; slot 0 collects abstentions, answer id a sits in slot a + 1
    counts = np.zeros((P, n_resamples, max(ids.max(), 0) + 2), np.int16 if n < 2**15 else np.int32)
    p, r = np.arange(P)[:, None], np.arange(n_resamples)[None, :]
    for j in range(max(wanted)):
        counts[p, r, ids[:, perms[:, j]] + 1] += 1
        if j + 1 in wanted:
            out[j + 1] = _vote_accuracy(counts[..., 1:], ref).mean(1)
    return out


def _vote_counts(ids: np.ndarray) -> np.ndarray:
    """(P, n) vote ids -> (P, answers) votes per answer, abstentions (-1) left out."""
    P = ids.shape[0]
    counts = np.zeros((P, max(ids.max(), 0) + 2), np.int64)
    np.add.at(counts, (np.repeat(np.arange(P), ids.shape[1]), ids.ravel() + 1), 1)
    return counts[:, 1:]


def _vote_accuracy(votes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """votes (P, ..., answers) -> credit of the majority vote (P, ...): 1 / (answers tied for first)
    when the reference is among them, else 0; no votes at all (every sample abstained) scores 0."""
    top = votes.max(-1)
    n_top = (votes == top[..., None]).sum(-1)
    ref_index = np.clip(ref, 0, None).reshape(-1, *([1] * (votes.ndim - 1)))
    ref_votes = np.take_along_axis(votes, ref_index, axis=-1)[..., 0]
    won = (ref_votes == top) & (top > 0) & (ref >= 0).reshape(-1, *([1] * (votes.ndim - 2)))
    return won / n_top
