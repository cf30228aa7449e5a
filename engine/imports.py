"""Samples made by other tools, imported into the store as an evaluation-only run (algo "import"),
so that every analysis page works on them without training. The files' formats and how each line
is read: engine/import_formats.py.

Scoring. A sample with no `correct` is scored by the run's task, as reasonlab's own evaluation
scores (`#### N` strict extraction; the stored answer is the task's extraction). lm-eval's
per-filter metrics (exact_match) are kept in the checkpoint's metrics under "lm_eval" for
reference; `correct` is always the task's own check. The task: `--task`, else gsm8k for lm-eval
files; for plain JSONL, the built-in task (multistep) when every line names one of its problem ids
(`test-17`) and none gives a question, else a question/answer file task (jsonl).

Problems. A file task's problems (question, reference answer) are written, one per line, to
`problems.jsonl` in the run's own directory, and the run's config points its task at that file
(data and eval_data), so the pages show them as they show any file task's; problem ids are
`<split>-<i>`, i the line of that file (lm-eval documents in doc_id order). Deleting the run
deletes that copy and never the imported file; the run's checkpoint row (step 0) names the run's
directory, which holds no model: nothing loads or resumes one.

Every line is read and checked, and every sample scored, before anything is written to the store:
a bad line is a ReasonlabError naming the file, the line and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from engine import jobs, workspace
from engine.config.task import TaskSpec
from engine.errors import ReasonlabError
from engine.evaluation.curves import per_problem_curves
from engine.evaluation.metrics import ks_up_to
from engine.import_formats import Source, bad_line, read, same_answer
from engine.tasks import answers, get_task
from engine.tasks.base import score_safely
from engine.tasks.files import PARSERS, BadRecord

TASKS = ("gsm8k", "jsonl", "multistep")
FILE_SPLITS = ("train", "test", "all")  # a file task's splits: each is the whole problems file here
# the built-in task's problem ids, up to the 100,000th of a split (generating them takes ~40 us each)
BUILTIN_ID = re.compile(r"(train|test|ood)-(\d{1,5})")
PROBLEMS_FILE = "problems.jsonl"
UNKNOWN = "?"  # a problem's answer when no line gives one (its samples all carry `correct`)


# -- the run: task, problems, scored sample rows ------------------------------------------------


@dataclass
class Plan:
    """What an import writes: its task and split, the sample rows (without run, checkpoint, step,
    kind) and the checkpoint's metrics; for a file task, the problems file written so far."""

    source: Source
    task: str
    split: str
    rows: list[dict]
    metrics: dict
    problems: int
    copy: Path | None = None


def plan(source: Source, scratch: Path, task: str | None = None, split: str | None = None) -> Plan:
    """Choose the task, build its problems (a file task's in a problems file in directory
    `scratch`) and score every sample: everything an import checks, with no store."""
    task = choose_task(source, task)
    order = _problem_order(source)
    if task == "multistep":
        split, problems, copy = *_builtin_problems(source, order, split), None
    else:
        split = split or "test"
        if split not in FILE_SPLITS:
            raise ReasonlabError(f"unknown split {split!r} for task {task}; choose one of {', '.join(FILE_SPLITS)}")
        copy = _problems_file(source, order, task, Path(scratch))
        problems = dict(zip(order, get_task(task, data=str(copy), eval_data=str(copy)).problems(split)))
    scorer = get_task(task, **({} if copy is None else {"data": str(copy), "eval_data": str(copy)}))  # (file cached)
    rows, unjudged = [], 0
    for key in order:
        problem, drawn, scores = problems[key], 0, {}  # a problem's repeated texts are scored once
        for s in source.problems[key]:
            if s.text not in scores:
                scores[s.text] = score_safely(scorer, problem, s.text)
            score = scores[s.text]
            unjudged += score.unjudged and s.correct is None
            correct = score.correct if s.correct is None else s.correct
            rows.append({"task": task, "split": split, "problem_id": problem.id,
                         "sample_idx": -1 if s.greedy else drawn, "text": s.text, "answer": score.answer,
                         "correct": int(correct), "reward": float(correct), "n_tokens": s.n_tokens, "logprob": None})
            drawn += not s.greedy
    metrics = {**checkpoint_metrics(rows), "split": split, "problems": len(order), "unjudged": int(unjudged),
               "imported": source.format, **({"lm_eval": source.lm_eval} if source.lm_eval else {})}
    return Plan(source, task, split, rows, metrics, len(order), copy)


