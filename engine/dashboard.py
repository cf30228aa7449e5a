"""What the dashboard's pages show, as plain functions over the store (no Streamlit here).

Pages wrap these in `st.cache_data` loaders keyed by the workspace path, so every function takes
a `Store` (from `store_at`) and returns DataFrames, dicts or analysis tables small enough to
cache: per-problem summaries are aggregated in SQL, curves and diversity are computed here from
column-limited queries, and sample texts are read one problem at a time.

"A view" of samples is (run_id, kind, step): the evaluation samples of the checkpoint a run saved
at that step (kind "eval"), or the rollouts it trained on at that step (kind "rollout").
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from engine import jobs, workspace
from engine.errors import ReasonlabError
from engine.evaluation import (aligned_samples, checkpoint_curves, checkpoint_diversity, compare_checkpoints,
                               diversity_by_checkpoint, solution_tree, training_curves)
from engine.store import Store

ACTIVE = ("queued", "running")
CURVE_COLUMNS = ["problem_id", "sample_idx", "answer", "correct", "logprob", "checkpoint_id", "step"]
TEXT_COLUMNS = ["id", "problem_id", "sample_idx", "text", "answer", "correct", "reward", "logprob", "n_tokens"]


# -- the store ------------------------------------------------------------------------------------

_STORES: dict[str, Store] = {}


def store_at(home: str | Path) -> Store:
    """One open store per workspace, shared by the app's sessions (Store is thread-safe)."""
    path = str(Path(home) / "store.sqlite")
    if path not in _STORES:
        _STORES[path] = Store(path)  # creates the workspace if needed
    return _STORES[path]


# -- runs -----------------------------------------------------------------------------------------


def latest_metrics(checkpoints: pd.DataFrame) -> dict[int, dict]:
    """run_id -> the metrics of its newest evaluated checkpoint."""
    out: dict[int, dict] = {}
    for _, c in checkpoints.iterrows():  # ordered by run, step
        if c["metrics"]:
            out[int(c["run_id"])] = c["metrics"]
    return out


