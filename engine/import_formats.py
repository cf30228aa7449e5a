"""Reading the files `reasonlab import` takes (engine/imports.py plans and writes the run):
every line checked, each sample with the problem it answers.

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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ReasonlabError
from engine.tasks import answers
from engine.tasks.files import BadRecord, valid_text

FORMATS = ("lm-eval", "jsonl")


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


def bad_line(path: Path, line: int, problem: str) -> ReasonlabError:
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
            raise bad_line(path, number, "JSON nested too deeply to read") from None
        except ValueError as e:  # JSONDecodeError, or a number past Python's 4300-digit limit
            hint = (" (lm-eval's per-sample file is samples_<task>_<date>.jsonl, next to results_*.json)"
                    if path.name.startswith("results") else "")
            raise bad_line(path, number, f"not valid JSON ({getattr(e, 'msg', str(e)[:80])}){hint}") from None
        if not isinstance(value, dict):
            raise bad_line(path, number, f"expected a JSON object, got {type(value).__name__}")
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
            raise bad_line(path, number, str(e)) from None
    if source is None or not source.samples:
        raise ReasonlabError(f"{path} holds no samples")
    source.lm_eval = {k: sum(v) / len(v) for k, v in source.lm_eval.items()}
    return source


def _detect(path: Path, number: int, obj: dict) -> str:
    if "doc_id" in obj and "resps" in obj:
        return "lm-eval"
    if "completion" in obj:
        return "jsonl"
    raise bad_line(path, number, "neither an lm-eval samples line (doc_id, doc, resps) nor a plain sample (completion); "
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
        if same_answer(earlier) != same_answer(reference):
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


def same_answer(reference) -> str:
    """A reference answer as compared between lines: 7, "7" and "7.0" are one answer."""
    text = reference if isinstance(reference, str) else json.dumps(reference)
    return answers.normalise_number(text) or text.strip()
