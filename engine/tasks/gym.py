"""reasoning-gym generators as a task (`gym`; `pip install 'reasonlab[gym]'`).

Any registered generator by name (gsm_symbolic, basic_arithmetic, chain_sum, leg_counting,
products, ... ~100 of them), with its options (the generator's config fields, a JSON object), a
size and a seed; ids are `<split>-<index>`.

Splits. Both come from one stream of the generator, seeded `gym_seed + 1` (for a seed outside
[0, 2^31), a seed derived from it in that range: Python's Random treats -s as s, and some generators
seed numpy, which takes < 2^32). `test` is its first `gym_size` items. `train` continues the stream
past them and keeps only distinct questions that are not test questions. Most generators seed item
i with `seed + i`, so two streams with nearby seeds are the same items shifted: train from
`gym_seed` and test from `gym_seed + 1` shared all but one item. A train split that cannot be
filled (a generator with few possible questions) is an error naming train_problems and gym_size,
never a silently smaller pool.

Prompt format: the `#### <answer>` convention of the other tasks (the question, then the
instruction to end with a `#### <answer>` line); an answer in `<answer>...</answer>` tags,
reasoning-gym's own convention, is read as well (the tags win when both are present).
Scoring uses the generator's own `score_answer`: correct only at a score of exactly 1.0; a scorer
that raises counts as incorrect (its error is kept in `extra["scorer_error"]`), never a crash.
The dense reward is the scorer's partial credit (a score in [0, 1]).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache

from engine.errors import ReasonlabError
from engine.tasks import answers
from engine.tasks.base import Problem, Score
from engine.tasks.files import TaskOptionError

MAX_TRAIN = 200_000  # train problems generated at most (validation generates the whole pool)
STALE_DRAWS = 2000  # this many draws in a row without a new question: the generator has no more


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


def answer_tags(text: str) -> list[str]:
    """What each `<answer>...</answer>` pair holds, as reasoning_gym.utils.extract_answer's regex
    `<answer>\\s?(.*?)\\s?</answer>` pairs them (each opening tag with the next closing one),
    stripped. With str.find, not that regex: its lazy `.*?` rescans the rest of the text from every
    unclosed tag, quadratic in a text of many `<answer>`s."""
    out, pos = [], 0
    while (start := text.find("<answer>", pos)) >= 0 and (end := text.find("</answer>", start + 8)) >= 0:
        out.append(text[start + 8:end].strip())
        pos = end + 9
    return out


def extract(text: str) -> str | None:
    """The answer in the last `<answer>` tags, else the strict `####` answer."""
    text = answers.before_stop(text)
    tags = answer_tags(text)
    if tags and tags[-1]:
        return tags[-1]
    return answers.extract_strict(text)


def stream_seed(gym_seed: int) -> int:
    """The seed of a generator's stream: gym_seed + 1 (so test is what it always was), or for a
    seed outside [0, 2^31) one derived from it in that range (see the module docstring)."""
    if 0 <= gym_seed < 2**31:
        return gym_seed + 1
    return int.from_bytes(hashlib.sha256(f"reasonlab gym_seed {gym_seed}".encode()).digest()[:8], "big") % 2**31


@lru_cache(maxsize=8)
def _stream(gym_name: str, options_json: str, seed: int, size: int):
    from reasoning_gym import create_dataset

    return create_dataset(gym_name, size=size, seed=seed, **json.loads(options_json))


@lru_cache(maxsize=4)  # a validation then the run's pool, in one process (up to MAX_TRAIN entries each)
def _train_entries(gym_name: str, options_json: str, seed: int, test_size: int, n: int) -> tuple[list, int]:
    """(up to n train entries with distinct questions, none a test question; draws made). Draws
    stop at 4n + 1000, or after STALE_DRAWS draws in a row gave no new question."""
    budget = 4 * n + 1000
    data = _stream(gym_name, options_json, seed, test_size + budget)
    seen = {data[i]["question"] for i in range(test_size)}
    kept, stale, i = [], 0, test_size
    while len(kept) < n and i < test_size + budget and stale < STALE_DRAWS:
        entry = data[i]
        i += 1
        if entry["question"] in seen:
            stale += 1
            continue
        seen.add(entry["question"])
        kept.append(entry)
        stale = 0
    return kept, i - test_size


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
        self.options_json = json.dumps(options, sort_keys=True)
        self.key = (self.name, gym_name, self.options_json, gym_seed, gym_size)  # train depends on the test size
        self._dataset(1)  # a bad option fails here, naming the field, not at the first sample

    def _dataset(self, n: int):
        """The generator's stream, at least n items long."""
        try:
            return _stream(self.gym_name, self.options_json, stream_seed(self.seed), max(n, 1))
        except (TypeError, ValueError, AssertionError) as e:  # unknown field, or the config's own check
            raise TaskOptionError("gym_options", f"rejected by {self.gym_name}: {e or type(e).__name__}") from None

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
        if split == "test":  # the stream's first gym_size items; train starts after them
            data = self._dataset(self.size)
            return [self._problem("test", i, data[i]) for i in range(min(n, self.size))]
        if n > MAX_TRAIN:
            raise TaskOptionError("train_problems", f"at most {MAX_TRAIN} for task gym, got {n}")
        kept, draws = _train_entries(self.gym_name, self.options_json, stream_seed(self.seed), self.size, n)
        if len(kept) < n:
            raise TaskOptionError("train_problems", f"asks for {n} training problems, but {self.gym_name} gave "
                                  f"only {len(kept)} distinct questions that are not among its {self.size} test "
                                  f"problems (gym_size) in {draws} draws: lower train_problems or gym_size, or "
                                  "widen gym_options")
        return [self._problem("train", i, e) for i, e in enumerate(kept)]

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:\n"

    def sample_solution(self, problem: Problem, rng=None) -> str:
        return problem.reference

    steps = staticmethod(answers.solution_steps)  # one step per solution line
    step_key = staticmethod(answers.step_key)  # ... identified by the results it computes

    @staticmethod
    def step_signature(completion: str) -> tuple:
        return answers.step_signature(completion)[:-1] + (extract(completion),)

    def scorer(self, problem: Problem, answer: str | None) -> tuple[float, str | None]:
        """(score, error): the generator's own score_answer; an exception scores 0."""
        if answer is None:
            return 0.0, None
        try:
            value = float(self._dataset(1).score_answer(answer, problem.data))
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
