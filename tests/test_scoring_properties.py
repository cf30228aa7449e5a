"""Scoring is total: any text a model writes gets a Score (incorrect when it cannot be judged),
extraction reads it in one pass, and a data file's malformed line is an error naming file and line.
Property-based (hypothesis): arbitrary unicode (lone surrogates too), long digit runs, exponents,
deep nesting. No timings are asserted; pytest-timeout stops a pass that does not end."""

import itertools
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import ReasonlabError
from engine.tasks import answers, get_task
from engine.tasks.base import Problem, Score, score_safely
from engine.tasks.files import in_test
from engine.tasks.multistep import MultiStep

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])

PIECES = ["####", "#### ", "Question:", "=", " = ", "+", "-", "*", "/", "x", "×", "÷", ".", ",", "$", "\n", " ",
          "e", "E+", "^", "**", "!", "{", "}", "(", ")", "[", "]", "<<", ">>", "<answer>", "</answer>", "\\frac{1}{2}",
          "\\sqrt", "\\infty", "nan", "inf", "1/2", "0.5", "-0", "\ud800", "\udfff", "\x00", "\u202e", "٣"]
chars = st.one_of(st.characters(), st.characters(categories=["Cs"]))  # any code point, lone surrogates too
digit_runs = st.integers(1, 30_000).map(lambda n: "9" * n)
decimals = st.tuples(st.integers(1, 40), st.integers(1, 12)).map(lambda t: "1" * t[0] + "." + "3" * t[1])
exponents = st.integers(-10**6, 10**6).map(lambda e: f"1e{e}")
nesting = st.integers(1, 5000).map(lambda n: "(" * n + "1" + ")" * n)
piece = st.one_of(st.sampled_from(PIECES), st.text(max_size=8), st.integers(-10**40, 10**40).map(str),
                  decimals, exponents)
texts = st.one_of(st.lists(piece, max_size=40).map("".join),
                  st.tuples(st.lists(piece, max_size=6).map("".join), st.one_of(digit_runs, nesting),
                            st.lists(piece, max_size=6).map("".join)).map("".join),
                  st.text(alphabet=chars, max_size=200))


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """One task of each family that scores free text, with a problem of each."""
    data = tmp_path_factory.mktemp("data") / "qa.jsonl"
    rows = [{"question": "Ann has 3 apples and buys 2. How many?", "answer": "3 + 2 = 5 <<3+2=5>>\n#### 5"},
            {"question": "Half of one?", "answer": "\\frac{1}{2}"}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = [(get_task("jsonl", data=str(data)), p) for p in get_task("jsonl", data=str(data)).problems("all")]
    pytest.importorskip("reasoning_gym")
    for name in ("chain_sum", "gsm_symbolic"):
        gym = get_task("gym", gym_name=name, gym_size=2)
        out.append((gym, gym.problems("test")[0]))
    return out


@SETTINGS
@given(text=texts)
def test_extraction_and_normalisation_never_raise(text):
    strict, flexible = answers.extract_answer(text)
    for value in (strict, flexible):
        assert value is None or isinstance(value, str)
    assert answers.normalise_number(text) is None or answers.normalise_number(text) == answers.normalise_number(
        answers.normalise_number(text))  # normalising is idempotent
    for step in answers.equations(text):
        assert answers.equation_is_valid(step) in (True, False)
    answers.numbers_in(text)
    answers.step_signature(text)
    for step in answers.solution_steps(text):
        hash(answers.step_key(step))
    in_test(text)


@SETTINGS
@given(text=texts, reference=st.sampled_from(["5", "0.5", "-3", "\\frac{1}{2}", "x + 1", "cab", "1" * 40]))
def test_equivalence_is_a_yes_or_no_for_any_answer(text, reference):
    assert answers.equivalent(text, reference) in (True, False)
    assert answers.equivalent(answers.extract_strict(text), reference) in (True, False)


@SETTINGS
@given(text=texts)
def test_every_task_scores_any_text(tasks, text):
    for task, problem in tasks:
        score = task.score(problem, text)  # the task itself: score_safely is the net, not the fix
        assert isinstance(score, Score) and score.correct in (True, False) and not score.unjudged
        assert 0.0 <= score.dense <= 1.0


@SETTINGS
@given(text=texts)
def test_the_builtin_task_scores_and_splits_any_text(text):
    task = MultiStep()
    score = task.score(task.problems("test", 1)[0], text)  # a 5000-digit step raised int()'s ValueError
    assert isinstance(score, Score) and score.correct in (True, False)
    task.steps(text)
    task.step_signature(text)


@SETTINGS
@given(text=st.lists(st.sampled_from(["<answer>", "</answer>", " ", "\n", "7", "a", "<", ">", "/"]), max_size=30)
       .map("".join))
def test_answer_tags_pair_as_reasoning_gyms_regex_does(text):
    from engine.tasks.gym import answer_tags

    regex = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.DOTALL)  # reasoning_gym.utils.extract_answer's
    assert answer_tags(text) == [m.strip() for m in regex.findall(text)]


