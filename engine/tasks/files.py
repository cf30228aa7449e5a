"""Tasks read from files: GSM8K (`gsm8k`), SVAMP (`svamp`) and any question/answer JSONL (`jsonl`).

    gsm8k   JSONL, one {"question", "answer"} per line; the answer is a worked solution ending in
            `#### N`, its `<<48/2=24>>` calculator annotations give the intermediate results that
            the dense reward looks for.
    svamp   a JSON list (or JSONL) of {"Body", "Question", "Answer"}: the question is Body + Question,
            Answer a number; an optional "Equation" (`( 11.0 + 3.0 ) - 9.0`) gives the reference
            steps and intermediate results.
    jsonl   any JSONL with a question and an answer field (names configurable); the answer is a
            number or free-form text (`\\frac{1}{2}`), or a GSM8K-style solution ending in `#### N`.

Splits. `--data` is one file. With `--eval-data`, `train` is the data file and `test` the eval file.
Without it, the data file is split deterministically: a problem goes to `test` when the SHA-1 of
its question text is 0 mod 10 (about 10%; independent of line order and stable as the file
grows), the rest to `train`. `all` is every problem of the data file. Problem ids are
`<split>-<index in split>`.

A malformed line (bad JSON, JSON Python cannot read: a number past 4300 digits or nesting deeper
than its recursion limit, a missing field, a non-numeric answer, text with a lone surrogate that no
tokenizer or store takes) is a ReasonlabError naming the file and line; with `skip_bad` such lines
are skipped instead, and `task.skipped` lists them.
Completions are scored as answers.py describes; a correct answer is reported in its reference
form (so equivalent answers vote together in maj@k), the text as written in `extra["answer_raw"]`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from functools import lru_cache
from pathlib import Path

from engine.errors import ReasonlabError
from engine.tasks import answers
from engine.tasks.base import Problem, Score


class TaskOptionError(ReasonlabError):
    """A task option (a config field: data, eval_data, gym_name...) is unusable. The message reads
    after the option's name: `data: /x.jsonl, line 3: not valid JSON`."""

    def __init__(self, option: str, message: str):
        super().__init__(message, field=option)
        self.option = option

    def __reduce__(self):
        return type(self), (self.option, str(self))


class BadRecord(ValueError):
    """One record of a data file is malformed (the message says how)."""


def _number(value, what: str) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    n = answers.normalise_number(text) if not isinstance(value, bool) else None
    if n is None:
        raise BadRecord(f"{what} {text[:40]!r} is not a number")
    return n


def _text(record: dict, field: str) -> str:
    if field not in record:
        raise BadRecord(f"missing field {field!r}")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise BadRecord(f"field {field!r} must be non-empty text")
    return valid_text(value, field).strip()


def valid_text(value: str, field: str) -> str:
    """The text, when it is valid Unicode. A lone surrogate (JSON's `\\ud800` escape, or a byte of
    the file that is not UTF-8) is taken by neither the tokenizer nor the store."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRecord(f"field {field!r} is not valid text: character {e.start} is {value[e.start]!r}, a lone "
                        "surrogate or a byte that is not UTF-8") from None
    return value


def _json(line: str):
    """One JSONL line parsed, or the reason it cannot be (returned, not raised: the caller names the line)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        return BadRecord(f"not valid JSON ({e.msg})")
    except RecursionError:
        return BadRecord("JSON nested too deeply to read")
    except ValueError as e:  # Python's int-string limit: a number of more than 4300 digits
        return BadRecord(f"not readable JSON ({str(e).split(';')[0][:120]})")


def gsm8k_record(record: dict, fields: tuple[str, str]) -> tuple[str, str, str, tuple[str, ...]]:
    """(question, answer, reference solution, intermediate results) of one GSM8K line."""
    question, solution = _text(record, fields[0]), _text(record, fields[1])
    if "####" not in solution:
        raise BadRecord(f"field {fields[1]!r} has no final `#### N` line")
    final = solution.rsplit("####", 1)[1].strip()
    answer = _number(final, "final answer")
    reference = answers.strip_annotations(solution)
    return question, answer, reference, tuple(answers.annotation_results(solution))


