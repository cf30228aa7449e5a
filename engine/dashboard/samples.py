"""Samples for the dashboard: the problems of a view (run, kind, step) with their solve rates,
one problem's samples and solution tree, and one problem over training."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.config.task import TaskSpec
from engine.dashboard.runs import TEXT_COLUMNS, checkpoints_table
from engine.errors import ReasonlabError
from engine.evaluation import solution_tree
from engine.store import Store


# -- samples: problems, trees, one problem over training --------------------------------------


def sample_steps(store: Store, run_id: int, kind: str) -> list[int]:
    """Steps of a run with samples of this kind; for "eval", its evaluated checkpoints."""
    if kind == "eval":
        table = checkpoints_table(store, run_id)
        return table.loc[table["evaluated"].astype(bool), "step"].astype(int).tolist()
    return store.sample_steps(run_id, kind)["step"].astype(int).tolist()


@lru_cache(maxsize=8)
def _problem_index(task: str, split: str, n: int, options: tuple = ()) -> dict:
    from engine.tasks import get_task

    return {p.id: p for p in get_task(task, **dict(options)).problems(split, n)}


def problems_by_id(task: str, split: str, ids: Sequence[str], options: tuple = ()):
    """problem_id -> Problem for ids of the form "<split>-<i>" (every task's); `options` are the
    task's (data file, generator...) as sorted (name, value) pairs. Ids the task cannot regenerate
    (a data file since moved) are left out, so pages show the id alone."""
    idx = [int(i.rsplit("-", 1)[1]) for i in ids if i.rsplit("-", 1)[-1].isdigit()]
    if not idx:
        return {}
    n = 1 << max(max(idx) + 1, 64).bit_length()  # round up, so nearby requests share a cache entry
    try:
        return _problem_index(task, split, n, options)
    except ReasonlabError:
        return {}


def view_version(store: Store, run_id: int, kind: str, step: int) -> tuple:
    """Changes whenever a view's samples may have changed (a resumed run redoes the steps after
    its last checkpoint), so pages key their cached views on it."""
    if kind == "eval":
        table = checkpoints_table(store, run_id)
        return tuple(table.loc[table["step"] == step, ["checkpoint_id", "created_at", "evaluated"]].itertuples(index=False))
    return store.metrics_version(run_id)


def run_task_spec(store: Store, run_id: int) -> TaskSpec:
    """The run's task as stored (whatever version stored it)."""
    return TaskSpec.from_stored((store.get_run(run_id) or {}).get("config"))


def run_task(store: Store, run_id: int) -> str:
    return run_task_spec(store, run_id).name


def run_task_options(store: Store, run_id: int) -> tuple:
    """The run's task options (data files, generator...) as sorted (name, value) pairs."""
    return tuple(sorted(run_task_spec(store, run_id).options().items()))


@lru_cache(maxsize=16)
def _analysis_task(name: str, options: tuple):
    from engine.tasks import TASKS, get_task

    try:
        return get_task(name, **dict(options))
    except ReasonlabError:  # a data file since moved, reasoning-gym uninstalled, a task since renamed
        return TASKS.get(name, TASKS["jsonl"])  # a family's step methods read the text alone


def _task_spec(store: Store, run_id: int) -> tuple:
    """(name, options) of a run's task, hashable (TaskSpec.key)."""
    return run_task_spec(store, run_id).key()


def analysis_task(store: Store, run_id: int):
    """The run's own task, rebuilt from its stored config, for splitting its solutions into steps
    (trees, distinct step sequences); when it cannot be rebuilt, its family's class, whose step
    methods need no data (an unknown family: free text, one step per line)."""
    return _analysis_task(*_task_spec(store, run_id))


def problem_table(store: Store, run_id: int, kind: str, step: int) -> pd.DataFrame:
    """One row per problem of a view: problem_id, split, samples, correct, solve_rate (of the
    samples; of the greedy solution for a problem that has no others, as an imported greedy
    evaluation), greedy_correct (None: no greedy solution), distinct_answers, status ("solved" by
    greedy decoding, or without a greedy solution by most samples; else "unsolved", or "never
    solved" when no sample was correct), question."""
    table = store.problem_summary(run_id, kind, step)
    if table.empty:
        return table.assign(solve_rate=[], status=[], question=[])
    table["solve_rate"] = table["correct"] / table["samples"].where(table["samples"] > 0)
    table["solve_rate"] = table["solve_rate"].fillna(table["greedy_correct"].astype(float))
    greedy = table["greedy_correct"]
    solved = greedy.fillna(0).astype(float).eq(1) | (greedy.isna() & (table["solve_rate"] > 0.5))
    table["status"] = np.where(solved, "solved", np.where(table["correct"] > 0, "unsolved", "never solved"))
    task, options = run_task(store, run_id), run_task_options(store, run_id)
    questions: dict[str, str] = {}
    for split, rows in table.groupby("split"):
        found = problems_by_id(task, split, rows["problem_id"].tolist(), options)
        questions.update({pid: found[pid].question for pid in rows["problem_id"] if pid in found})
    table["question"] = table["problem_id"].map(questions).fillna("")
    # numeric order within a split: test-2 before test-10
    order = table["problem_id"].str.rsplit("-", n=1).str[-1]
    table = table.assign(_n=pd.to_numeric(order, errors="coerce")).sort_values(["split", "_n", "problem_id"])
    return table.drop(columns="_n").reset_index(drop=True)


PROBLEM_FILTERS = ("all", "solved", "unsolved", "never solved")