def runs_table(store: Store) -> pd.DataFrame:
    """Every run, newest first: id, name, algo, status, progress, step, total, phase, checkpoints,
    maj@1 (of its newest evaluated checkpoint), created (local time), error. Marks runs whose
    process died as interrupted first."""
    jobs.reconcile(store, spawn=False)
    runs = store.runs()
    columns = ["id", "name", "algo", "status", "progress", "step", "total", "phase", "checkpoints", "maj@1",
               "created", "error"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    checkpoints = store.checkpoints()
    latest = latest_metrics(checkpoints)
    counts = checkpoints.groupby("run_id").size()
    runs = runs.assign(
        checkpoints=[int(counts.get(r, 0)) for r in runs["id"]],
        **{"maj@1": [latest.get(int(r), {}).get("maj@1") for r in runs["id"]]},
        created=[time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in runs["created_at"]])
    runs[["name", "phase", "error"]] = runs[["name", "phase", "error"]].fillna("")
    return runs[columns].reset_index(drop=True)


def default_run(runs: pd.DataFrame) -> int:
    """Position in a `runs_table` of the newest run that has a checkpoint (else the newest)."""
    with_checkpoints = [i for i, n in enumerate(runs["checkpoints"]) if n > 0]
    return with_checkpoints[0] if with_checkpoints else 0


def run_label(run: dict | pd.Series) -> str:
    name = f" {run['name']}" if isinstance(run.get("name"), str) and run["name"] else ""
    return f"run {int(run['id'])} · {run['algo']}{name} · {run['status']}"


def run_detail(store: Store, run_id: int) -> dict:
    """The run row with eta_s (seconds left) and elapsed_s added."""
    jobs.reconcile(store, spawn=False)
    run = store.get_run(run_id)
    if run is None:
        raise ReasonlabError(f"no run {run_id} in this workspace")
    end = run["finished_at"] or time.time()
    return {**run, "eta_s": jobs.eta_s(run),
            "elapsed_s": end - run["started_at"] if run["started_at"] else None}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def run_metrics(store: Store, run_id: int) -> pd.DataFrame:
    """A run's logged metrics, long format (step, name, value, samples_seen, wall_time)."""
    return store.metrics(run_id)[["step", "name", "value", "samples_seen", "wall_time"]]


def run_log(store: Store, run: dict, metrics: pd.DataFrame, lines: int = 30) -> str:
    """The run's story as log lines, newest last: queued, started, every logged step with its
    main numbers, every evaluated checkpoint, how it ended."""
    def at(t):
        return time.strftime("%H:%M:%S", time.localtime(t))

    events = [(run["created_at"], f"queued {run['algo']} from {run['parent_checkpoint']}")]
    if run["started_at"]:
        events.append((run["started_at"], "started"))
    train = metrics[~metrics["name"].str.startswith("eval/")]
    keep = ["reward", "train/accuracy", "policy_loss", "approx_kl", "kl_ref", "sft/loss", "tokens_per_s"]
    for step, rows in train.groupby("step"):
        values = dict(zip(rows["name"], rows["value"]))
        shown = [f"{k} {_number(values[k])}" for k in keep if k in values and values[k] == values[k]]
        if shown:  # step 0 logs only its evaluation
            seen = int(rows["samples_seen"].max() or 0)
            events.append((rows["wall_time"].max(), " · ".join([f"step {step}", f"{seen:,} samples", *shown])))
    evals = metrics[metrics["name"].isin(["eval/maj@1"])]
    for _, e in evals.iterrows():
        events.append((e["wall_time"], f"checkpoint step {e['step']} evaluated · maj@1 {e['value']:.3f}"))
    if run["finished_at"]:
        why = f": {run['error']}" if run["error"] else ""
        events.append((run["finished_at"], f"{run['status']}{why}"))
    events.sort(key=lambda e: e[0] or 0)
    return "\n".join(f"{at(t)}  {text}" for t, text in events[-lines:])


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def worker_log_tail(lines: int = 40) -> str:
    """The last lines the background workers printed (warnings, crashes outside a run)."""
    path = workspace.home() / "logs" / "worker.log"
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def cancel_run(store: Store, run_id: int) -> str:
    return jobs.cancel(store, run_id)


def resume_run(store: Store, run_id: int) -> str:
    """Queue the run again and start a worker for it (as `reasonlab resume --detach`)."""
    jobs.resume(store, run_id)
    jobs.spawn_worker()
    return f"run {run_id} queued to resume from its last checkpoint"


# -- checkpoints ----------------------------------------------------------------------------------


def evaluated_checkpoints(store: Store) -> pd.DataFrame:
    """checkpoints_table's evaluated rows: the ones with samples to analyse."""
    table = checkpoints_table(store)
    return table[table["evaluated"]].reset_index(drop=True)


def checkpoints_table(store: Store, run_id: int | None = None) -> pd.DataFrame:
    """Checkpoints with their run: checkpoint_id, run_id, algo, step, path, evaluated, maj@1,
    pass@1, pass@K (K = the largest k evaluated), label ("run 3 ei · step 2"), created_at."""
    ckpts = store.checkpoints(run_id)
    columns = ["checkpoint_id", "run_id", "algo", "step", "path", "evaluated", "maj@1", "pass@1", "pass@K",
               "label", "created_at"]
    if ckpts.empty:
        return pd.DataFrame(columns=columns)
    algos = store.runs().set_index("id")["algo"]

    def top_pass(m):
        ks = [int(k[5:]) for k in (m or {}) if k.startswith("pass@") and k[5:].isdigit()]
        return m[f"pass@{max(ks)}"] if ks else None

    table = pd.DataFrame({
        "checkpoint_id": ckpts["id"].astype(int), "run_id": ckpts["run_id"].astype(int),
        "algo": [algos.get(r, "?") for r in ckpts["run_id"]], "step": ckpts["step"].astype(int),
        "path": ckpts["path"], "evaluated": ckpts["metrics"].map(bool),
        "maj@1": ckpts["metrics"].map(lambda m: (m or {}).get("maj@1")),
        "pass@1": ckpts["metrics"].map(lambda m: (m or {}).get("pass@1")),
        "pass@K": ckpts["metrics"].map(top_pass), "created_at": ckpts["created_at"]})
    table["label"] = [f"run {r} {a} · step {s}" for r, a, s in zip(table["run_id"], table["algo"], table["step"])]
    return table[columns]


def base_checkpoints() -> list[Path]:
    """Checkpoint directories directly under the workspace's checkpoints/ (e.g. base-tiny)."""
    root = workspace.checkpoints_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "config.json").is_file())


def start_points(store: Store) -> list[tuple[str, str]]:
    """(label, path) of every checkpoint a run can start from: the workspace's base models, then
    the runs' checkpoints (with their maj@1), each path once."""
    found = {str(p): p.name for p in base_checkpoints()}
    table = checkpoints_table(store)
    for label, path, step, maj in zip(table["label"], table["path"], table["step"], table["maj@1"]):
        if path not in found and (step > 0 or Path(path, "config.json").is_file()):
            found[path] = label if maj is None or maj != maj else f"{label} · maj@1 {maj:.3f}"
    return [(label, path) for path, label in found.items()]


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


