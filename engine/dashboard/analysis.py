"""Analyses for the dashboard: pass@k / maj@k / rerank@k curves (rerank by log-probability or by an
ORM), diversity over training and per problem, and two checkpoints compared."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.dashboard.orm import orm_path as orm_path_checked, orms, sample_scores  # noqa: F401 (orms re-exported)
from engine.dashboard.runs import CURVE_COLUMNS, checkpoints_table
from engine.dashboard.samples import analysis_task, problem_table, sample_steps
from engine.errors import ReasonlabError
from engine.evaluation import (aligned_samples, checkpoint_curves, checkpoint_diversity, compare_checkpoints,
                               diversity_by_checkpoint, training_curves)
from engine.store import Store


# -- curves ---------------------------------------------------------------------------------------


def curve_samples(store: Store, checkpoint_ids: Sequence[int]) -> pd.DataFrame:
    """The eval samples of some checkpoints, without their texts."""
    parts = [store.sample_rows(CURVE_COLUMNS, checkpoint_id=int(c), kind="eval") for c in checkpoint_ids]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CURVE_COLUMNS)


def k_grid(n: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, ... up to n, and n itself: evenly spread on a log axis, and an
    eighth of the work of every k from 1 to 96."""
    ks, k = {1, n}, 2
    while k < n:
        ks.update({k, k * 3 // 2})
        k *= 2
    return sorted(x for x in ks if x <= n)


def pass_at_k(store: Store, checkpoint_ids: Sequence[int], rerank: bool = False, n_boot: int = 200) -> pd.DataFrame:
    """pass@k and maj@k (and rerank@k by log-probability) against k for each checkpoint, with
    bootstrap bands: checkpoint_curves' table, plus a label column ("run 3 ei · step 2") and a
    scorer column (what ranked the rerank rows: "log-probability"; None on the other rows)."""
    samples = curve_samples(store, checkpoint_ids)
    return _checkpoint_table(store, samples, "logprob" if rerank else None, "log-probability", n_boot)


def orm_rerank(store: Store, checkpoint_ids: Sequence[int], orm_path: str, n_boot: int = 200) -> pd.DataFrame:
    """pass_at_k(rerank=True)'s table, with the rerank rows ranked by an outcome reward model's
    probability of correctness instead: rerank@k is the answer of the sample it scores highest
    among k, computed exactly as curves does for any scorer. The scorer column names the ORM
    ("ORM /abs/path"). Each checkpoint's samples are scored once (engine/dashboard/orm.py caches them)."""
    path = orm_path_checked(orm_path)
    parts = [store.sample_rows(["id", *CURVE_COLUMNS], checkpoint_id=int(c), kind="eval") for c in checkpoint_ids]
    parts = [p for p in parts if not p.empty]
    samples = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id", *CURVE_COLUMNS])
    scores = np.full(len(samples), np.nan)
    for checkpoint_id in samples["checkpoint_id"].unique():
        rows = (samples["checkpoint_id"] == checkpoint_id).to_numpy()
        scores[rows] = sample_scores(store, int(checkpoint_id), path).reindex(samples.loc[rows, "id"]).to_numpy()
    return _checkpoint_table(store, samples.drop(columns="id"), scores, f"ORM {path}", n_boot)


def _checkpoint_table(store: Store, samples: pd.DataFrame, scores, scorer: str, n_boot: int) -> pd.DataFrame:
    drawn = samples[samples["sample_idx"] >= 0]
    if drawn.empty:
        return pd.DataFrame(columns=["metric", "k", "value", "lo", "hi", "problems", "checkpoint_id", "step", "label",
                                     "scorer"])
    n = int(drawn.groupby(["checkpoint_id", "problem_id"]).size().min())
    table = checkpoint_curves(samples, ks=k_grid(n), scores=scores, n_boot=n_boot)
    if isinstance(scores, str):  # a column (logprob): a checkpoint without any (imported samples) is not ranked
        blank = drawn.groupby("checkpoint_id")[scores].apply(lambda s: s.isna().all())
        table = table[~((table["metric"] == "rerank") & table["checkpoint_id"].map(blank).fillna(False).astype(bool))]
    labels = checkpoints_table(store).set_index("checkpoint_id")["label"]
    return table.assign(label=table["checkpoint_id"].map(labels),
                        scorer=np.where(table["metric"] == "rerank", scorer, None))


def unranked(table: pd.DataFrame, checkpoint_ids: Sequence[int]) -> list[int]:
    """The checkpoints of a pass_at_k(rerank=True) table that have no rerank rows: their samples
    have no log-probabilities (imported ones), so nothing ranks them."""
    if table.empty:
        return []
    ranked = set(table.loc[table["metric"] == "rerank", "checkpoint_id"])
    return [int(c) for c in checkpoint_ids if c not in ranked]


def run_curves(store: Store, run_id: int, n_boot: int = 200) -> pd.DataFrame:
    """maj@1, pass@1, pass@K and maj@K against training step for a run's evaluated checkpoints."""
    evaluated = checkpoints_table(store, run_id)
    samples = curve_samples(store, evaluated[evaluated["evaluated"]]["checkpoint_id"].tolist())
    if samples.empty:
        return pd.DataFrame(columns=["checkpoint_id", "step", "metric", "value", "lo", "hi", "problems"])
    return training_curves(samples, n_boot=n_boot)


TRAINING_METRICS = ("maj@1", "pass@1", "pass@K", "maj@K")


def runs_training_curves(store: Store, run_ids: Sequence[int], n_boot: int = 200) -> pd.DataFrame:
    """run_curves of several runs in one table, to set runs side by side (EI against PPO for the
    same samples: the paper's comparison). Adds run_id, run (its label, with its K), samples_seen
    at each checkpoint (what the run had sampled when it saved it) and kind: the metric with K
    spelled as K (pass@K), since runs may sample different numbers of solutions."""
    parts = []
    for run_id in run_ids:
        run = store.get_run(int(run_id))
        curves = run_curves(store, int(run_id), n_boot=n_boot)
        if run is None or curves.empty:
            continue
        logged = store.metrics(int(run_id))
        seen = logged.dropna(subset=["samples_seen"]).groupby("step")["samples_seen"].max()
        K = max((int(m.split("@")[1]) for m in curves["metric"] if m.startswith("pass@")), default=1)
        name = f" {run['name']}" if run["name"] else ""
        parts.append(curves.assign(
            run_id=int(run_id), run=f"run {run_id} · {run['algo']}{name} (K={K})",
            samples_seen=curves["step"].map(seen),
            kind=curves["metric"].map(lambda m: m if m in ("maj@1", "pass@1") else m.split("@")[0] + "@K")))
    columns = ["run_id", "run", "checkpoint_id", "step", "samples_seen", "metric", "kind", "value", "lo", "hi", "problems"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


# -- diversity ------------------------------------------------------------------------------------


def problem_subset(store: Store, run_id: int, step: int, limit: int | None) -> list[str]:
    """The first `limit` problems (all when None) of a run's evaluation at a step."""
    ids = problem_table(store, run_id, "eval", step)["problem_id"].tolist()
    return ids if limit is None else ids[:limit]


def diversity_over_training(store: Store, run_id: int, problems: int | None = 100) -> pd.DataFrame:
    """Diversity means per evaluated checkpoint of a run, over its first `problems` problems
    (diversity needs every text, so a subset keeps a million-sample store responsive); step
    sequences are compared by the run's own task's step_signature."""
    steps = sample_steps(store, run_id, "eval")
    if not steps:
        return pd.DataFrame()
    ids = problem_subset(store, run_id, steps[0], problems)
    rows = store.sample_rows(["problem_id", "sample_idx", "text", "answer", "checkpoint_id", "step"],
                             run_id=run_id, kind="eval", problem_ids=ids)
    return diversity_by_checkpoint(rows, signature=analysis_task(store, run_id).step_signature)


def diversity_per_problem(store: Store, run_id: int, step: int, problems: int | None = 100) -> pd.DataFrame:
    """Every diversity measure for each of a checkpoint's first `problems` problems, with its
    solve rate."""
    ids = problem_subset(store, run_id, step, problems)
    rows = store.sample_rows(["problem_id", "sample_idx", "text", "answer", "correct"], run_id=run_id,
                             kind="eval", step=step, problem_ids=ids)
    if not (rows["sample_idx"] >= 0).any():  # none, or greedy solutions only: nothing to measure
        return pd.DataFrame()
    per_problem = checkpoint_diversity(rows, signature=analysis_task(store, run_id).step_signature).per_problem
    solve = rows[rows["sample_idx"] >= 0].groupby("problem_id")["correct"].apply(lambda s: float((s == 1).mean()))
    return per_problem.assign(solve_rate=per_problem["problem_id"].map(solve))


# -- two checkpoints --------------------------------------------------------------------------------


def comparison(store: Store, checkpoint_a: int, checkpoint_b: int, n_boot: int = 1000):
    """compare_checkpoints of two checkpoints' eval samples (texts not read)."""
    a = store.sample_rows(CURVE_COLUMNS, checkpoint_id=checkpoint_a, kind="eval")
    b = store.sample_rows(CURVE_COLUMNS, checkpoint_id=checkpoint_b, kind="eval")
    if a.empty or b.empty:
        raise ReasonlabError("one of the two checkpoints has no evaluation samples")
    try:
        return compare_checkpoints(a, b, n_boot=n_boot)
    except ValueError as e:  # e.g. evaluated on different problems
        raise ReasonlabError(str(e)) from None


def aligned(store: Store, checkpoint_a: int, checkpoint_b: int, problem_id: str) -> pd.DataFrame:
    """One problem's samples of two checkpoints side by side, with text diffs."""
    columns = ["problem_id", "sample_idx", "text", "answer", "correct"]
    a = store.sample_rows(columns, checkpoint_id=checkpoint_a, kind="eval", problem_ids=[problem_id])
    b = store.sample_rows(columns, checkpoint_id=checkpoint_b, kind="eval", problem_ids=[problem_id])
    return aligned_samples(a, b, problem_id)
