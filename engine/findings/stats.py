"""The statistics behind the findings' verdicts: pure functions over per-problem outcomes.

An *outcome table* is one checkpoint's evaluation, one row per problem (index: problem_id):
greedy (1.0 / 0.0 correct greedy answer: maj@1; NaN without a greedy row), c (correct samples),
n (samples). Comparisons between two checkpoints pair problems: only problems both evaluated
count, and the interval is a percentile bootstrap over those problems, pairs kept together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.evaluation.compare import paired_bootstrap
from engine.evaluation.curves import CI, bootstrap_band
from engine.evaluation.metrics import pass_at_k

MIN_PROBLEMS = 20  # fewer shared problems than this: "not enough problems to tell"
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% bootstrap interval, and how many problems (or points) it rests on."""

    value: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"

    def signed(self) -> str:
        return f"{self.value:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"

    @property
    def above_zero(self) -> bool:
        return self.lo > 0

    @property
    def below_zero(self) -> bool:
        return self.hi < 0

    def as_dict(self) -> dict:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}


def outcomes(samples: pd.DataFrame) -> pd.DataFrame:
    """One checkpoint's eval samples (problem_id, sample_idx, correct) -> its outcome table."""
    if samples.empty:
        return pd.DataFrame({"greedy": [], "c": [], "n": []}, index=pd.Index([], name="problem_id"))
    correct = samples["correct"].fillna(0).astype(float)
    drawn = samples["sample_idx"] >= 0
    by = samples["problem_id"]
    table = pd.DataFrame({"c": correct[drawn].groupby(by[drawn]).sum(), "n": drawn[drawn].groupby(by[drawn]).size()})
    greedy = correct[~drawn].groupby(by[~drawn]).max()
    table = table.join(greedy.rename("greedy"), how="outer")
    table[["c", "n"]] = table[["c", "n"]].fillna(0)
    table.index.name = "problem_id"
    return table[["greedy", "c", "n"]]


def per_problem(table: pd.DataFrame, metric: str) -> pd.Series:
    """A per-problem score: "maj@1" (greedy), "pass@k" (unbiased estimate from c of n; k <= n),
    or "solve" (c / n). Problems that lack what the metric needs are dropped."""
    if metric == "maj@1":
        return table["greedy"].dropna()
    rows = table[table["n"] > 0]
    if metric == "solve":
        return rows["c"] / rows["n"]
    k = int(metric.split("@")[1])
    rows = rows[rows["n"] >= k]
    return pd.Series(pass_at_k(rows["n"].to_numpy(int), rows["c"].to_numpy(int), k), index=rows.index, dtype=float)


def mean(values: pd.Series | np.ndarray, seed: int = 0) -> Interval | None:
    """The mean over problems with a bootstrap interval; None below MIN_PROBLEMS."""
    values = np.asarray(values, dtype=float)
    if len(values) < MIN_PROBLEMS:
        return None
    m, lo, hi = bootstrap_band(values, n_boot=N_BOOT, ci=CI, seed=seed)
    return Interval(float(m), float(lo), float(hi), len(values))


def paired(a: pd.Series, b: pd.Series, seed: int = 0) -> Interval | None:
    """Mean of a - b over the problems both have, with a paired bootstrap interval; None below
    MIN_PROBLEMS shared problems."""
    both = a.index.intersection(b.index)
    if len(both) < MIN_PROBLEMS:
        return None
    diff = a.loc[both].to_numpy(float) - b.loc[both].to_numpy(float)
    lo, hi = paired_bootstrap(diff, n_boot=N_BOOT, ci=CI, seed=seed)
    return Interval(float(diff.mean()), lo, hi, len(both))


def difference_of_changes(a0: pd.Series, a1: pd.Series, b0: pd.Series, b1: pd.Series, seed: int = 0) -> Interval | None:
    """(a1 - a0) - (b1 - b0) per problem, paired over the problems all four have: does metric a
    rise more than metric b between two checkpoints?"""
    both = a0.index.intersection(a1.index).intersection(b0.index).intersection(b1.index)
    if len(both) < MIN_PROBLEMS:
        return None
    d = (a1.loc[both] - a0.loc[both]) - (b1.loc[both] - b0.loc[both])
    lo, hi = paired_bootstrap(d.to_numpy(float), n_boot=N_BOOT, ci=CI, seed=seed)
    return Interval(float(d.mean()), lo, hi, len(both))


def pass_curves(table: pd.DataFrame, ks: list[int]) -> np.ndarray:
    """(P, len(ks)) per-problem pass@k for problems with at least max(ks) samples."""
    rows = table[table["n"] >= max(ks)]
    n, c = rows["n"].to_numpy(int), rows["c"].to_numpy(int)
    return np.stack([pass_at_k(n, c, k) for k in ks], axis=1) if len(rows) else np.zeros((0, len(ks)))