def choose_task(source: Source, task: str | None) -> str:
    """--task, else gsm8k (lm-eval), the built-in task (its problem ids, no questions) or jsonl."""
    if task is not None and task not in TASKS:
        raise ReasonlabError(f"import scores with task {', '.join(TASKS)}, not {task!r}")
    if source.format == "lm-eval":
        if task == "multistep":
            raise ReasonlabError("an lm-eval file's problems are its documents: import it with task gsm8k or jsonl")
        return task or "gsm8k"
    builtin = not source.questions and all(s.key[0] == "id" and BUILTIN_ID.fullmatch(s.key[1]) for s in source.samples)
    if task == "multistep" and not builtin:
        s = next((s for s in source.samples if s.key[0] != "id" or not BUILTIN_ID.fullmatch(s.key[1])), None)
        if s is None:
            raise ReasonlabError(f"{source.path}: the built-in task's problems have their own questions; leave out "
                                 "'question' to import its problem ids with task multistep")
        raise bad_line(source.path, s.line, "not one of the built-in task's problem ids (train-N, test-N or ood-N, "
                                        "N below 100000)")
    return task or ("multistep" if builtin else "jsonl")


def _problem_order(source: Source) -> list[tuple]:
    """Problems in file order (lm-eval documents by doc_id)."""
    keys = list(source.problems)
    return sorted(keys, key=lambda k: k[1]) if source.format == "lm-eval" else keys


def _builtin_problems(source: Source, order: list[tuple], split: str | None) -> tuple[str, dict]:
    ids = {k: BUILTIN_ID.fullmatch(k[1]) for k in order}
    split = split or ids[order[0]].group(1)
    if other := next((k for k in order if ids[k].group(1) != split), None):
        line = source.problems[other][0].line
        raise bad_line(source.path, line, f"problem {other[1]} is not of split {split}: import one split per file")
    from engine.tasks.multistep import MultiStep

    generated = MultiStep().problems(split, max(int(m.group(2)) for m in ids.values()) + 1)
    problems = {k: generated[int(ids[k].group(2))] for k in order}
    for key, (line, given) in source.references.items():
        if not answers.equivalent(same_answer(given), problems[key].answer):
            raise bad_line(source.path, line, f"answer {given!r} is not built-in problem {key[1]}'s "
                                          f"({problems[key].answer}); give the questions and import with --task jsonl")
    return split, problems


def _problems_file(source: Source, order: list[tuple], task: str, scratch: Path) -> Path:
    """The problems as a file task's JSONL ({"question", "answer"} per line, in id order), each
    checked by that task's own parser first so that a bad one names the imported file's line."""
    lines = []
    for key in order:
        mine = source.problems[key]
        if key not in source.questions:
            raise bad_line(source.path, mine[0].line, f"problem {key[1]!r} has no question: give 'question' (or import "
                                                  "the built-in task's problem ids with --task multistep)")
        line, reference = source.references.get(key, (mine[0].line, None))
        if reference is None:
            unscored = next((s for s in mine if s.correct is None), None)
            if unscored is not None:
                raise bad_line(source.path, unscored.line, "no 'correct' given and no 'answer' to score it against")
            reference = next((a for s in mine if s.correct for a in [answers.extract_strict(s.text)] if a), UNKNOWN)
            reference = f"#### {reference}" if task == "gsm8k" and reference != UNKNOWN else reference
        record = {"question": source.questions[key], "answer": reference}
        try:
            PARSERS[task](record, ("question", "answer"))
        except BadRecord as e:
            raise bad_line(source.path, line, f"{e} (task {task})") from None
        lines.append(json.dumps(record, ensure_ascii=False))
    path = scratch / PROBLEMS_FILE
    try:
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as e:
        raise ReasonlabError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def checkpoint_metrics(rows: list[dict]) -> dict:
    """pass@k and maj@k (k = 1, 2, 4, ... up to the fewest samples of a problem) from the sampled
    rows, as reasonlab's evaluation reports them, and maj@1 from the greedy rows, only when there are any."""
    table = pd.DataFrame(rows, columns=["problem_id", "sample_idx", "answer", "correct"])
    drawn, greedy = table[table["sample_idx"] >= 0], table[table["sample_idx"] < 0]
    metrics: dict = {}
    if not drawn.empty:
        n = int(drawn.groupby("problem_id").size().min())
        ks = ks_up_to(n)
        curves = per_problem_curves(table, ks)
        metrics.update({f"pass@{k}": float(curves["pass"][k].mean()) for k in ks})
        metrics.update({f"maj@{k}": float(curves["maj"][k].mean()) for k in ks if k > 1})  # maj@1 is greedy's
        metrics["k"] = n
    if not greedy.empty:
        metrics["maj@1"] = float((greedy["correct"] == 1).mean())
    return metrics


