"""Re-score a run's stored samples without resampling: judge the texts again with another answer
extraction, or with the task's code as it is now, and compare the metrics before and after.

    strict       only a `#### N` line counts (GSM8K's format); numbers compared by value
    flexible     the last number in the text (lm-evaluation-harness's flexible-extract); by value
    math-verify  the final answer as math-verify's parse finds it, equal to the reference by
                 answers.equivalent (numbers by value, else math-verify's parse + verify: 1/2 = 0.5)
    task         the run's task rebuilt from its stored config, scoring as its code does now
                 ("another task version": what a fix to a task's extraction changes)

Each scorer is a pure function of (reference answer, completion text) -> (answer or None, correct);
`task` also reads the problem (a task's score may use its data). A correct answer is reported in
the reference's form, so equivalent answers vote together in maj@k (engine/tasks/files.py's rule).
The reference comes from the run's own task (problems_by_id): a sample whose problem cannot be
rebuilt (its data file moved) is left unjudged and counted in the re-scoring's `unscored`.

A re-scoring is rows of its own (tables rescorings and rescored_samples, engine/schema.py); the
samples' answer and correct are never touched. Running a scorer again makes a new re-scoring
rather than reusing a finished one: `task` depends on code that may have changed since, and a
re-scoring is cheap next to sampling. Samples stream in chunks of CHUNK (id order), each chunk's
verdicts one write transaction, so a million samples never sit in memory at once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence

import pandas as pd

from engine import __version__
from engine.dashboard.analysis import k_grid
from engine.dashboard.runs import checkpoints_table
from engine.dashboard.samples import _task_spec, problems_by_id
from engine.errors import ReasonlabError
from engine.evaluation import checkpoint_curves, training_curves
from engine.evaluation.curves import by_checkpoint
from engine.store import Store
from engine.tasks import answers, get_task
from engine.tasks.base import Problem, score_safely

Verdict = tuple[str | None, bool]  # (extracted answer or None, correct)
CHUNK = 20_000  # samples read, scored and written per transaction
MATH_VERIFY_CHARS = 1_000  # math-verify reads the end of a text only (where the answer is): bounded work
SCORERS = {
    "strict": "only a final `#### N` line counts (GSM8K's format), compared as numbers",
    "flexible": "the last number in the text (lm-eval's flexible-extract), compared as numbers",
    "math-verify": "math-verify finds the final answer and checks it is equivalent (1/2 = 0.5)",
    "task": "the run's task as its code is now (another task version)",
}
ACTIVE = ("queued", "running", "deleting")  # samples still coming or going
TABLE_COLUMNS = ["kind", "step", "checkpoint_id", "metric", "before", "after", "change", "right_to_wrong",
                 "wrong_to_right"]


# -- scorers: pure functions of (reference, text) --------------------------------------------------


def _reference_form(reference: str) -> str:
    return answers.normalise_number(reference) or reference.strip()


def strict(reference: str, text: str) -> Verdict:
    """The number on the `#### ` line (answers.extract_strict); a free-form `####` line is no number."""
    answer = answers.normalise_number(answers.extract_strict(text))
    return answer, answer is not None and answer == answers.normalise_number(reference)


def flexible(reference: str, text: str) -> Verdict:
    """The last number in the text (answers.extract_flexible), wherever it is."""
    answer = answers.extract_flexible(text)
    return answer, answer is not None and answer == answers.normalise_number(reference)


def math_verify(reference: str, text: str) -> Verdict:
    """math-verify's extraction of the final answer from the text's last MATH_VERIFY_CHARS
    characters, then answers.equivalent. math-verify's own timeouts use signal.alarm, which fails
    outside the main thread (Streamlit's pages run in threads), so they are off: its parse is
    bounded by the length it reads, and equivalent bounds what sympy is asked to verify."""
    from math_verify import parse

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" is our choice
    tail = answers.before_stop(text)[-MATH_VERIFY_CHARS:]
    try:
        found = [x for x in parse(tail, parsing_timeout=None) if isinstance(x, str) and x.strip()]
    except Exception:  # parse swallows its own errors; anything else on odd text is no answer
        found = []
    if not found:
        return None, False
    answer = answers.normalise_number(found[-1]) or found[-1].strip()
    if answers.equivalent(answer, reference):
        return _reference_form(reference), True
    return answer, False


REFERENCE_SCORERS: dict[str, Callable[[str, str], Verdict]] = {
    "strict": strict, "flexible": flexible, "math-verify": math_verify}


def task_scorer(task) -> Callable[[Problem, str], Verdict]:
    """The task's own judgement (task.score; a completion it cannot judge is wrong: score_safely)."""
    def score(problem: Problem, text: str) -> Verdict:
        s = score_safely(task, problem, text)
        return s.answer, bool(s.correct)
    return score


def scorer_for(name: str, task=None) -> Callable[[Problem, str], Verdict]:
    """A scorer by name as a function of (problem, text)."""
    check_scorer(name)
    if name == "task":
        return task_scorer(task)
    fn = REFERENCE_SCORERS[name]
    return lambda problem, text: fn(problem.answer, text)


def check_scorer(name: str) -> None:
    if name not in SCORERS:
        raise ReasonlabError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")


# -- re-scoring a run ------------------------------------------------------------------------------


def rescore(store: Store, run_id: int, scorer: str, progress: Callable[[int, int], None] | None = None,
            chunk: int = CHUNK) -> int:
    """Score every stored sample of a run (eval, eval_deep and rollouts) with `scorer`; returns the
    new re-scoring's id. `progress(done, total)` is called after each chunk. A run that is queued,
    running or being deleted is refused (its samples are still changing). On any failure the
    partial re-scoring is removed."""
    check_scorer(scorer)
    run = store.get_run(int(run_id))
    if run is None:
        raise ReasonlabError(f"no run {run_id} in {store.path}")
    if run["status"] in ACTIVE:
        raise ReasonlabError(f"run {run_id} is {run['status']}; re-score it once it has stopped")
    name, options = _task_spec(store, int(run_id))
    try:
        task = get_task(name, **dict(options))
    except ReasonlabError:
        task = None  # no problems either: every sample is left unscored, and counted
    judge = scorer_for(scorer, task)
    total, lo, hi = store.sample_id_range(int(run_id))
    spec = {"task": name, "task_options": dict(options), "reasonlab": __version__,
            **({"max_chars": MATH_VERIFY_CHARS} if scorer == "math-verify" else {})}
    rescoring_id = store.new_rescoring(int(run_id), scorer, spec)
    try:
        judged, unscored, problems = 0, 0, {}
        for rows in _sample_chunks(store, int(run_id), lo or 0, hi or 0, chunk):
            verdicts = _judge(rows, judge, problems, lambda split, ids: problems_by_id(name, split, ids, options))
            store.add_rescored_samples(rescoring_id, verdicts)
            judged, unscored = judged + len(verdicts), unscored + len(rows) - len(verdicts)
            if progress is not None:
                progress(judged + unscored, total)
        store.finish_rescoring(rescoring_id, judged, unscored)
    except BaseException as e:
        store.delete_rescoring(rescoring_id)
        if isinstance(e, sqlite3.IntegrityError):  # a sample or the run deleted meanwhile
            raise ReasonlabError(f"run {run_id} changed while it was being re-scored; re-score it again") from None
        raise
    return rescoring_id


def _sample_chunks(store: Store, run_id: int, lo: int, hi: int, chunk: int):
    """The run's samples (id, split, problem_id, text), `chunk` at a time in id order
    (Store.rescore_chunk says how SQLite reads them)."""
    last = lo - 1
    while last < hi:
        rows = store.rescore_chunk(run_id, last, hi, chunk)
        if rows.empty:
            return
        yield rows
        last = int(rows["id"].iloc[-1])


def _judge(rows: pd.DataFrame, judge, problems: dict, lookup) -> list[tuple[int, str | None, int]]:
    """(sample id, answer, correct) for the rows whose problem is known; `problems` caches
    (split, problem_id) -> Problem (None: cannot be rebuilt) across chunks. Identical texts of one
    problem (common: models repeat themselves) are judged once."""
    for split, ids in rows.groupby("split")["problem_id"]:
        new = [p for p in ids.unique() if (split, p) not in problems]
        if new:
            found = lookup(split, new)
            problems.update({(split, p): found.get(p) for p in new})
    out, memo = [], {}
    for sample_id, split, problem_id, text in rows.itertuples(index=False):
        problem = problems[(split, problem_id)]
        if problem is None:
            continue
        key = (split, problem_id, text)
        if key not in memo:
            memo[key] = judge(problem, text)
        answer, correct = memo[key]
        out.append((int(sample_id), answer, int(bool(correct))))
    return out


# -- reading re-scorings ---------------------------------------------------------------------------


def rescorings(store: Store, run_id: int) -> pd.DataFrame:
    """A run's finished re-scorings, newest first: id, scorer, options (dict), created_at, samples,
    unscored, label ("re-scoring 4 · flexible · 2026-12-04 10:31")."""
    table = store.finished_rescorings(int(run_id))
    table["options"] = table["options"].map(json.loads)
    table["label"] = [f"re-scoring {i} · {s} · {time.strftime('%Y-%m-%d %H:%M', time.localtime(t))}"
                      for i, s, t in zip(table["id"], table["scorer"], table["created_at"])]
    return table


def rescoring(store: Store, rescoring_id: int) -> dict:
    """One finished re-scoring's row (run_id, scorer, samples, unscored...); a clear error otherwise."""
    row = store.rescoring_row(int(rescoring_id))
    if row is None:
        raise ReasonlabError(f"no re-scoring {rescoring_id} in {store.path}")
    if pd.isna(row["finished_at"]):
        raise ReasonlabError(f"re-scoring {rescoring_id} has not finished (it is running, or was cut short)")
    return row


def scored_rows(store: Store, rescoring_id: int, kinds: Sequence[str] = ("eval", "eval_deep"),
                checkpoint_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """The samples of some kinds (and checkpoints) that a re-scoring judged, texts not read: kind,
    checkpoint_id, step, problem_id, sample_idx, answer, correct (the original scoring) and
    rescored_answer, rescored_correct (Store.rescored_rows says how SQLite reads them)."""
    run_id = int(rescoring(store, rescoring_id)["run_id"])
    # unordered: the curves sort by problem and sample
    return store.rescored_rows(rescoring_id, run_id, kinds, checkpoint_ids)


def _rescored(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with the re-scoring's answer and correct in place of the original ones."""
    return rows.assign(answer=rows["rescored_answer"], correct=rows["rescored_correct"])


def _right(column: pd.Series) -> pd.Series:
    return column.fillna(0) == 1


def _flips(checkpoint_id, step, rows: pd.DataFrame) -> dict:
    old, new = _right(rows["correct"]), _right(rows["rescored_correct"])
    return {"checkpoint_id": checkpoint_id, "step": step, "right_to_wrong": int((old & ~new).sum()),
            "wrong_to_right": int((~old & new).sum())}


def metrics_before_after(store: Store, run_id: int, rescoring_id: int, n_boot: int = 1) -> pd.DataFrame:
    """Per evaluated checkpoint (and deep evaluation), maj@1, pass@1, pass@K and maj@K under the
    original scores (before) and the re-scoring (after), their change, and how many of the
    checkpoint's samples changed verdict (right_to_wrong, wrong_to_right; greedy ones included).
    Both columns come from training_curves over the same samples: those the re-scoring judged.
    n_boot only sizes the bands, which this table leaves out."""
    row = rescoring(store, rescoring_id)
    if int(row["run_id"]) != int(run_id):
        raise ReasonlabError(f"re-scoring {rescoring_id} is of run {int(row['run_id'])}, not run {run_id}")
    rows = scored_rows(store, rescoring_id)
    parts = []
    for kind, group in rows.groupby("kind", sort=True):
        keys = ["checkpoint_id", "step", "metric"]
        before = training_curves(group, n_boot=n_boot)[keys + ["value"]]
        after = training_curves(_rescored(group), n_boot=n_boot)[keys + ["value"]]
        table = before.merge(after, on=keys, how="outer", suffixes=("_before", "_after"))
        table = table.rename(columns={"value_before": "before", "value_after": "after"})
        flips = pd.DataFrame([_flips(checkpoint_id, step, r) for checkpoint_id, step, r in by_checkpoint(group)])
        table = table.merge(flips, on=["checkpoint_id", "step"], how="left")
        parts.append(table.assign(kind=kind, change=table["after"] - table["before"]))
    if not parts:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    order = out["metric"].map(lambda m: ("maj@1", "pass@1").index(m) if m in ("maj@1", "pass@1")
                              else 2 if m.startswith("pass@") else 3)
    out = out.assign(_order=order).sort_values(["kind", "step", "_order"], kind="stable")
    return out[TABLE_COLUMNS].reset_index(drop=True)


def verdict_changes(store: Store, rescoring_id: int) -> pd.DataFrame:
    """How many samples of each kind (eval, eval_deep, rollout) the re-scoring judged, and how many
    it judged otherwise than the original scoring: kind, samples, right_to_wrong, wrong_to_right."""
    return store.verdict_changes(rescoring_id)


def rescored_curves(store: Store, rescoring_id: int, checkpoint_ids: Sequence[int], n_boot: int = 200) -> pd.DataFrame:
    """pass@k and maj@k against k for some checkpoints under both scorings: checkpoint_curves'
    table (metric, k, value, lo, hi, problems, checkpoint_id, step) with a label ("run 3 ei ·
    step 2") and a scoring column ("original" or "re-scored: <scorer>")."""
    row = rescoring(store, rescoring_id)
    rows = scored_rows(store, rescoring_id, kinds=("eval",), checkpoint_ids=list(checkpoint_ids))
    drawn = rows[rows["sample_idx"] >= 0]
    columns = ["metric", "k", "value", "lo", "hi", "problems", "checkpoint_id", "step", "label", "scoring"]
    if drawn.empty:  # no checkpoint chosen, or greedy solutions only
        return pd.DataFrame(columns=columns)
    ks = k_grid(int(drawn.groupby(["checkpoint_id", "problem_id"]).size().min()))
    original = checkpoint_curves(rows, ks=ks, n_boot=n_boot).assign(scoring="original")
    rescored = checkpoint_curves(_rescored(rows), ks=ks, n_boot=n_boot).assign(scoring=f"re-scored: {row['scorer']}")
    table = pd.concat([original, rescored], ignore_index=True)
    labels = checkpoints_table(store).set_index("checkpoint_id")["label"]
    return table.assign(label=table["checkpoint_id"].map(labels))[columns]