def filter_problems(table: pd.DataFrame, status: str = "all", contains: str = "") -> pd.DataFrame:
    """Problems of a `problem_table` with a status ("unsolved" includes "never solved") whose
    question or id contains the text (case-insensitive)."""
    if status == "unsolved":
        table = table[table["status"] != "solved"]
    elif status != "all":
        table = table[table["status"] == status]
    if contains:
        text = table["question"] + " " + table["problem_id"]
        table = table[text.str.contains(contains, case=False, regex=False)]
    return table


def filter_samples(samples: pd.DataFrame, correctness: str = "all", answers: Sequence[str] = (),
                   contains: str = "") -> pd.DataFrame:
    """Samples that are "correct" / "wrong" (or "all"), whose final answer is one of `answers`
    ("no answer" for none; empty: any), and whose text contains the given text."""
    ok = samples["correct"].fillna(0) == 1
    if correctness in ("correct", "wrong"):
        samples = samples[ok if correctness == "correct" else ~ok]
    if answers:
        samples = samples[samples["answer"].fillna("no answer").isin(list(answers))]
    if contains:
        samples = samples[samples["text"].str.contains(contains, case=False, regex=False)]
    return samples


def distinct_texts(samples: pd.DataFrame, limit: int = 5) -> pd.DataFrame:
    """The most frequent distinct solutions among some samples: text, count, correct."""
    groups = samples.assign(ok=samples["correct"].fillna(0) == 1).groupby("text", sort=False)
    table = groups.agg(count=("ok", "size"), correct=("ok", "first")).reset_index()
    return table.sort_values("count", ascending=False, kind="stable").head(limit).reset_index(drop=True)


def problem_info(store: Store, run_id: int, split: str, problem_id: str) -> dict:
    """question, answer and reference solution of a problem ({} when the task cannot tell)."""
    p = problems_by_id(run_task(store, run_id), split, [problem_id], run_task_options(store, run_id)).get(problem_id)
    return {} if p is None else {"question": p.question, "answer": p.answer, "reference": p.reference}


def problem_samples(store: Store, run_id: int, kind: str, step: int, problem_id: str) -> pd.DataFrame:
    """One problem's samples of a view, with their texts, greedy row first. `attrs["task"]` is the
    run's task spec (name, options), so `tree` splits them with the run's own task."""
    rows = store.sample_rows(TEXT_COLUMNS, run_id=run_id, kind=kind, step=step, problem_ids=[problem_id])
    rows = rows.sort_values("sample_idx", kind="stable").reset_index(drop=True)
    rows.attrs["task"] = _task_spec(store, run_id)
    return rows


def tree(samples: pd.DataFrame, min_count: int = 1, task=None) -> pd.DataFrame:
    """The problem's solution tree (sampled rows; the greedy one is left out, unless it is all
    there is: an imported greedy evaluation), split into steps by `task` (a task or its name), else
    by the run's task that `problem_samples` recorded, else the built-in task."""
    if task is None and "task" in samples.attrs:
        task = _analysis_task(*samples.attrs["task"])
    greedy_only = "sample_idx" in samples.columns and not (samples["sample_idx"] >= 0).any()
    return solution_tree(samples, splitter=task or "multistep", min_count=min_count, greedy=greedy_only)


def node_label(node: pd.Series) -> str:
    indent = "· " * int(node["depth"])
    return f"{indent}{node['label']}  ({int(node['count'])} samples, {node['frac_correct']:.0%} correct)"


def node_samples(samples: pd.DataFrame, nodes: pd.DataFrame, node_id: str) -> pd.DataFrame:
    """The samples whose solutions pass through a tree node."""
    members = nodes.set_index("id").at[node_id, "samples"]
    return samples[samples["sample_idx"].isin(members)]


def problem_history(store: Store, run_id: int, problem_id: str, kind: str = "eval") -> pd.DataFrame:
    """The same problem at every step of a run: step, samples, solve_rate, distinct_answers,
    greedy_correct, greedy (the greedy text, or the most frequent sample when there is none),
    top_answer."""
    rows = store.sample_rows(["step", "sample_idx", "text", "answer", "correct"], run_id=run_id, kind=kind,
                             problem_ids=[problem_id])
    records = []
    for step, g in rows.groupby("step", sort=True):
        drawn = g[g["sample_idx"] >= 0]
        greedy = g[g["sample_idx"] < 0]
        answers = drawn["answer"].dropna()
        records.append({
            "step": int(step), "samples": len(drawn),
            "solve_rate": float((drawn["correct"].fillna(0) == 1).mean()) if len(drawn) else None,
            "distinct_answers": int(answers.nunique()),
            "top_answer": answers.mode().iloc[0] if len(answers) else None,
            "greedy_correct": None if greedy.empty else bool(greedy["correct"].iloc[0] == 1),
            "greedy": greedy["text"].iloc[0] if len(greedy) else (drawn["text"].mode().iloc[0] if len(drawn) else ""),
        })
    return pd.DataFrame(records, columns=["step", "samples", "solve_rate", "distinct_answers", "top_answer",
                                          "greedy_correct", "greedy"])


def answer_distribution(store: Store, run_id: int, problem_id: str, kind: str = "eval") -> pd.DataFrame:
    """How often each final answer was drawn at every step (answer "no answer" when none)."""
    counts = store.answer_counts(run_id, problem_id, kind)
    return counts.assign(answer=counts["answer"].fillna("no answer"), correct=counts["correct"].astype(bool))