def svamp_record(record: dict, fields: tuple[str, str]) -> tuple[str, str, str, tuple[str, ...]]:
    body, question = _text(record, "Body"), _text(record, "Question")
    if "Answer" not in record:
        raise BadRecord("missing field 'Answer'")
    answer = _number(record["Answer"], "Answer")
    steps = answers.expression_steps(record["Equation"]) if isinstance(record.get("Equation"), str) else []
    lines = [f"{a} {op} {b} = {c}" for a, op, b, c in steps]
    reference = "\n".join(lines + [f"#### {answer}"])
    joiner = " " if body.endswith((".", "?", "!")) else ". "
    return f"{body}{joiner}{question}", answer, reference, tuple(c for *_, c in steps)


def jsonl_record(record: dict, fields: tuple[str, str]) -> tuple[str, str, str, tuple[str, ...]]:
    question_field, answer_field = fields
    question = _text(record, question_field)
    if answer_field not in record:
        raise BadRecord(f"missing field {answer_field!r}")
    value = record[answer_field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or not str(value).strip():
        raise BadRecord(f"field {answer_field!r} must be a number or non-empty text")
    if isinstance(value, float) and not math.isfinite(value):  # JSON's 1e999 reads as inf
        raise BadRecord(f"field {answer_field!r} is not a finite number")
    if isinstance(value, str) and "####" in value:  # a worked solution, GSM8K style
        return gsm8k_record({question_field: question, answer_field: value}, fields)
    text = valid_text(value, answer_field).strip() if isinstance(value, str) else json.dumps(value)
    answer = answers.normalise_number(text) or text
    return question, answer, f"#### {answer}", ()


def _records(path: Path, text: str):
    """(line number, parsed JSON or the JSONDecodeError) per record: a JSON list's items, or JSONL lines."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        decoder = json.JSONDecoder()
        pos = len(text) - len(stripped) + 1
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                raise ReasonlabError(f"{path}, line {text.count(chr(10)) + 1}: the JSON list is not closed")
            if text[pos] == "]":
                return
            line = text.count("\n", 0, pos) + 1
            try:  # the rest of a list broken here cannot be read
                item, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise ReasonlabError(f"{path}, line {e.lineno}: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise ReasonlabError(f"{path}, line {line}: JSON nested too deeply to read") from None
            except ValueError as e:  # Python's int-string limit: a number of more than 4300 digits
                raise ReasonlabError(f"{path}, line {line}: not readable JSON ({str(e).split(';')[0][:120]})") from None
            yield line, item
    else:
        # split at "\n" only: splitlines() also splits at U+2028, \x85..., which JSON strings may hold raw
        for i, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                yield i, _json(line)


PARSERS = {"gsm8k": gsm8k_record, "svamp": svamp_record, "jsonl": jsonl_record}


def load_file(path: str | Path, kind: str, fields: tuple[str, str] = ("question", "answer"),
              skip_bad: bool = False) -> tuple[list[tuple], list[str]]:
    """(records, skipped): records are (line, question, answer, reference, results); skipped lists
    `FILE, line N: problem` for each line left out (only with skip_bad; otherwise the first raises)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise ReasonlabError(f"data file {path} does not exist") from None
    if not path.is_file():
        raise ReasonlabError(f"data file {path} is not a file")
    return _load(str(path), stat.st_mtime_ns, stat.st_size, kind, tuple(fields), skip_bad)


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int, size: int, kind: str, fields: tuple, skip_bad: bool):
    try:  # a byte that is not UTF-8 becomes a lone surrogate, which the line's record is refused for
        text = Path(path).read_bytes().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise ReasonlabError(f"cannot read data file {path}: {e.strerror or e}") from None
    parse = PARSERS[kind]
    records, skipped = [], []
    for line, item in _records(Path(path), text):
        try:
            if isinstance(item, BadRecord):
                raise item
            if not isinstance(item, dict):
                raise BadRecord(f"expected a JSON object, got {type(item).__name__}")
            try:
                records.append((line, *parse(item, fields)))
            except BadRecord:
                raise
            except (ValueError, RecursionError, ArithmeticError) as e:  # whatever a parser meets in odd values
                raise BadRecord(f"cannot be read ({type(e).__name__}: {str(e)[:90]})") from None
        except BadRecord as e:
            message = f"{path}, line {line}: {e}"
            if not skip_bad:
                raise ReasonlabError(message + " (skip_bad=true / --skip-bad skips malformed lines)") from None
            skipped.append(message)
    if not records:
        raise ReasonlabError(f"data file {path} has no usable problems" + (f" ({len(skipped)} malformed lines skipped)"
                                                                           if skipped else ""))
    return records, skipped