def run_task(store: Store, run_id: int) -> str:
    run = store.get_run(run_id)
    return ((run or {}).get("config") or {}).get("task", "multistep")


def run_task_options(store: Store, run_id: int) -> tuple:
    """The run's task options (data files, generator...) as sorted (name, value) pairs."""
    from engine.tasks import task_options

    config = (store.get_run(run_id) or {}).get("config") or {}
    return tuple(sorted(task_options(config.get("task", "multistep"), config).items()))


def problem_table(store: Store, run_id: int, kind: str, step: int) -> pd.DataFrame:
    """One row per problem of a view: problem_id, split, samples, correct, solve_rate,
    greedy_correct, distinct_answers, status ("solved" by greedy decoding, else "unsolved", or
    "never solved" when no sample was correct), question."""
    table = store.problem_summary(run_id, kind, step)
    if table.empty:
        return table.assign(solve_rate=[], status=[], question=[])
    table["solve_rate"] = table["correct"] / table["samples"].where(table["samples"] > 0)
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
    """One problem's samples of a view, with their texts, greedy row first."""
    rows = store.sample_rows(TEXT_COLUMNS, run_id=run_id, kind=kind, step=step, problem_ids=[problem_id])
    return rows.sort_values("sample_idx", kind="stable").reset_index(drop=True)


def tree(samples: pd.DataFrame, min_count: int = 1) -> pd.DataFrame:
    """The problem's solution tree (sampled rows; the greedy one is left out)."""
    return solution_tree(samples, min_count=min_count)


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
    bootstrap bands: checkpoint_curves' table, plus a label column ("run 3 ei · step 2")."""
    samples = curve_samples(store, checkpoint_ids)
    drawn = samples[samples["sample_idx"] >= 0]
    if drawn.empty:
        return pd.DataFrame(columns=["metric", "k", "value", "lo", "hi", "problems", "checkpoint_id", "step", "label"])
    n = int(drawn.groupby(["checkpoint_id", "problem_id"]).size().min())
    table = checkpoint_curves(samples, ks=k_grid(n), scores="logprob" if rerank else None, n_boot=n_boot)
    labels = checkpoints_table(store).set_index("checkpoint_id")["label"]
    return table.assign(label=table["checkpoint_id"].map(labels))


def run_curves(store: Store, run_id: int, n_boot: int = 200) -> pd.DataFrame:
    """maj@1, pass@1, pass@K and maj@K against training step for a run's evaluated checkpoints."""
    evaluated = checkpoints_table(store, run_id)
    samples = curve_samples(store, evaluated[evaluated["evaluated"]]["checkpoint_id"].tolist())
    if samples.empty:
        return pd.DataFrame(columns=["checkpoint_id", "step", "metric", "value", "lo", "hi", "problems"])
    return training_curves(samples, n_boot=n_boot)


# -- diversity ------------------------------------------------------------------------------------


def problem_subset(store: Store, run_id: int, step: int, limit: int | None) -> list[str]:
    """The first `limit` problems (all when None) of a run's evaluation at a step."""
    ids = problem_table(store, run_id, "eval", step)["problem_id"].tolist()
    return ids if limit is None else ids[:limit]


def diversity_over_training(store: Store, run_id: int, problems: int | None = 100) -> pd.DataFrame:
    """Diversity means per evaluated checkpoint of a run, over its first `problems` problems
    (diversity needs every text, so a subset keeps a million-sample store responsive)."""
    steps = sample_steps(store, run_id, "eval")
    if not steps:
        return pd.DataFrame()
    ids = problem_subset(store, run_id, steps[0], problems)
    rows = store.sample_rows(["problem_id", "sample_idx", "text", "answer", "checkpoint_id", "step"],
                             run_id=run_id, kind="eval", problem_ids=ids)
    return diversity_by_checkpoint(rows)


def diversity_per_problem(store: Store, run_id: int, step: int, problems: int | None = 100) -> pd.DataFrame:
    """Every diversity measure for each of a checkpoint's first `problems` problems, with its
    solve rate."""
    ids = problem_subset(store, run_id, step, problems)
    rows = store.sample_rows(["problem_id", "sample_idx", "text", "answer", "correct"], run_id=run_id,
                             kind="eval", step=step, problem_ids=ids)
    if rows.empty:
        return pd.DataFrame()
    per_problem = checkpoint_diversity(rows).per_problem
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
