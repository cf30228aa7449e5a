"""The built-in task: procedural GSM8K-style word problems with 1-5 arithmetic steps.

A problem is a sum of terms (a plain count, or `count x per` containers: one product step each),
followed by up to two "tail" operations (get more, give away, share equally, sell at a price).
Products can be computed in any order and terms summed in any order, and `+` / `*` commute, so
several solutions are valid and sampled solutions really branch. Solutions are GSM8K-style:

    3 * 6 = 18
    4 * 5 = 20
    18 + 20 = 38
    38 - 7 = 31
    #### 31

Splits: `train` and `test` (1-5 steps, small numbers; train never repeats a test question) and
`ood` (6-8 steps, larger numbers: the analogue of SVAMP's shift). Everything is a pure function
of (seed, split, index).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from engine.errors import ReasonlabError
from engine.tasks.base import Problem, Score

# at most 4000 digits a number: int() refuses more than 4300 (a longer "step" is a malformed line)
STEP_RE = re.compile(r"^\s*(-?\d{1,4000})\s*([-+*/])\s*(-?\d{1,4000})\s*=\s*(-?\d{1,4000})\s*$")
STRICT_RE = re.compile(r"####\s*(-?\d[\d,]*)")  # lm-evaluation-harness gsm8k "strict-match"
NUMBER_RE = re.compile(r"-?\d[\d,]*")  # "flexible-extract": the last number in the text

NAMES = ("Ann", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivy", "Jon", "Kai", "Lea",
         "Max", "Nia", "Omar", "Pia", "Raj", "Sara", "Tom", "Uma", "Vic", "Wes", "Yara", "Zoe")
THINGS = (("boxes", "pencils"), ("bags", "apples"), ("packs", "stickers"), ("crates", "oranges"),
          ("jars", "cookies"), ("shelves", "books"), ("trays", "muffins"), ("baskets", "eggs"),
          ("cartons", "marbles"), ("bowls", "cherries"))


@dataclass(frozen=True)
class Spec:
    """Sizes of one split's problems."""

    steps: tuple[int, int]  # inclusive range of reference steps
    plain: tuple[int, int]  # a plain count
    count: tuple[int, int]  # number of containers
    per: tuple[int, int]  # items per container
    delta: tuple[int, int]  # amounts got or given away
    factor: tuple[int, int]  # prices and sharing divisors


SPECS = {
    "train": Spec(steps=(1, 5), plain=(2, 9), count=(2, 5), per=(2, 9), delta=(1, 9), factor=(2, 5)),
    "test": Spec(steps=(1, 5), plain=(2, 9), count=(2, 5), per=(2, 9), delta=(1, 9), factor=(2, 5)),
    "ood": Spec(steps=(6, 8), plain=(10, 30), count=(2, 9), per=(10, 20), delta=(5, 30), factor=(2, 9)),
}
DEFAULT_SIZE = {"train": 20000, "test": 500, "ood": 500}


@dataclass(frozen=True)
class Structure:
    """The expression behind a problem: sum(terms), then the tail operations in order."""

    terms: tuple[tuple[int, int | None], ...]  # (count, per) — per None for a plain count
    tail: tuple[tuple[str, int], ...]  # (op, operand), op in + - * /


Step = tuple[int, str, int, int]  # a op b = c


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b


def solution_steps(s: Structure, rng: random.Random | None = None, write=None) -> list[Step]:
    """The steps of the canonical solution (rng None) or of a random valid order. `write(a, op, b)`
    is the arithmetic of whoever writes the solution (exact by default): a writer with a
    procedural bug writes a wrong result, and every later step carries the wrong value on."""
    write = write or _apply
    order = list(range(len(s.terms)))
    early: set[int] = set()  # products computed before the summing starts
    if rng is None:
        early = {i for i, (_, per) in enumerate(s.terms) if per is not None}
    else:
        rng.shuffle(order)
        early = {i for i in order if s.terms[i][1] is not None and rng.random() < 0.5}

    def swap(a: int, op: str, b: int) -> tuple[int, int]:
        return (b, a) if rng is not None and op in "+*" and rng.random() < 0.5 else (a, b)

    steps: list[Step] = []
    values: dict[int, int] = {}

    def product(i: int) -> None:
        count, per = s.terms[i]
        a, b = swap(count, "*", per)
        values[i] = write(a, "*", b)
        steps.append((a, "*", b, values[i]))

    for i in order:
        if i in early:
            product(i)
    acc = None
    for i in order:
        if s.terms[i][1] is None:
            values[i] = s.terms[i][0]
        elif i not in values:
            product(i)
        if acc is None:
            acc = values[i]
        else:
            a, b = swap(acc, "+", values[i])
            acc = write(a, "+", b)
            steps.append((a, "+", b, acc))
    for op, x in s.tail:
        a, b = swap(acc, op, x)
        acc = write(a, op, b)
        steps.append((a, op, b, acc))
    return steps


