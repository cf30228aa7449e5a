import random
import re

import pytest

from engine.errors import ReasonlabError
from engine.tasks import get_task
from engine.tasks.multistep import MultiStep, integer_answers, parse_steps, solution_steps, step_is_valid

TASK = MultiStep()
STEP_LINE = re.compile(r"^-?\d+ [-+*/] -?\d+ = -?\d+$")


def n_steps(problem):
    return len(problem.reference.splitlines()) - 1


def test_problems_are_deterministic_and_seeded():
    assert MultiStep().problems("test", 20) == TASK.problems("test", 20)
    assert MultiStep(seed=1).problems("test", 20) != TASK.problems("test", 20)
    assert TASK.problems("train", 5) == TASK.problems("train", 50)[:5]


@pytest.mark.parametrize("split,low,high", [("train", 1, 5), ("test", 1, 5), ("ood", 6, 8)])
def test_split_step_ranges(split, low, high):
    counts = {n_steps(p) for p in TASK.problems(split, 300)}
    assert counts == set(range(low, high + 1))


def test_ood_uses_larger_numbers():
    def biggest(split):
        return max(int(p.answer) for p in TASK.problems(split, 200))
    assert biggest("ood") > 2 * biggest("test")


def test_train_never_repeats_a_test_question():
    test = {p.question for p in TASK.problems("test")}
    assert not test & {p.question for p in TASK.problems("train", 5000)}


def test_reference_solutions_are_gsm8k_style_and_correct():
    for p in TASK.problems("test", 200) + TASK.problems("ood", 50):
        *steps, final = p.reference.splitlines()
        assert all(STEP_LINE.match(s) for s in steps)
        assert final == f"#### {p.answer}"
        score = TASK.score(p, p.reference)
        assert score.correct and score.dense == 1.0 and score.steps_valid == len(steps)
        assert score.malformed_lines == 0


def test_random_orders_are_valid_and_really_branch():
    rng = random.Random(0)
    multi = [p for p in TASK.problems("test", 200) if len(p.data.terms) >= 2]
    distinct = []
    for p in multi:
        texts = {TASK.sample_solution(p, rng) for _ in range(20)}
        for t in texts:
            s = TASK.score(p, t)
            assert s.correct and s.steps_valid == n_steps(p)
        distinct.append(len(texts))
    # at least a commuted operand, unless both operands are equal (4 + 4)
    assert sum(d >= 2 for d in distinct) >= 0.95 * len(distinct)
    assert sum(distinct) / len(distinct) > 4


def test_products_always_precede_their_use():
    rng = random.Random(1)
    for p in TASK.problems("test", 100):
        for _ in range(5):
            seen = set(int(x) for x in re.findall(r"\d+", p.question))
            for a, op, b, c in solution_steps(p.data, rng):
                assert a in seen and b in seen, (p.question, a, op, b)
                seen.add(c)


@pytest.mark.parametrize("text,strict,lenient", [
    ("3 + 4 = 7\n#### 7", "7", "7"),
    ("#### 1,234", "1234", "1234"),
    ("#### -5", "-5", "-5"),
    ("3 + 4 = 7", None, "7"),  # no final line: only the lenient extraction finds it
    ("#### 12\n#### 13", "12", "13"),  # strict takes the first, lenient the last number
    ("####", None, None),
    ("", None, None),
    ("the answer is #### 042", "42", "42"),
    ("no numbers here", None, None),
])
def test_integer_answers_are_strict_first_and_lenient_last(text, strict, lenient):
    assert integer_answers(text) == (strict, lenient)


@pytest.mark.parametrize("step,valid", [
    ((3, "+", 4, 7), True), ((3, "+", 4, 8), False), ((2, "*", 3, 6), True), ((5, "-", 7, -2), True),
    ((12, "/", 4, 3), True), ((9, "/", 2, 4), False), ((8, "/", 0, 1), False), ((0, "/", 0, 0), False),
])
def test_step_arithmetic(step, valid):
    assert step_is_valid(step) is valid


@pytest.mark.parametrize("text,steps,malformed", [
    ("3 + 4 = 7\n#### 7", [(3, "+", 4, 7)], 0),
    ("hello\n3 + 4 = 7\n#### 7", [(3, "+", 4, 7)], 1),
    ("3 + = 7\n3 ++ 4 = 7\n", [], 2),
    ("3+4=7\n 2 * 5 = 10 \n#### 10\n9 + 9 = 18", [(3, "+", 4, 7), (2, "*", 5, 10)], 0),  # after #### ignored
    ("", [], 0),
])
def test_parse_steps(text, steps, malformed):
    assert parse_steps(text) == (steps, malformed)


def test_scores_of_malformed_and_partial_solutions():
    p = next(p for p in TASK.problems("test", 100) if n_steps(p) == 3)
    first, *_ = p.reference.splitlines()
    cases = {
        "": (False, 0.0),
        "#### " + p.answer: (True, 0.0),  # right answer, no work: no step reaches anything
        first + "\n#### 0": (False, 1 / 3),
        first.replace(" = ", " = 1") + "\n#### 0": (False, 0.0),  # wrong arithmetic reaches nothing
        "garbage %%% \n\n####": (False, 0.0),
        p.reference + "\nextra": (True, 1.0),
    }
    for text, (correct, dense) in cases.items():
        s = TASK.score(p, text)
        assert s.correct is correct, text
        assert s.dense == pytest.approx(dense), text