# -- writing it ---------------------------------------------------------------------------------


@dataclass
class Imported:
    """What an import made: the run and a summary."""

    run_id: int
    source: Path
    format: str
    task: str
    split: str
    problems: int
    samples: int
    greedy: int
    accuracy: float  # share of all imported samples (greedy ones included) that are correct
    metrics: dict

    def summary(self) -> list[str]:
        m = self.metrics
        lines = [f"imported {self.problems} problems, {self.samples} samples ({self.greedy} greedy) from {self.source} "
                 f"({self.format}, task {self.task}, split {self.split})",
                 f"accuracy {self.accuracy:.3f} of the samples correct · maj@1 "
                 + (f"{m['maj@1']:.3f}" if "maj@1" in m else "- (no greedy solution)")
                 + (f" · pass@{m['k']} {m['pass@' + str(m['k'])]:.3f}" if "k" in m else "")]
        if m.get("lm_eval"):
            lines.append("lm-eval's own: " + " · ".join(f"{k} {v:.3f}" for k, v in m["lm_eval"].items()))
        return lines


def import_file(store, path: str | Path, format: str | None = None, task: str | None = None,
                split: str | None = None, name: str | None = None) -> Imported:
    """Read, check and score a file's samples, then write them as one new finished run (algo
    "import"); nothing is written when any line is bad."""
    source = read(path, format)
    runs = workspace.ensure_home() / "runs"
    try:
        runs.mkdir(exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".import-", dir=runs))  # beside run directories: moved by a rename
    except OSError as e:
        raise ReasonlabError(f"cannot write in the workspace's {runs}: {e.strerror or e}") from None
    try:
        made = plan(source, scratch, task, split)
        run_id = write(store, made, name or source.path.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    correct = [r["correct"] for r in made.rows]
    return Imported(run_id, source.path, source.format, made.task, made.split, made.problems, len(made.rows),
                    sum(r["sample_idx"] < 0 for r in made.rows), sum(correct) / len(correct), made.metrics)


def write(store, made: Plan, name: str | None = None) -> int:
    """One finished run: its config (source, format, task, split), one checkpoint row at step 0
    naming the run's directory, the samples, the checkpoint's metrics last (the pages take a
    checkpoint with metrics as evaluated). A failure part way deletes what was written."""
    config = {"task": asdict(TaskSpec(made.task)), "eval_split": made.split, "split": made.split, "source": str(made.source.path),
              "format": made.source.format, "problems": made.problems, "samples": len(made.rows)}
    run_id = store.create_run(jobs.IMPORTED, config, name=name, total=0, status="finished")
    started = time.time()
    folder = jobs.run_dir(run_id)
    existed = folder.exists()
    try:
        if made.source.path.is_relative_to(folder.resolve()):
            raise ReasonlabError(f"{made.source.path} is inside run {run_id}'s directory {folder}, which deleting "
                                 "the run removes: move the file elsewhere first")
        store.update_run(run_id, started_at=started, phase="importing")
        folder.mkdir(parents=True, exist_ok=True)
        if made.copy is not None:
            os.replace(made.copy, folder / PROBLEMS_FILE)
            problems_file = str(folder / PROBLEMS_FILE)
            config["task"] = asdict(TaskSpec(made.task, data=problems_file, eval_data=problems_file))
        checkpoint_id = store.add_checkpoint(run_id, 0, folder)
        store.add_samples([{**row, "run_id": run_id, "checkpoint_id": checkpoint_id, "step": 0, "kind": "eval"}
                           for row in made.rows])
        store.update_checkpoint_metrics(checkpoint_id, made.metrics)
        store.log_metrics(run_id, 0, {f"eval/{k}": v for k, v in made.metrics.items()
                                      if k.startswith(("maj@", "pass@"))})
        store.update_run(run_id, config=config, finished_at=time.time(), progress=1.0, phase="done")
    except BaseException as e:
        try:
            store.delete_run(run_id)
        finally:
            if existed:
                (folder / PROBLEMS_FILE).unlink(missing_ok=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        if isinstance(e, (OSError, sqlite3.Error)):  # a full disk, a store locked too long: said in one line
            raise ReasonlabError(f"could not write the imported run (nothing was kept): "
                                 f"{getattr(e, 'strerror', None) or e}") from None
        raise
    return run_id
