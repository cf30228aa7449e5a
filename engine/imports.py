"""Samples made by other tools, imported into the store as an evaluation-only run (algo "import"),
so that every analysis page works on them without training.

Formats (`--format`, else detected from the first line):

    lm-eval  lm-evaluation-harness's `--log_samples` output, `samples_<task>_<date>.jsonl`, as
             lm-eval 0.4.9.1 writes it (`lm_eval/evaluator.py` builds each line,
             `EvaluationTracker.save_results_samples` writes it): one JSON object per document
             and filter, {"doc_id", "doc", "target", "arguments": {"gen_args_0": {"arg_0":
             prompt, "arg_1": generation kwargs}}, "resps": [[response, ...]], "filtered_resps",
             "filter", "metrics", "doc_hash", "prompt_hash", "target_hash", <metric>: value}.
             A gsm8k-style task's doc has `question` and `answer` (a worked solution ending in
             `#### N`). Several filters (strict-match, flexible-extract) repeat a document's
             responses on one line each: they are taken once per document (and must agree).
             Several responses per document (`repeats`, self-consistency tasks) are its samples.
             Earlier 0.4.x files (no `filter`, `metrics` or hashes; `arguments` as a list of
             [prompt, kwargs] pairs) read the same: a document's lines must then agree too.
    jsonl    one sample per line: {"problem_id" or "question", "completion", "answer"?,
             "correct"?, "greedy"?, "n_tokens"?}. `answer` is the problem's reference answer (a
             number, text, or a GSM8K-style solution ending in `#### N`), as in every
             question/answer file reasonlab reads; `correct` (true/false or 1/0) is the other
             tool's judgement; `greedy: true` marks the problem's greedy solution. Other fields
             are ignored.

Greedy. A sample is the problem's greedy solution (sample_idx -1, the row maj@1 reads) when the
file says so: lm-eval generation kwargs with `do_sample: false`, or without `do_sample` and with
`temperature` 0 or absent (lm-eval then decodes greedily); for plain JSONL, `greedy: true`. A
greedy lm-eval document's first response is its greedy solution, any further ones (repeats) are
samples 0..r-2; otherwise a problem's responses are samples 0..n-1 in file order. A problem
without a greedy row has no maj@1; the pages say so and judge it by majority vote.

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from engine import jobs, workspace
from engine.config.task import TaskSpec
from engine.errors import ReasonlabError
from engine.evaluation.curves import per_problem_curves
from engine.evaluation.metrics import ks_up_to
from engine.tasks import answers, get_task
from engine.tasks.base import score_safely
from engine.tasks.files import PARSERS, BadRecord, valid_text

FORMATS = ("lm-eval", "jsonl")
TASKS = ("gsm8k", "jsonl", "multistep")
FILE_SPLITS = ("train", "test", "all")  # a file task's splits: each is the whole problems file here
# the built-in task's problem ids, up to the 100,000th of a split (generating them takes ~40 us each)
BUILTIN_ID = re.compile(r"(train|test|ood)-(\d{1,5})")
PROBLEMS_FILE = "problems.jsonl"
UNKNOWN = "?"  # a problem's answer when no line gives one (its samples all carry `correct`)


@dataclass
class Sample:
    line: int
    key: tuple  # which problem: ("doc", doc_id), ("id", problem_id) or ("question", text)
    text: str
    greedy: bool = False
    correct: bool | None = None  # the file's judgement, if it gives one
    n_tokens: int | None = None


@dataclass
class Source:
    """A parsed file: its samples, and what it says of each problem (question, reference answer)."""

    path: Path
    format: str
    samples: list[Sample] = field(default_factory=list)
    problems: dict = field(default_factory=dict)  # key -> its samples, in file order (keys in first-seen order)
    questions: dict = field(default_factory=dict)  # key -> question
    references: dict = field(default_factory=dict)  # key -> (line, raw reference answer)
    lm_eval: dict = field(default_factory=dict)  # "exact_match,strict-match" -> mean, as lm-eval logged


    def add(self, sample: Sample) -> None:
        self.samples.append(sample)
        self.problems.setdefault(sample.key, []).append(sample)


def _bad(path: Path, line: int, problem: str) -> ReasonlabError:
    return ReasonlabError(f"{path}, line {line}: {problem}")


def _lines(path: Path):
    """(line number, parsed JSON object) per non-blank line."""
    try:
        text = path.read_bytes().decode("utf-8", "surrogateescape")  # a non-UTF-8 byte: a lone surrogate
    except OSError as e:
        raise ReasonlabError(f"cannot read {path}: {e.strerror or e}") from None
    for number, line in enumerate(text.split("\n"), start=1):  # "\n" only: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except RecursionError:
            raise _bad(path, number, "JSON nested too deeply to read") from None
        except ValueError as e:  # JSONDecodeError, or a number past Python's 4300-digit limit
            hint = (" (lm-eval's per-sample file is samples_<task>_<date>.jsonl, next to results_*.json)"
                    if path.name.startswith("results") else "")
            raise _bad(path, number, f"not valid JSON ({getattr(e, 'msg', str(e)[:80])}){hint}") from None
        if not isinstance(value, dict):
            raise _bad(path, number, f"expected a JSON object, got {type(value).__name__}")
        yield number, value


def _text(value, what: str, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise BadRecord(f"{what} must be {'text' if empty else 'non-empty text'}, got {json.dumps(value)[:40]}")
    return valid_text(value, what)


def _answer(value, what: str):
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecord(f"{what} must be a number or text, got {json.dumps(value)[:40]}")
    return _text(value, what) if isinstance(value, str) else value


def read(path: str | Path, format: str | None = None) -> Source:
    """Parse and check every line of a file (no store, no task): a bad line is a ReasonlabError
    naming the file and line."""
    if not str(path).strip():
        raise ReasonlabError("give the path of the file to import")
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ReasonlabError(f"{path} is not a file" if path.exists() else f"{path} does not exist")
    if format is not None and format not in FORMATS:
        raise ReasonlabError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    source, seen = None, {}
    for number, obj in _lines(path):
        if source is None:
            source = Source(path, format or _detect(path, number, obj))
        try:
            (_lm_eval_line if source.format == "lm-eval" else _jsonl_line)(source, number, obj, seen)
        except BadRecord as e:
            raise _bad(path, number, str(e)) from None
    if source is None or not source.samples:
        raise ReasonlabError(f"{path} holds no samples")
    source.lm_eval = {k: sum(v) / len(v) for k, v in source.lm_eval.items()}
    return source


def _detect(path: Path, number: int, obj: dict) -> str:
    if "doc_id" in obj and "resps" in obj:
        return "lm-eval"
    if "completion" in obj:
        return "jsonl"
    raise _bad(path, number, "neither an lm-eval samples line (doc_id, doc, resps) nor a plain sample (completion); "
                             "give --format lm-eval or --format jsonl")


def _lm_eval_line(source: Source, number: int, obj: dict, seen: dict) -> None:
    doc_id, doc = obj.get("doc_id"), obj.get("doc")
    if isinstance(doc_id, bool) or not isinstance(doc_id, int) or doc_id < 0:
        raise BadRecord(f"doc_id must be a whole number >= 0, got {json.dumps(doc_id)[:40]}")
    if not isinstance(doc, dict):
        raise BadRecord("doc must be a JSON object (the task's document)")
    resps = obj.get("resps")
    if not isinstance(resps, list) or not resps:
        raise BadRecord("resps must be a non-empty list of the model's responses")
    texts = [r for req in resps for r in (req if isinstance(req, list) else [req])]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise BadRecord("resps hold no text responses (a loglikelihood or multiple-choice task?): import a "
                        "generation task such as gsm8k")
    texts = [_text(t, "a response", empty=True) for t in texts]
    filter_name = obj.get("filter", "none")
    if not isinstance(filter_name, str):
        raise BadRecord("filter must be text (the filter's name)")
    key = ("doc", doc_id)
    if (doc_id, filter_name) in seen:  # (older files name no filter: a document's lines just repeat)
        raise BadRecord(f"doc_id {doc_id} appears twice for filter {filter_name!r} (first on line "
                        f"{seen[doc_id, filter_name]})")
    if "filter" in obj:
        seen[doc_id, filter_name] = number
    named = obj.get("metrics") if isinstance(obj.get("metrics"), list) else ["exact_match"]
    for metric in (m for m in named if isinstance(m, str)):  # lm-eval's own per-document metrics
        value = obj.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            source.lm_eval.setdefault(f"{metric},{filter_name}", []).append(float(value))
    if key in source.questions:  # another filter's line of a document read already: the same responses
        mine = source.problems[key]
        if [s.text for s in mine] != texts:
            raise BadRecord(f"doc_id {doc_id}'s responses differ from line {mine[0].line}'s (two runs in one file?)")
        return
    question = _text(doc.get("question"), "doc field 'question' (a gsm8k-style doc has question and answer)")
    reference = doc["answer"] if "answer" in doc else obj.get("target")
    greedy = _greedy(obj.get("arguments"))
    source.questions[key] = question
    source.references[key] = (number, _answer(reference, "doc field 'answer' (or target)"))
    for i, t in enumerate(texts):
        source.add(Sample(number, key, t, greedy=greedy and i == 0))


def _greedy(arguments) -> bool:
    """Whether lm-eval decoded greedily, from the first request's generation kwargs."""
    if isinstance(arguments, dict):  # {"gen_args_0": {"arg_0": prompt, "arg_1": kwargs}}
        first = next(iter(arguments.values()), {})
        args = list(first.values()) if isinstance(first, dict) else []
    elif isinstance(arguments, list) and arguments and isinstance(arguments[0], list):  # [[prompt, kwargs]]
        args = arguments[0]
    else:
        args = []
    kwargs = next((a for a in args if isinstance(a, dict)), {})
    if "do_sample" in kwargs:
        return kwargs["do_sample"] is False
    temperature = kwargs.get("temperature", 0)
    return isinstance(temperature, (int, float)) and temperature == 0