def test_dense_reward_counts_reference_results():
    p = next(p for p in TASK.problems("test", 100) if n_steps(p) == 3)
    steps = p.reference.splitlines()[:-1]
    for k in range(4):
        assert TASK.score(p, "\n".join(steps[:k])).dense == pytest.approx(k / 3)


def test_unknown_split_and_task_are_clear_errors():
    with pytest.raises(ReasonlabError, match="unknown split 'dev'"):
        TASK.problems("dev")
    with pytest.raises(ReasonlabError, match="unknown task 'gsm9k'"):
        get_task("gsm9k")


def _carries(steps):
    return [(a, b, c) for a, op, b, c in steps if op == "+" and a % 10 + b % 10 >= 10]


def test_a_teacher_that_always_forgets_carries_writes_them_wrong_and_carries_the_error_on():
    from engine.tasks.multistep import forgets_carries

    problems = [p for p in TASK.problems("test", 200) if _carries(solution_steps(p.data))]
    assert len(problems) > 50
    for p in problems:
        steps = solution_steps(p.data, None, forgets_carries(1.0, random.Random(0)))
        assert all(c == a + b - 10 for a, b, c in _carries(steps))
        # every other step is right given what was written before it, and the chain is kept
        for a, op, b, c in steps:
            if not (op == "+" and a % 10 + b % 10 >= 10):
                assert step_is_valid((a, op, b, c)) or op == "/"
        assert TASK.score(p, TASK.teacher_solution(p, random.Random(0), True, 1.0)).correct is False


def test_a_teacher_without_slips_writes_the_reference_and_valid_orders():
    rng = random.Random(0)
    for p in TASK.problems("test", 100):
        assert TASK.teacher_solution(p, rng, True, 0.0) == p.reference
        assert TASK.score(p, TASK.teacher_solution(p, rng, False, 0.0)).correct


def test_carry_slip_rate_is_the_share_of_carries_forgotten():
    from engine.tasks.multistep import forgets_carries

    rng, forgot, total = random.Random(0), 0, 0
    write = forgets_carries(0.7, rng)
    for a in range(10, 60):
        for b in range(1, 40):
            if a % 10 + b % 10 >= 10:
                total += 1
                forgot += write(a, "+", b) == a + b - 10
            else:
                assert write(a, "+", b) == a + b
            assert write(a, "*", b) == a * b
    assert 0.65 < forgot / total < 0.75


def test_a_teacher_that_stops_short_answers_the_quantity_before_the_last_operation():
    rng = random.Random(0)
    for p in TASK.problems("test", 100):
        text = TASK.teacher_solution(p, rng, True, 0.0, stops_short=1.0)
        reference = p.reference.splitlines()
        if p.data.tail and len(reference) > 2:  # at least two steps: drop the last one
            assert text.splitlines()[:-1] == reference[:-2]
            assert TASK.score(p, text).correct is False
        else:
            assert text == p.reference


# --- steps, as analysis (trees, distinct step sequences, EI's dedup) reads them ---------------------


@pytest.mark.parametrize(
    "text, steps",
    [
        ("3 * 6 = 18\n18 + 4 = 22\n#### 22", ["3 * 6 = 18", "4 + 18 = 22", "#### 22"]),
        ("6*3 = 18\n4 + 18 = 22\n#### 22\nafter the end", ["3 * 6 = 18", "4 + 18 = 22", "#### 22"]),
        ("20 - 4 = 16\n16 / 2 = 8\n####  1,024", ["20 - 4 = 16", "16 / 2 = 8", "#### 1024"]),
        ("3 * 6 = 18\nso the total is\n\n18", ["3 * 6 = 18", "so the total is", "18"]),  # malformed kept
        ("#### x", ["#### x"]),
        ("", []),
    ],
)
def test_steps_are_normalised_lines_with_the_answer_as_leaf(text, steps):
    assert TASK.steps(text) == steps
    assert [TASK.step_key(s) for s in steps] == steps  # the labels are already normalised


def test_step_signature_folds_commutativity_and_spacing_and_ends_with_the_answer():
    a, b = "3 * 6 = 18\n18 + 4 = 22\n#### 22", "6*3 = 18\n 4 + 18=22\n#### 22"
    assert TASK.step_signature(a) == TASK.step_signature(b) == ((3, "*", 6, 18), (4, "+", 18, 22), "22")
    assert TASK.step_signature("18 - 4 = 14\n#### 14") == ((18, "-", 4, 14), "14")


def test_every_sampled_solution_has_one_tree_level_per_line():
    rng = random.Random(0)
    for p in TASK.problems("test", 50):
        text = TASK.sample_solution(p, rng)
        assert len(TASK.steps(text)) == len(text.splitlines())
        assert len(TASK.step_signature(text)) == len(text.splitlines())  # steps, then the answer


def test_number_parsing_has_one_definition_each():
    """normalise_number, extract_answer and step_signature mean one thing: answers.py's (a task's
    step_signature method is the protocol's, not a second parser)."""
    import ast
    from pathlib import Path

    import engine

    names = {"normalise_number", "extract_answer", "step_signature"}
    found = {}
    for path in Path(engine.__file__).parent.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found.setdefault(node.name, []).append(path.name)
    assert found == {name: ["answers.py"] for name in names}