def forgets_carries(rate: float, rng: random.Random):
    """A writer with the commonest procedural bug of school arithmetic (Brown & Burton 1978,
    "Diagnostic models for procedural bugs in basic mathematical skills"): in `rate` of the
    additions whose ones digits carry, it forgets the carry (17 + 25 = 32)."""
    def write(a: int, op: str, b: int) -> int:
        if op == "+" and a % 10 + b % 10 >= 10 and rng.random() < rate:
            return a + b - 10
        return _apply(a, op, b)
    return write


def format_solution(steps: list[Step]) -> str:
    lines = [f"{a} {op} {b} = {c}" for a, op, b, c in steps]
    return "\n".join(lines + [f"#### {steps[-1][3]}"])


def _shapes(n_steps: int) -> list[tuple[int, int, int]]:
    """All (terms, products, tail ops) with exactly n_steps steps."""
    return [(t, m, k) for t in range(1, 5) for m in range(t + 1) for k in range(3 if n_steps < 6 else 4)
            if m + (t - 1) + k == n_steps]


def _structure(rng: random.Random, spec: Spec) -> Structure:
    terms_n, products_n, tail_n = rng.choice(_shapes(rng.randint(*spec.steps)))
    is_product = [True] * products_n + [False] * (terms_n - products_n)
    rng.shuffle(is_product)
    terms = tuple((rng.randint(*spec.count), rng.randint(*spec.per)) if p else (rng.randint(*spec.plain), None)
                  for p in is_product)
    acc = sum(c * (p or 1) for c, p in terms)
    tail = []
    for j in range(tail_n):
        ops = ["+", "-"] if j < tail_n - 1 else ["+", "-", "*", "/"]
        divisors = [d for d in range(spec.factor[0], spec.factor[1] + 1) if acc % d == 0]
        if not divisors and "/" in ops:
            ops.remove("/")
        if acc <= spec.delta[0]:
            ops.remove("-")
        op = rng.choice(ops)
        x = {"+": lambda: rng.randint(*spec.delta),
             "-": lambda: rng.randint(spec.delta[0], min(spec.delta[1], acc - 1)),
             "*": lambda: rng.randint(*spec.factor),
             "/": lambda: rng.choice(divisors)}[op]()
        tail.append((op, x))
        acc = _apply(acc, op, x)
    return Structure(terms, tuple(tail))


def _question(rng: random.Random, s: Structure) -> str:
    containers, items = rng.choice(THINGS)
    names = rng.sample(NAMES, len(s.terms))
    solo = len(s.terms) == 1
    who = names[0] if solo else "They"
    sentences = []
    for name, (count, per) in zip(names, s.terms):
        if per is None:
            verb = rng.choice(["has", "picks", "brings"])
            sentences.append(f"{name} {verb} {count} {items}.")
        else:
            verb = rng.choice(["has", "buys", "fills"])
            sentences.append(f"{name} {verb} {count} {containers} with {per} {items} each.")
    aux, subject = ("does", who) if solo else ("do", "they")
    question = f"How many {items} {aux} {subject} have in total?"
    for op, x in s.tail:
        if op == "+":
            sentences.append(f"{who} {'gets' if solo else 'get'} {x} more {items}.")
        elif op == "-":
            sentences.append(f"{who} {'gives' if solo else 'give'} away {x} {items}.")
        elif op == "*":
            sentences.append(f"Each of the {items} sells for {x} dollars.")
            question = f"How many dollars are all the {items} worth?"
        else:
            sentences.append(f"{who} {'shares' if solo else 'share'} the {items} equally among {x} friends.")
            question = f"How many {items} does each friend get?"
    if s.tail and s.tail[-1][0] in "+-":
        question = f"How many {items} {aux} {subject} have now?"
    return " ".join(sentences + [question])


def _integer(text: str | None) -> str | None:
    """An integer as the built-in task writes it (`1,024` -> `1024`); None for anything else."""
    if text is None:
        return None
    try:
        return str(int(text.replace(",", "")))
    except ValueError:
        return None


def integer_answers(text: str) -> tuple[str | None, str | None]:
    """(strict, lenient) integer answers: strict is the number after the first `####`, lenient the
    last number. The built-in task's answers are integers; free-text tasks use answers.py."""
    strict = STRICT_RE.search(text)
    numbers = NUMBER_RE.findall(text)
    return (_integer(strict.group(1)) if strict else None,
            _integer(numbers[-1]) if numbers else None)