def _jsonl_line(source: Source, number: int, obj: dict, seen: dict) -> None:
    if "completion" not in obj:
        raise BadRecord("missing field 'completion' (the model's text)")
    text = _text(obj["completion"], "field 'completion'", empty=True)
    pid = obj.get("problem_id")
    if pid is None and "question" not in obj:
        raise BadRecord("needs a 'problem_id' or a 'question'")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
        raise BadRecord(f"field 'problem_id' must be text or a whole number, got {json.dumps(pid)[:40]}")
    question = _text(obj["question"], "field 'question'") if "question" in obj else None
    key = ("id", _text(str(pid), "field 'problem_id'").strip()) if pid is not None else ("question", question)
    if question is not None:
        if source.questions.setdefault(key, question) != question:
            raise BadRecord(f"problem {key[1]!r} has another question on an earlier line")
    if "answer" in obj:
        reference = _answer(obj["answer"], "field 'answer'")
        line, earlier = source.references.setdefault(key, (number, reference))
        if _same(earlier) != _same(reference):
            raise BadRecord(f"answer {reference!r} differs from line {line}'s {earlier!r} for the same problem")
    correct = obj.get("correct")
    if not (correct is None or isinstance(correct, bool) or (type(correct) is int and correct in (0, 1))):
        raise BadRecord(f"field 'correct' must be true/false or 1/0, got {json.dumps(correct)[:40]}")
    greedy = obj.get("greedy", False)
    if not isinstance(greedy, bool):
        raise BadRecord(f"field 'greedy' must be true or false, got {json.dumps(greedy)[:40]}")
    if greedy and key in seen:
        raise BadRecord(f"a second greedy solution of the same problem (the first is on line {seen[key]})")
    if greedy:
        seen[key] = number
    n_tokens = obj.get("n_tokens")
    if n_tokens is not None and (isinstance(n_tokens, bool) or not isinstance(n_tokens, int)
                                 or not 0 <= n_tokens < 2**63):  # what SQLite's INTEGER holds
        raise BadRecord(f"field 'n_tokens' must be a whole number >= 0, got {json.dumps(n_tokens)[:40]}")
    source.add(Sample(number, key, text, greedy, None if correct is None else bool(correct), n_tokens))