def in_test(question: str) -> bool:
    """The single-file split rule: SHA-1 of the question text is 0 mod 10."""
    # surrogatepass: any str hashes (the loader refuses lone surrogates, but in_test stays total)
    return int(hashlib.sha1(question.encode("utf-8", "surrogatepass")).hexdigest(), 16) % 10 == 0


class FileTask:
    """Problems from a data file (and optionally a separate evaluation file); scoring of free text."""

    name = "jsonl"
    kind = "jsonl"
    splits = ("train", "test", "all")
    instruction = "Solve the problem step by step. Write the final answer on the last line as `#### <answer>`."

    def __init__(self, data: str = "", eval_data: str = "", skip_bad: bool = False,
                 question_field: str = "question", answer_field: str = "answer"):
        if not data:
            raise TaskOptionError("data", f"required for task {self.name} (a {self.kind} file)")
        self.fields = (question_field, answer_field)
        self.skipped: list[str] = []
        self._splits: dict[str, list[Problem]] = {}
        main = self._read("data", data, skip_bad)
        if eval_data:
            self._splits = {"train": self._problems("train", main), "all": self._problems("all", main),
                            "test": self._problems("test", self._read("eval_data", eval_data, skip_bad))}
        else:
            self._splits = {"train": self._problems("train", [r for r in main if not in_test(r[1])]),
                            "test": self._problems("test", [r for r in main if in_test(r[1])]),
                            "all": self._problems("all", main)}
        stat = [os.stat(p) for p in (data, eval_data) if p]
        self.key = (self.name, data, eval_data, skip_bad, self.fields, tuple((s.st_mtime_ns, s.st_size) for s in stat))

    def _read(self, option: str, path: str, skip_bad: bool) -> list[tuple]:
        try:
            records, skipped = load_file(path, self.kind, self.fields, skip_bad)
        except ReasonlabError as e:
            raise TaskOptionError(option, str(e)) from None
        self.skipped += [m for m in skipped if m not in self.skipped]
        return records

    @staticmethod
    def _problems(split: str, records: list[tuple]) -> list[Problem]:
        return [Problem(id=f"{split}-{i}", question=q, answer=a, reference=ref, data={"line": line, "results": res})
                for i, (line, q, a, ref, res) in enumerate(records)]

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        if split not in self.splits:
            raise ReasonlabError(f"unknown split {split!r} for task {self.name}; choose one of {', '.join(self.splits)}")
        if n is not None and n < 0:
            raise ReasonlabError(f"number of problems must be >= 0, got {n}")
        problems = self._splits[split]
        return problems if n is None else problems[:n]

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:\n"

    def sample_solution(self, problem: Problem, rng=None) -> str:
        """The file's reference solution (annotations removed): a file has one order only."""
        return problem.reference

    steps = staticmethod(answers.solution_steps)  # one step per solution line
    step_key = staticmethod(answers.step_key)  # ... identified by the results it computes
    step_signature = staticmethod(answers.step_signature)

    def score(self, problem: Problem, completion: str) -> Score:
        strict, flexible = answers.extract_answer(completion)
        correct = answers.equivalent(strict, problem.answer)
        steps = answers.equations(completion)
        valid = [s for s in steps if answers.equation_is_valid(s)]
        results = set(problem.data["results"])
        reached = results & answers.numbers_in(completion)
        dense = len(reached) / len(results) if results else float(correct)
        return Score(answer=problem.answer if correct else strict, answer_lenient=flexible, correct=correct,
                     correct_lenient=answers.equivalent(flexible, problem.answer), steps_total=len(steps),
                     steps_valid=len(valid), dense=dense,
                     extra={"reached": sorted(reached), "answer_raw": strict})


class GSM8K(FileTask):
    """GSM8K JSONL: `question`, and `answer` a worked solution ending in `#### N`."""

    name = kind = "gsm8k"

    def __init__(self, data: str = "", eval_data: str = "", skip_bad: bool = False):
        super().__init__(data, eval_data, skip_bad)


class SVAMP(FileTask):
    """SVAMP JSON: `Body` + `Question`, a numeric `Answer`, optionally the `Equation`."""

    name = kind = "svamp"

    def __init__(self, data: str = "", eval_data: str = "", skip_bad: bool = False):
        super().__init__(data, eval_data, skip_bad)


class JSONLTask(FileTask):
    """Any JSONL with a question and an answer field (their names are options)."""

    name = kind = "jsonl"