def parse_steps(text: str) -> tuple[list[Step], int]:
    """The `a op b = c` steps before the final-answer line, and the count of malformed lines."""
    steps, malformed = [], 0
    for line in text.split("\n"):
        if line.strip().startswith("####"):
            break
        m = STEP_RE.match(line)
        if m:
            steps.append((int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))))
        elif line.strip():
            malformed += 1
    return steps, malformed


def _folded(step: Step) -> Step:
    a, op, b, c = step
    return (min(a, b), op, max(a, b), c) if op in "+*" else step


def step_is_valid(step: Step) -> bool:
    a, op, b, c = step
    if op == "/":
        return b != 0 and a == b * c
    return _apply(a, op, b) == c


class MultiStep:
    """The built-in task. `seed` picks a different, equally deterministic, family of problems."""

    name = "multistep"
    splits = tuple(SPECS)

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._test_questions: set[str] | None = None

    def _problem(self, split: str, i: int) -> Problem:
        rng = random.Random(f"multistep/{self.seed}/{split}/{i}")
        s = _structure(rng, SPECS[split])
        steps = solution_steps(s)
        return Problem(id=f"{split}-{i}", question=_question(rng, s), answer=str(steps[-1][3]),
                       reference=format_solution(steps), data=s)

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        if split not in SPECS:
            raise ReasonlabError(f"unknown split {split!r} for task multistep; choose one of {', '.join(SPECS)}")
        n = DEFAULT_SIZE[split] if n is None else n
        if n < 0:
            raise ReasonlabError(f"number of problems must be >= 0, got {n}")
        if split != "train":
            return [self._problem(split, i) for i in range(n)]
        if self._test_questions is None:
            self._test_questions = {p.question for p in self.problems("test")}
        out, i = [], 0
        while len(out) < n:  # skip the rare train problem that is word for word a test problem
            p = self._problem(split, i)
            if p.question not in self._test_questions:
                out.append(p)
            i += 1
        return out

    def prompt(self, problem: Problem) -> str:
        return f"Question: {problem.question}\nAnswer:\n"

    def sample_solution(self, problem: Problem, rng: random.Random) -> str:
        return format_solution(solution_steps(problem.data, rng))

    def teacher_solution(self, problem: Problem, rng: random.Random, canonical: bool, carry_slips: float = 0.0,
                         stops_short: float = 0.0) -> str:
        """A solution as an imperfect teacher writes it: canonical or a random valid order,
        forgetting the carry in `carry_slips` of the additions that need one, and, in
        `stops_short` of the problems that end with a get / give / share / sell operation,
        answering one step early (the quantity before that operation)."""
        write = forgets_carries(carry_slips, rng) if carry_slips else None
        steps = solution_steps(problem.data, None if canonical else rng, write)
        if stops_short and problem.data.tail and len(steps) > 1 and rng.random() < stops_short:
            steps = steps[:-1]
        return format_solution(steps)

    @staticmethod
    def steps(completion: str) -> list[str]:
        """Each line up to the `#### N` line, which is the leaf step. `a op b = c` lines are
        normalised as in step_signature (spacing, and + / * operands sorted: `6*3 = 18` and
        `3 * 6 = 18` are one step); other non-empty lines are kept as they are, so a malformed
        solution shows where it went off the rails."""
        out = []
        for line in completion.split("\n"):
            stripped = line.strip()
            if stripped.startswith("####"):
                answer = _integer(stripped[4:].strip())
                out.append(f"#### {answer if answer is not None else stripped[4:].strip()}")
                break
            steps, _ = parse_steps(line)
            if steps:
                a, op, b, c = _folded(steps[0])
                out.append(f"{a} {op} {b} = {c}")
            elif stripped:
                out.append(stripped)
        return out

    @staticmethod
    def step_key(step: str) -> str:
        return step  # `steps` already normalises

    @staticmethod
    def step_signature(completion: str) -> tuple:
        """The step sequence with + and * operands sorted (commutativity folded), then the strict
        answer, so two texts that differ only in spacing or operand order share one signature."""
        steps, _ = parse_steps(completion)
        return tuple(_folded(s) for s in steps) + (integer_answers(completion)[0],)

    def score(self, problem: Problem, completion: str) -> Score:
        strict, lenient = integer_answers(completion)
        steps, malformed = parse_steps(completion)
        valid = [s for s in steps if step_is_valid(s)]
        reference_results = {c for _, _, _, c in solution_steps(problem.data)}
        reached = reference_results & {c for _, _, _, c in valid}
        return Score(answer=strict, answer_lenient=lenient, correct=strict == problem.answer,
                     correct_lenient=lenient == problem.answer, steps_total=len(steps),
                     steps_valid=len(valid), malformed_lines=malformed,
                     dense=len(reached) / len(reference_results), extra={"reached": sorted(reached)})