def _same(reference) -> str:
    """A reference answer as compared between lines: 7, "7" and "7.0" are one answer."""
    text = reference if isinstance(reference, str) else json.dumps(reference)
    return answers.normalise_number(text) or text.strip()


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
        raise _bad(source.path, s.line, "not one of the built-in task's problem ids (train-N, test-N or ood-N, "
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
        raise _bad(source.path, line, f"problem {other[1]} is not of split {split}: import one split per file")
    from engine.tasks.multistep import MultiStep

    generated = MultiStep().problems(split, max(int(m.group(2)) for m in ids.values()) + 1)
    problems = {k: generated[int(ids[k].group(2))] for k in order}
    for key, (line, given) in source.references.items():
        if not answers.equivalent(_same(given), problems[key].answer):
            raise _bad(source.path, line, f"answer {given!r} is not built-in problem {key[1]}'s "
                                          f"({problems[key].answer}); give the questions and import with --task jsonl")
    return split, problems


def _problems_file(source: Source, order: list[tuple], task: str, scratch: Path) -> Path:
    """The problems as a file task's JSONL ({"question", "answer"} per line, in id order), each
    checked by that task's own parser first so that a bad one names the imported file's line."""
    lines = []
    for key in order:
        mine = source.problems[key]
        if key not in source.questions:
            raise _bad(source.path, mine[0].line, f"problem {key[1]!r} has no question: give 'question' (or import "
                                                  "the built-in task's problem ids with --task multistep)")
        line, reference = source.references.get(key, (mine[0].line, None))
        if reference is None:
            unscored = next((s for s in mine if s.correct is None), None)
            if unscored is not None:
                raise _bad(source.path, unscored.line, "no 'correct' given and no 'answer' to score it against")
            reference = next((a for s in mine if s.correct for a in [answers.extract_strict(s.text)] if a), UNKNOWN)
            reference = f"#### {reference}" if task == "gsm8k" and reference != UNKNOWN else reference
        record = {"question": source.questions[key], "answer": reference}
        try:
            PARSERS[task](record, ("question", "answer"))
        except BadRecord as e:
            raise _bad(source.path, line, f"{e} (task {task})") from None
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
