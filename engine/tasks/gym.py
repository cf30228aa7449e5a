"""reasoning-gym generators as a task (`gym`; `pip install 'reasonlab[gym]'`).

Any registered generator by name (gsm_symbolic, basic_arithmetic, chain_sum, leg_counting,
products, ... ~100 of them), with its options (the generator's config fields, a JSON object), a
size and a seed. `train` is generated with `gym_seed`, `test` with `gym_seed + 1` (train leaves
out any question that is also a test question); ids are `<split>-<index>`.

Prompt format: the `#### <answer>` convention of the other tasks (the question, then the
instruction to end with a `#### <answer>` line); an answer in `<answer>...</answer>` tags,
reasoning-gym's own convention, is read as well (the tags win when both are present).
Scoring uses the generator's own `score_answer`: correct only at a score of exactly 1.0; a scorer
that raises counts as incorrect (its error is kept in `extra["scorer_error"]`), never a crash.
The dense reward is the scorer's partial credit (a score in [0, 1]).
"""

from __future__ import annotations

import json
import re

from engine.errors import ReasonlabError
from engine.tasks import answers
from engine.tasks.base import Problem, Score
from engine.tasks.files import TaskOptionError

TAG_RE = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)  # reasoning_gym.utils.extract_answer's


def generators() -> list[str]:
    """Names of reasoning-gym's generators (empty when it is not installed)."""
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError:
        return []
    return sorted(DATASETS)


def parse_options(options) -> dict:
    """A generator's options from a dict or JSON object text ("" is none)."""
    if isinstance(options, dict):
        return dict(options)
    if not str(options or "").strip():
        return {}
    try:
        value = json.loads(options)
    except json.JSONDecodeError as e:
        raise TaskOptionError("gym_options", f"not a JSON object ({e.msg}): {options!r}") from None
    if not isinstance(value, dict):
        raise TaskOptionError("gym_options", f"must be a JSON object such as {{\"min_terms\": 2}}, got {options!r}")
    return value


def extract(text: str) -> str | None:
    """The answer in the last `<answer>` tags, else the strict `####` answer."""
    text = answers.before_stop(text)
    tags = TAG_RE.findall(text)
    if tags and tags[-1].strip():
        return tags[-1].strip()
    return answers.extract_strict(text)


class Gym:
    """One reasoning-gym generator. `gym_size` is a split's default size."""

    name = "gym"
    splits = ("train", "test")
    instruction = "Solve the problem. Write the final answer on the last line as `#### <answer>`."

    def __init__(self, gym_name: str = "", gym_options: str | dict = "", gym_size: int = 1000, gym_seed: int = 0):
        try:
            from reasoning_gym.factory import DATASETS
        except ImportError:
            raise TaskOptionError("gym_name", "needs reasoning-gym: pip install 'reasonlab[gym]'") from None
        if not gym_name:
            raise TaskOptionError("gym_name", "required for task gym (a reasoning-gym generator, e.g. chain_sum)")
        if gym_name not in DATASETS:
            close = [n for n in DATASETS if gym_name.lower() in n or n in gym_name.lower()][:5]
            hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(DATASETS)} generators; see reasoning-gym's list)"
            raise TaskOptionError("gym_name", f"unknown reasoning-gym generator {gym_name!r}{hint}")
        options = parse_options(gym_options)
        for reserved in ("size", "seed"):
            if reserved in options:
                raise TaskOptionError("gym_options", f"set the {reserved} with gym_{reserved}, not in gym_options")
        if gym_size < 1:
            raise TaskOptionError("gym_size", f"must be >= 1, got {gym_size}")
        self.gym_name, self.options, self.size, self.seed = gym_name, options, gym_size, gym_seed
        self.key = (self.name, gym_name, json.dumps(options, sort_keys=True), gym_seed)
        self._datasets: dict[tuple[str, int], object] = {}
        self._test_questions: set[str] | None = None
        self._dataset("test", 1)  # a bad option fails here, naming the field, not at the first sample

    def _dataset(self, split: str, n: int):
        if (split, n) not in self._datasets:
            from reasoning_gym import create_dataset

            try:
                self._datasets[(split, n)] = create_dataset(self.gym_name, size=n, seed=self.seed + (split == "test"),
                                                            **self.options)
            except (TypeError, ValueError, AssertionError) as e:  # unknown field, or the config's own check
                raise TaskOptionError("gym_options", f"rejected by {self.gym_name}: {e or type(e).__name__}") from None
        return self._datasets[(split, n)]

    def _problem(self, split: str, i: int, entry: dict) -> Problem:
        answer = str(entry["answer"])
        cot = (entry.get("metadata") or {}).get("answer_cot")
        reference = cot if isinstance(cot, str) and "####" in cot else f"#### {answer}"
        return Problem(id=f"{split}-{i}", question=entry["question"], answer=answer, reference=reference, data=entry)

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        if split not in self.splits:
            raise ReasonlabError(f"unknown split {split!r} for task gym; choose one of {', '.join(self.splits)}")
        n = self.size if n is None else n
        if n < 0:
            raise ReasonlabError(f"number of problems must be >= 0, got {n}")
        if split == "test":
            data = self._dataset("test", max(n, 1))
            return [self._problem("test", i, data[i]) for i in range(n)]
        if self._test_questions is None:
            data = self._dataset("test", self.size)
            self._test_questions = {data[i]["question"] for i in range(self.size)}
        # Generate a few more than n, as some train questions may repeat a test question.
        data = self._dataset("train", n + n // 4 + 8)
        entries = (data[i] for i in range(len(data)))
        kept = [e for e in entries if e["question"] not in self._test_questions][:n]
        return [self._problem("train", i, e) for i, e in enumerate(kept)]

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:\n"

    def sample_solution(self, problem: Problem, rng=None) -> str:
        return problem.reference

    def step_signature(self, completion: str) -> tuple:
        return answers.step_signature(completion)[:-1] + (extract(completion),)

    def scorer(self, problem: Problem, answer: str | None) -> tuple[float, str | None]:
        """(score, error): the generator's own score_answer; an exception scores 0."""
        if answer is None:
            return 0.0, None
        try:
            value = float(self._dataset("test", 1).score_answer(answer, problem.data))
        except Exception as e:  # third-party scorers raise anything on odd answers
            return 0.0, f"{type(e).__name__}: {e}"
        return (value if 0.0 <= value <= 1.0 else 0.0), None

    def score(self, problem: Problem, completion: str) -> Score:
        strict, flexible = extract(completion), answers.extract_flexible(completion)
        value, error = self.scorer(problem, strict)
        lenient, _ = self.scorer(problem, flexible)
        correct = value == 1.0
        extra = {"score": value, "answer_raw": strict}
        if error:
            extra["scorer_error"] = error
        return Score(answer=problem.answer if correct else strict, answer_lenient=flexible, correct=correct,
                     correct_lenient=lenient == 1.0, dense=value, extra=extra)
