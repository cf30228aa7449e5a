"""pass@k, maj@k and rerank@k curves over stored samples, with bootstrap bands over problems.

Input is a samples DataFrame as `Store.samples()` returns it: one row per sample with at least
problem_id, sample_idx (-1 = the greedy completion), answer (None = no final answer) and correct.
Greedy rows never enter pass@k / maj@k / rerank@k; they give `maj@1` in `training_curves`, as in
Havrilla et al. 2024 (maj@1 = greedy accuracy).

Which answer is right: pass@k reads the `correct` column (the task's own judgement). maj@k needs
the reference answer itself: taken from a `references` mapping when given, else from any row of
the problem with correct == 1 (greedy rows included). A problem no row solved and with no given
reference scores maj@k = 0, as it would anyway: no sample can vote for the right answer.

Bands: percentile bootstrap over problems (resample problems with replacement, recompute the mean
curve, take the (1-ci)/2 and (1+ci)/2 quantiles), seeded, so a figure is deterministic. They
measure problem-sampling noise only; maj@k's subset resampling adds at most ~0.5/sqrt(256*P).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.evaluation.metrics import N_RESAMPLES, _encode, _maj_at_ks, pass_at_k

Scores = str | Sequence[float] | np.ndarray | Callable[[pd.DataFrame], Sequence[float]]
References = Mapping[str, str] | pd.Series | pd.DataFrame | None

N_BOOT = 1000  # bootstrap resamples of the problems
CI = 0.95


def sampled(samples: pd.DataFrame) -> pd.DataFrame:
    """The sampled rows (sample_idx >= 0), ordered by problem then sample index."""
    rows = samples[samples["sample_idx"] >= 0]
    return rows.sort_values(["problem_id", "sample_idx"], kind="stable")


def reference_answers(samples: pd.DataFrame, references: References = None) -> dict[str, str]:
    """problem_id -> reference answer: the given mapping (a dict, a Series indexed by problem_id,
    or a problems DataFrame with problem_id and answer columns) else answers of correct rows."""
    if isinstance(references, pd.DataFrame):
        return dict(zip(references["problem_id"], references["answer"].astype(str)))
    if references is not None:
        return {str(p): str(a) for p, a in dict(references).items()}
    solved = samples[(samples["correct"].fillna(0) == 1) & samples["answer"].notna()]
    return solved.groupby("problem_id", sort=False)["answer"].first().to_dict()


def score_column(samples: pd.DataFrame, scores: Scores) -> np.ndarray:
    """Per-row scores for rerank@k: a column name, an array aligned with the rows, or a function
    of the DataFrame (e.g. `orm_scorer`)."""
    if isinstance(scores, str):
        if scores not in samples.columns:
            raise ValueError(f"rerank: no score column {scores!r} in the samples ({', '.join(samples.columns)})")
        values = samples[scores].to_numpy(dtype=float)
    else:
        values = np.asarray(scores(samples) if callable(scores) else scores, dtype=float)
    if values.shape != (len(samples),):
        raise ValueError(f"rerank: need one score per sample ({len(samples)}), got shape {values.shape}")
    return values


def orm_scorer(orm, prompts: Mapping[str, str]) -> Callable[[pd.DataFrame], np.ndarray]:
    """A scorer for rerank@k from an outcome reward model (anything with
    `.score(prompts, completions) -> (N,) probabilities`, e.g. engine.algorithms.orm's) and the
    prompt of each problem_id."""
    def score(samples: pd.DataFrame) -> np.ndarray:
        return orm.score([prompts[p] for p in samples["problem_id"]], samples["text"].tolist())
    return score


def per_problem_curves(samples: pd.DataFrame, ks: Sequence[int] | None = None,
                       references: References = None, scores: Scores | None = None,
                       seed: int = 0, n_resamples: int = N_RESAMPLES) -> dict[str, pd.DataFrame]:
    """{"pass": (P, K), "maj": (P, K), ["rerank": (P, K)]} DataFrames, rows = problem_id,
    columns = k. ks defaults to every k from 1 to n (the fewest samples any problem has).

    pass: the unbiased estimator (metrics.pass_at_k) from the `correct` column.
    maj: expected majority-vote accuracy over random k-subsets (metrics' tie rule: ties split the
      credit, abstentions never win), exact at k = 1 and k = n.
    rerank: rerank@k = expected accuracy of the answer of the top-scored sample (that has an
      answer) among a random k-subset, as `orm.rerank_choice` picks it (ties go to the lower
      sample_idx). Computed exactly, not by resampling: with the answered samples ranked by
      score, the one of rank r is the pick iff it is in the subset and none ranked above it is,
      which has probability C(n-1-r, k-1) / C(n, k).
    """
    samples = samples.reset_index(drop=True)  # positions, so that score arrays line up
    rows = sampled(samples)
    if rows.empty:
        raise ValueError("curves: no sampled rows (sample_idx >= 0) to compute curves from")
    rows = rows.assign(_hit=(rows["correct"].fillna(0) == 1).to_numpy())
    if scores is not None:
        rows = rows.assign(_score=score_column(rows, _align_scores(samples, rows, scores)))
    groups = rows.groupby("problem_id", sort=True)
    problems = list(groups.groups)
    n = groups.size().to_numpy()
    ks = list(range(1, int(n.min()) + 1)) if ks is None else [int(k) for k in ks]
    for k in ks:
        if not 1 <= k <= n.min():
            raise ValueError(f"curves: k={k} is outside [1, n] where n={int(n.min())} is the fewest "
                             f"samples of any problem (pass@k needs k <= n)")
    c = groups["_hit"].sum().to_numpy().astype(np.int64)
    out = {"pass": pd.DataFrame(_pass_table(n, c, ks), index=problems, columns=ks)}

    refs = reference_answers(samples, references)
    answers = rows["answer"].astype(object).where(rows["answer"].notna(), None).tolist()
    starts = np.concatenate([[0], np.cumsum(n)])  # rows are sorted by problem, like the groups
    encoded = [_encode(answers[starts[i]:starts[i + 1]], refs.get(p)) for i, p in enumerate(problems)]
    maj = np.zeros((len(problems), len(ks)))
    for size in np.unique(n):  # one batch per sample count
        idx = np.flatnonzero(n == size)
        ids = np.stack([encoded[i][0] for i in idx])
        ref = np.array([encoded[i][1] for i in idx])
        by_k = _maj_at_ks(ids, ref, ks, n_resamples, seed)
        maj[idx] = np.stack([by_k[k] for k in ks], axis=1)
    out["maj"] = pd.DataFrame(maj, index=problems, columns=ks)

    if scores is not None:
        rerank = np.zeros((len(problems), len(ks)))
        for i, (_, g) in enumerate(groups):
            rerank[i] = _rerank_exact(g["_score"].to_numpy(), g["answer"].notna().to_numpy(), g["_hit"].to_numpy(), ks)
        out["rerank"] = pd.DataFrame(rerank, index=problems, columns=ks)
    return out


def rerank_at_ks(samples: pd.DataFrame, scores: Scores, ks: Sequence[int]) -> dict[int, float]:
    """{k: rerank@k} averaged over problems, exactly as per_problem_curves computes it (no maj@k,
    no bands): `reasonlab eval --orm` with `orm_scorer`, which scores the sampled rows only."""
    samples = samples.reset_index(drop=True)
    rows = sampled(samples)
    if rows.empty:
        raise ValueError("rerank: no sampled rows (sample_idx >= 0) to rerank")
    rows = rows.assign(_score=score_column(rows, _align_scores(samples, rows, scores)))
    per_problem = [_rerank_exact(g["_score"].to_numpy(), g["answer"].notna().to_numpy(),
                                 (g["correct"].fillna(0) == 1).to_numpy(), ks)
                   for _, g in rows.groupby("problem_id", sort=True)]
    return {int(k): float(v) for k, v in zip(ks, np.mean(per_problem, axis=0))}


def _align_scores(samples: pd.DataFrame, rows: pd.DataFrame, scores: Scores) -> Scores:
    """Scores for `rows`, a subset of `samples` (positional index): a column name or a function
    applies to any rows; an array aligned with `samples` is cut to the subset."""
    if isinstance(scores, str) or callable(scores):
        return scores
    values = np.asarray(scores, dtype=float)
    if values.shape != (len(samples),):
        raise ValueError(f"rerank: need one score per sample ({len(samples)}), got shape {values.shape}")
    return values[rows.index.to_numpy()]


def _pass_table(n: np.ndarray, c: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """(P, K) pass@k, computed once per distinct (n, c) pair: with n = 96 there are at most 97."""
    pairs, inverse = np.unique(np.stack([n, c], 1), axis=0, return_inverse=True)
    table = np.stack([pass_at_k(pairs[:, 0], pairs[:, 1], k) for k in ks], axis=1)  # (pairs, K)
    return table[inverse.ravel()]


@lru_cache(maxsize=16)
def _rerank_weights(n: int) -> np.ndarray:
    """(n, n) W[k-1, r] = P(the sample ranked r is the top-ranked one of a random k-subset)
    = C(n-1-r, k-1) / C(n, k), from log-gamma so that n in the thousands cannot overflow."""
    from scipy.special import gammaln  # scipy is imported on first use: training never needs it

    k, r = np.arange(1, n + 1)[:, None], np.arange(n)[None, :]
    log_w = (gammaln(n - r) - gammaln(k) - gammaln(np.maximum(n - r - k + 1, 1))
             - gammaln(n + 1) + gammaln(k + 1) + gammaln(n - k + 1))
    return np.where(n - 1 - r >= k - 1, np.exp(log_w), 0.0)


def _rerank_exact(scores: np.ndarray, answered: np.ndarray, correct: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """rerank@k for one problem's n samples, for each k in ks. Samples without an answer are never
    picked: they rank last with correct = 0, so they only ever fill subsets."""
    n = len(scores)
    # rank answered samples by score (desc), ties by position (asc); unanswered go last
    order = np.lexsort((np.arange(n), -np.nan_to_num(scores, nan=-np.inf), ~answered))
    hit = (correct & answered)[order].astype(float)  # (n,) correct by rank
    return _rerank_weights(n)[np.asarray(ks) - 1] @ hit


def bootstrap_band(values: np.ndarray, n_boot: int = N_BOOT, ci: float = CI, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) over axis 0 of (P, ...) per-problem values: the mean and a percentile
    bootstrap interval from resampling the P problems with replacement."""
    values = np.asarray(values, dtype=float)
    P = len(values)
    if P == 0:
        raise ValueError("bootstrap: need at least one problem")
    flat = values.reshape(P, -1)
    # each resample as multiplicities of the P problems: (B, P) @ (P, K) gives every resampled mean
    weights = np.random.default_rng(seed).multinomial(P, np.full(P, 1 / P), size=n_boot)
    means = weights @ flat / P  # (B, K)
    lo, hi = np.quantile(means, [(1 - ci) / 2, (1 + ci) / 2], axis=0)
    shape = values.shape[1:]
    return flat.mean(0).reshape(shape), lo.reshape(shape), hi.reshape(shape)


def curve_table(samples: pd.DataFrame, ks: Sequence[int] | None = None, references: References = None,
                scores: Scores | None = None, n_boot: int = N_BOOT, ci: float = CI, seed: int = 0,
                n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """pass@k, maj@k (and rerank@k when `scores` is given) for every k in ks (default 1..n), the
    mean over problems with a bootstrap band: long format with columns
    metric ("pass" | "maj" | "rerank"), k, value, lo, hi, problems. One problem's samples give
    that problem's curves (the band then collapses onto the value)."""
    tables = per_problem_curves(samples, ks, references, scores, seed, n_resamples)
    parts = []
    for metric, table in tables.items():
        mean, lo, hi = bootstrap_band(table.to_numpy(), n_boot, ci, seed)
        parts.append(pd.DataFrame({"metric": metric, "k": table.columns.to_numpy(dtype=int), "value": mean,
                                   "lo": lo, "hi": hi, "problems": len(table)}))
    return pd.concat(parts, ignore_index=True)


def by_checkpoint(samples: pd.DataFrame):
    """(checkpoint_id, step, rows) per checkpoint in step order; rows without a checkpoint_id
    (training rollouts) group by step alone."""
    keys = samples[["checkpoint_id", "step"]].drop_duplicates().sort_values(["step", "checkpoint_id"])
    for checkpoint_id, step in keys.itertuples(index=False):
        same_ckpt = samples["checkpoint_id"].isna() if pd.isna(checkpoint_id) else samples["checkpoint_id"] == checkpoint_id
        yield (None if pd.isna(checkpoint_id) else int(checkpoint_id)), int(step), samples[same_ckpt & (samples["step"] == step)]


def checkpoint_curves(samples: pd.DataFrame, ks: Sequence[int] | None = None, references: References = None,
                      scores: Scores | None = None, n_boot: int = N_BOOT, ci: float = CI, seed: int = 0
                      ) -> pd.DataFrame:
    """`curve_table` for each checkpoint in the samples (e.g. `Store.samples(run_id=r, kind="eval")`),
    with checkpoint_id and step columns added: pass@k vs k, one curve per checkpoint."""
    samples, parts = samples.reset_index(drop=True), []
    for checkpoint_id, step, rows in by_checkpoint(samples):
        table = curve_table(rows, ks, references, None if scores is None else _align_scores(samples, rows, scores),
                            n_boot, ci, seed)
        parts.append(table.assign(checkpoint_id=checkpoint_id, step=step))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["metric", "k", "value", "lo", "hi", "problems", "checkpoint_id", "step"])


def training_curves(samples: pd.DataFrame, k: int | None = None, references: References = None,
                    scores: Scores | None = None, n_boot: int = N_BOOT, ci: float = CI, seed: int = 0
                    ) -> pd.DataFrame:
    """Metrics vs training step, one row per (checkpoint, metric): maj@1 (greedy accuracy, when
    greedy rows exist), pass@1, pass@K, maj@K (and rerank@K with scores), K = k or each
    checkpoint's n. Columns: checkpoint_id, step, metric, value, lo, hi, problems. This is where
    "pass@96 saturates early while maj@1 keeps rising" shows."""
    samples, parts = samples.reset_index(drop=True), []
    for checkpoint_id, step, rows in by_checkpoint(samples):
        n = int(sampled(rows).groupby("problem_id").size().min()) if (rows["sample_idx"] >= 0).any() else 0
        K = n if k is None else k
        if n:
            table = curve_table(rows, sorted({1, K}), references,
                                None if scores is None else _align_scores(samples, rows, scores), n_boot, ci, seed)
            table = table[(table["k"] == K) | (table["metric"] == "pass")]
            table = table.assign(metric=table["metric"] + "@" + table["k"].astype(str)).drop(columns="k")
            parts.append(table.assign(checkpoint_id=checkpoint_id, step=step))
        greedy = rows[rows["sample_idx"] < 0]
        if not greedy.empty:
            solved = (greedy["correct"].fillna(0) == 1).groupby(greedy["problem_id"]).mean()
            mean, lo, hi = bootstrap_band(solved.to_numpy(), n_boot, ci, seed)
            parts.append(pd.DataFrame([{"metric": "maj@1", "value": float(mean), "lo": float(lo), "hi": float(hi),
                                        "problems": len(solved), "checkpoint_id": checkpoint_id, "step": step}]))
    columns = ["checkpoint_id", "step", "metric", "value", "lo", "hi", "problems"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns].sort_values(["step", "metric"], ignore_index=True)
