"""reasoning-gym generators as a task: any generator by name with size, seed and options, scored by
the generator's own score_answer (correct only at 1.0; a scorer that raises is incorrect, never a crash)."""

import sys

import pytest

from engine.config import EvalConfig, TaskSpec, make_config
from engine.errors import ReasonlabError
from engine.evaluation.evaluate import evaluate
from engine.sampling.base import Completion
from engine.tasks import TaskOptionError, get_task

pytest.importorskip("reasoning_gym", reason="reasoning-gym is the optional extra `gym` (part of `dev`)")

GENERATORS = ["gsm_symbolic", "basic_arithmetic", "chain_sum", "leg_counting", "products"]


@pytest.mark.parametrize("name", GENERATORS)
def test_each_generator_gives_problems_its_own_scorer_accepts(name):
    task = get_task("gym", gym_name=name, gym_size=6, gym_seed=3)
    problems = task.problems("test")
    assert [p.id for p in problems] == [f"test-{i}" for i in range(6)]
    for p in problems:
        assert p.question and p.answer
        assert task.score(p, f"Let me think.\n#### {p.answer}").correct
        assert task.score(p, f"<answer>{p.answer}</answer>").correct
        assert not task.score(p, "#### definitely wrong").correct
        assert p.reference.rstrip().endswith(f"#### {p.answer}")


def test_problems_are_deterministic_and_train_never_repeats_a_test_question():
    task = get_task("gym", gym_name="chain_sum", gym_size=50, gym_seed=1)
    again = get_task("gym", gym_name="chain_sum", gym_size=50, gym_seed=1)
    assert [p.question for p in task.problems("train", 20)] == [p.question for p in again.problems("train", 20)]
    test = {p.question for p in task.problems("test")}
    train = task.problems("train", 200)
    assert len(train) == 200 and not test & {p.question for p in train}
    other_seed = get_task("gym", gym_name="chain_sum", gym_size=50, gym_seed=2)
    assert [p.question for p in other_seed.problems("test")] != [p.question for p in task.problems("test")]


@pytest.mark.parametrize("seed", [0, -1, 2**40])
@pytest.mark.parametrize("name", GENERATORS)
def test_with_the_default_gym_size_train_holds_what_is_asked_and_never_a_test_question(name, seed):
    # Before: train came from seed s and test from s + 1, the same items shifted by one, so 500
    # training problems asked for gave 1 (and gym_seed=-1, whose Random(-1) is Random(1), gave 0).
    task = get_task("gym", gym_name=name, gym_size=1000, gym_seed=seed)
    test = {p.question for p in task.problems("test")}
    for n in (500, 1000):
        train = [p.question for p in task.problems("train", n)]
        assert len(train) == len(set(train)) == n and not test & set(train)


def test_a_huge_seed_is_not_a_neighbour_of_another():
    questions = [{p.question for p in get_task("gym", gym_name="chain_sum", gym_size=50, gym_seed=s).problems("test")}
                 for s in (10**30, 10**30 + 1, -(10**30))]
    assert not questions[0] & questions[1] and not questions[0] & questions[2]


def test_the_test_split_does_not_depend_on_the_train_pool_drawn():
    task = get_task("gym", gym_name="gsm_symbolic", gym_size=20, gym_seed=4)
    before = [p.question for p in task.problems("test")]
    task.problems("train", 300)
    again = get_task("gym", gym_name="gsm_symbolic", gym_size=20, gym_seed=4)
    assert [p.question for p in again.problems("test")] == before
    assert len(task.problems("test", 500)) == 20  # the split is gym_size problems; train starts after them