@pytest.mark.timeout(120)  # a guard, not a measurement
@pytest.mark.parametrize("text", ["<answer>" * 40_000, "<answer>1</answer>" * 20_000 + "<answer>" * 20_000])
def test_answer_tags_are_read_in_one_pass(text):
    from engine.tasks.gym import extract

    extract(text)


def test_a_score_that_raises_is_unjudged_and_incorrect():
    class Broken:
        def score(self, problem, completion):
            raise RecursionError("maximum recursion depth exceeded")

    problem = Problem(id="test-0", question="q", answer="1", reference="#### 1")
    score = score_safely(Broken(), problem, "#### 1")
    assert score.unjudged and not score.correct and not score.correct_lenient
    assert score.extra["score_error"] == "RecursionError: maximum recursion depth exceeded"
    builtin = MultiStep().problems("test", 1)[0]
    assert score_safely(MultiStep(), builtin, f"#### {builtin.answer}").correct


# -- data files ----------------------------------------------------------------------------------------

_files = itertools.count()
scalars = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(), st.text(alphabet=chars))
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["question", "answer", "x"]), inner, max_size=3)),
    max_leaves=8)
LONG = "1" * 29 + ".1234567"
bad_values = st.sampled_from(["9" * 5000, "[" * 100_000, "{" * 3, '"\\ud800"', "1e999", "-1e999", "NaN", "Infinity",
                              '"\\u0000"', "[" * 990 + "]" * 990, f'"#### {LONG}"'])
starts = st.sampled_from(['{"question": "q", "answer": ', '{"question": ', "", '{"answer": "#### 1", "question": '])
lines = st.one_of(json_values.map(json.dumps),
                  json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),  # raw U+2028, U+0085, surrogates
                  st.tuples(starts, bad_values).map(lambda t: t[0] + t[1] + "}"))


@SETTINGS
@given(bad=lines, kind=st.sampled_from(["gsm8k", "svamp", "jsonl"]), skip=st.booleans())
def test_a_data_file_loads_or_names_file_and_line(tmp_path_factory, bad, kind, skip):
    good = {"gsm8k": {"question": "q", "answer": "#### 5"}, "svamp": {"Body": "b.", "Question": "q", "Answer": 5},
            "jsonl": {"question": "q", "answer": "5"}}[kind]
    path = tmp_path_factory.getbasetemp() / f"data-{next(_files)}.jsonl"
    text = "\n".join([json.dumps(good), bad, json.dumps(good)]) + "\n"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # a lone surrogate: bytes that are not UTF-8
    try:
        task = get_task(kind, data=str(path), skip_bad=skip)
    except ReasonlabError as e:
        assert f"{path}, line 2" in str(e) and not skip
    else:
        assert len(task.problems("all")) in (2, 3) and len(task.skipped) == 3 - len(task.problems("all"))