def crossover(base: pd.DataFrame, trained: pd.DataFrame, ks: list[int], seed: int = 0) -> dict | None:
    """Where the base's pass@k curve meets the trained model's (Yue et al. 2025), over the problems
    both evaluated with at least max(ks) samples: the smallest k with base pass@k >= trained
    pass@k (None: no crossover up to max(ks)), the share of bootstrap resamples of the problems
    that cross at all, and the percentile interval of the crossing k among those that do."""
    both = base.index.intersection(trained.index)
    b, t = pass_curves(base.loc[both], ks), pass_curves(trained.loc[both], ks)
    if len(b) != len(t) or len(b) < MIN_PROBLEMS:
        return None
    ks_arr = np.asarray(ks)

    def first_cross(diff_means: np.ndarray) -> np.ndarray:  # (B, K) -> (B,) crossing k or 0
        crossed = diff_means >= 0
        return np.where(crossed.any(1), ks_arr[crossed.argmax(1)], 0)

    diff = b - t  # (P, K)
    point = int(first_cross(diff.mean(0, keepdims=True))[0])
    weights = np.random.default_rng(seed).multinomial(len(diff), np.full(len(diff), 1 / len(diff)), size=N_BOOT)
    crossings = first_cross(weights @ diff / len(diff))
    hit = crossings[crossings > 0]
    lo, hi = (np.quantile(hit, [(1 - CI) / 2, (1 + CI) / 2]) if len(hit) else (None, None))
    return {"k": point or None, "share_crossing": float(len(hit) / N_BOOT),
            "k_lo": None if lo is None else int(lo), "k_hi": None if hi is None else int(hi),
            "base": b.mean(0).tolist(), "trained": t.mean(0).tolist(), "ks": list(ks), "problems": len(b)}


def solved_sets(base: pd.DataFrame, trained: pd.DataFrame) -> dict:
    """How many problems only the base, only the trained model, both or neither solved with any
    of its samples (pass@n)."""
    both = base.index.intersection(trained.index)
    b, t = base.loc[both, "c"] > 0, trained.loc[both, "c"] > 0
    return {"base_only": int((b & ~t).sum()), "trained_only": int((t & ~b).sum()), "both": int((b & t).sum()),
            "neither": int((~b & ~t).sum())}


def saturation_step(steps: list[int], values: list[float], share: float = 0.9) -> int | None:
    """The first step at which a metric has made `share` of its largest gain over its first value
    (the step where pass@K stops improving); None with fewer than two points."""
    if len(values) < 2:
        return None
    gain = max(values) - values[0]
    if gain <= 0:
        return steps[0]
    return next(s for s, v in zip(steps, values) if v - values[0] >= share * gain)


def entropy_fit(entropy: np.ndarray, accuracy: np.ndarray, seed: int = 0) -> dict | None:
    """Least squares of R = -a * exp(H) + b (Cui et al. 2025), linear in exp(H), with bootstrap
    intervals over the points for a, b and the ceiling b - a it predicts at H = 0; R^2 of the fit.
    None with fewer than 4 points or no spread in H."""
    H, R = np.asarray(entropy, float), np.asarray(accuracy, float)
    keep = np.isfinite(H) & np.isfinite(R)
    H, R = H[keep], R[keep]
    if len(H) < 4 or np.ptp(H) <= 1e-9:
        return None

    def fit(x, y):
        X = np.stack([-np.exp(x), np.ones_like(x)], 1)
        (a, b), *_ = np.linalg.lstsq(X, y, rcond=None)
        return a, b

    a, b = fit(H, R)
    pred = -a * np.exp(H) + b
    ss_tot = float(((R - R.mean()) ** 2).sum())
    r2 = 1 - float(((R - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(500):
        idx = rng.integers(0, len(H), len(H))
        if np.ptp(H[idx]) > 1e-9:
            boots.append(fit(H[idx], R[idx]))
    boots = np.asarray(boots)
    q = [(1 - CI) / 2, (1 + CI) / 2]
    a_lo, a_hi = np.quantile(boots[:, 0], q)
    c_lo, c_hi = np.quantile(boots[:, 1] - boots[:, 0], q)
    return {"a": Interval(float(a), float(a_lo), float(a_hi), len(H)),
            "ceiling": Interval(float(b - a), float(c_lo), float(c_hi), len(H)), "b": float(b), "r2": r2,
            "points": len(H)}


def wasted_groups(rollouts: pd.DataFrame) -> pd.DataFrame:
    """GRPO's groups with zero advantage: per step, the share of problems whose n samples are all
    correct or all wrong, beside p^n + (1 - p)^n for the step's mean solve rate p (what that share
    would be if every problem were equally hard). Columns: step, groups, n, wasted, expected, solve."""
    if rollouts.empty:
        return pd.DataFrame(columns=["step", "groups", "n", "wasted", "expected", "solve"])
    correct = rollouts.assign(correct=rollouts["correct"].fillna(0).astype(float))
    groups = correct.groupby(["step", "problem_id"])["correct"].agg(["sum", "size"]).reset_index()
    groups["wasted"] = ((groups["sum"] == 0) | (groups["sum"] == groups["size"])).astype(float)
    groups["solve"] = groups["sum"] / groups["size"]
    per_step = groups.groupby("step").agg(groups=("problem_id", "size"), n=("size", "median"),
                                          wasted=("wasted", "mean"), solve=("solve", "mean")).reset_index()
    p, n = per_step["solve"], per_step["n"]
    per_step["expected"] = p**n + (1 - p) ** n
    return per_step[["step", "groups", "n", "wasted", "expected", "solve"]]


def group_flags(rollouts: pd.DataFrame) -> np.ndarray:
    """1.0 per (step, problem) group whose samples are all correct or all wrong, else 0.0."""
    if rollouts.empty:
        return np.zeros(0)
    g = rollouts.assign(correct=rollouts["correct"].fillna(0).astype(float)).groupby(["step", "problem_id"])["correct"]
    s, size = g.sum(), g.size()
    return ((s == 0) | (s == size)).to_numpy(float)