def test_a_generator_with_few_questions_is_refused_naming_both_fields():
    # 1-digit products of two terms: at most 100 questions, so 1000 distinct training problems cannot exist
    few = dict(gym_name="products", gym_options={"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
               gym_size=20)
    with pytest.raises(TaskOptionError) as e:
        get_task("gym", **few).problems("train", 1000)
    assert e.value.option == "train_problems"
    assert "asks for 1000 training problems" in str(e.value) and "gym_size" in str(e.value)
    assert "gave only" in str(e.value)
    train = get_task("gym", **few).problems("train", 30)
    assert len({p.question for p in train}) == 30


def test_a_run_whose_pool_the_generator_cannot_fill_is_refused_before_it_is_queued(untrained_checkpoint):
    base = untrained_checkpoint
    few = ["task=gym", "gym_name=products", 'gym_options={"min_terms": 2, "max_terms": 2, "min_digits": 1, '
                                            '"max_digits": 1}', "gym_size=20"]
    with pytest.raises(ReasonlabError, match="ei config field train_problems: asks for 20000 training problems"):
        make_config("ei", base=base, sets=few)
    assert make_config("ei", base=base, sets=few + ["train_problems=40"]).train_problems == 40


def test_gsm_symbolic_references_are_worked_solutions():
    task = get_task("gym", gym_name="gsm_symbolic", gym_size=2)
    p = task.problems("test")[0]
    assert "\n" in p.reference and p.reference.rstrip().endswith(f"#### {p.answer}")
    assert task.sample_solution(p) == p.reference


def test_options_reach_the_generator():
    task = get_task("gym", gym_name="chain_sum", gym_options='{"min_terms": 5, "max_terms": 5, "min_digits": 1, '
                                                            '"max_digits": 1}', gym_size=10)
    for p in task.problems("test"):
        assert p.data["metadata"]["num_terms"] == 5
        assert p.question.count("+") + p.question.count(" - ") == 4
    as_dict = get_task("gym", gym_name="chain_sum", gym_options={"min_terms": 5, "max_terms": 5}, gym_size=3)
    assert all(p.data["metadata"]["num_terms"] == 5 for p in as_dict.problems("test"))


@pytest.mark.parametrize("options, option, message", [
    (dict(gym_name=""), "gym_name", "required for task gym"),
    (dict(gym_name="chain_summ"), "gym_name", "unknown reasoning-gym generator 'chain_summ'; did you mean chain_sum"),
    (dict(gym_name="chain_sum", gym_options="{min_terms: 2}"), "gym_options", "not a JSON object"),
    (dict(gym_name="chain_sum", gym_options="[2, 3]"), "gym_options", "must be a JSON object"),
    (dict(gym_name="chain_sum", gym_options='{"no_such_option": 1}'), "gym_options", "rejected by chain_sum"),
    (dict(gym_name="chain_sum", gym_options='{"min_terms": 0}'), "gym_options", "rejected by chain_sum"),
    (dict(gym_name="chain_sum", gym_options='{"seed": 3}'), "gym_options", "set the seed with gym_seed"),
    (dict(gym_name="chain_sum", gym_size=0), "gym_size", "must be >= 1"),
])
def test_bad_options_name_their_field(options, option, message):
    with pytest.raises(TaskOptionError) as e:
        get_task("gym", **options)
    assert e.value.option == option and message in str(e.value)


def test_without_reasoning_gym_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    monkeypatch.setitem(sys.modules, "reasoning_gym.factory", None)
    with pytest.raises(TaskOptionError, match=r"pip install 'reasonlab\[gym\]'"):
        get_task("gym", gym_name="chain_sum")


# -- scoring ------------------------------------------------------------------------------------------


@pytest.fixture
def chain():
    task = get_task("gym", gym_name="basic_arithmetic", gym_size=3)
    return task, task.problems("test")[0]


def test_answer_tags_win_over_the_hash_line(chain):
    task, p = chain
    assert task.score(p, f"#### 0\n<answer>{p.answer}</answer>").correct
    assert not task.score(p, f"#### {p.answer}\n<answer>nope</answer>").correct
    score = task.score(p, f"#### {p.answer}")
    assert score.answer == p.answer and score.dense == 1.0 and score.extra["score"] == 1.0


@pytest.mark.parametrize("value, correct, dense", [(1.0, True, 1.0), (0.999, False, 0.999), (0.5, False, 0.5),
                                                    (0.0, False, 0.0), (7.0, False, 0.0), (-1.0, False, 0.0)])
def test_correct_only_at_a_score_of_exactly_one(chain, monkeypatch, value, correct, dense):
    task, p = chain
    monkeypatch.setattr(type(task._dataset(1)), "score_answer", lambda self, answer, entry: value)
    score = task.score(p, "#### 12")
    assert (score.correct, score.dense) == (correct, dense)


def test_a_scorer_that_raises_counts_as_incorrect(chain, monkeypatch):
    task, p = chain

    def broken(self, answer, entry):
        raise KeyError("metadata")

    monkeypatch.setattr(type(task._dataset(1)), "score_answer", broken)
    score = task.score(p, f"#### {p.answer}")
    assert score.correct is False and score.correct_lenient is False and score.dense == 0.0
    assert score.extra["scorer_error"] == "KeyError: 'metadata'"


def test_no_answer_is_not_sent_to_the_scorer(chain, monkeypatch):
    task, p = chain
    calls = []
    monkeypatch.setattr(type(task._dataset(1)), "score_answer",
                        lambda self, answer, entry: calls.append(answer) or 1.0)
    assert not task.score(p, "I am not sure").correct
    assert calls == []


# -- through evaluation and the config -------------------------------------------------------------------


class CannedSampler:
    """Answers every problem right when greedy, wrong in odd samples: a sampler with known output."""

    tokenizer = None

    def __init__(self, answers):
        self.answers = answers  # prompt -> the right answer

    def sample(self, prompts, n=1, temperature=1.0, top_p=1.0, max_new_tokens=128, seed=0, stop=()):
        def text(prompt, j):
            return f"#### {self.answers[prompt]}" if temperature == 0 or j % 2 == 0 else "#### -999999"
        return [[Completion([1], text(p, j), [-0.1], "stop") for j in range(n)] for p in prompts]


def test_evaluation_on_a_generator():
    task = get_task("gym", gym_name="leg_counting", gym_size=4)
    answers = {task.prompt(p): p.answer for p in task.problems("test")}
    cfg = EvalConfig(task=TaskSpec("gym", gym_name="leg_counting", gym_size=4), k=4)
    metrics, rows = evaluate(CannedSampler(answers), cfg)
    assert metrics["maj@1"] == 1.0 and metrics["pass@1"] == pytest.approx(0.5) and metrics["pass@4"] == 1.0
    assert metrics["problems"] == 4 and {r["task"] for r in rows} == {"gym"} and metrics["unjudged"] == 0


def test_config_names_the_gym_field(untrained_checkpoint):
    base = untrained_checkpoint
    cfg = make_config("grpo", base=base, sets=["task=gym", "gym_name=chain_sum", 'gym_options={"min_terms": 3}'])
    assert cfg.task.gym_options == '{"min_terms": 3}'
    with pytest.raises(ReasonlabError, match="grpo config field gym_name: unknown reasoning-gym generator"):
        make_config("grpo", base=base, sets=["task=gym", "gym_name=chainsum"])
    with pytest.raises(ReasonlabError, match="ei config field gym_options: rejected by products"):
        make_config("ei", base=base, sets=["task=gym", "gym_name=products", 'gym_options={"terms": 3}'])


def test_a_gym_run_logs_how_many_training_problems_its_pool_holds(untrained_checkpoint, tmp_path):
    from types import SimpleNamespace

    from engine import dashboard
    from engine.algorithms.context import RunContext
    from engine.store import Store

    cfg = make_config("ei", base=untrained_checkpoint, sets=["task=gym", "gym_name=chain_sum", "train_problems=500"])
    with Store() as s:
        run_id = s.create_run("ei", cfg.__dict__.copy(), total=1)
        ctx = RunContext(s, run_id, cfg, tmp_path / "run")
        ctx.use_tokenizer(SimpleNamespace(chat_template=None))
        metrics = dashboard.run_metrics(s, run_id)
        log = dashboard.run_log(s, dashboard.run_detail(s, run_id), metrics)
    assert metrics.set_index("name")["value"]["data/train_pool"] == 500  # was 1 with the default gym_size
    assert "step 0 · 0 samples · data/train_pool 500" in log  # the Runs page's log
