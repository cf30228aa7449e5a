"""Rewards (engine/algorithms/rewards.py): pure functions of problems and completion texts, one
float per completion, and the one place a run's reward is picked by name."""

import numpy as np
import pytest

from engine.algorithms import rewards
from engine.tasks.base import Score
from engine.tasks.multistep import MultiStep

TASK = MultiStep()
ONE_STEP, THREE_STEPS = TASK.problems("test", 2)  # 3 + 9 = 12 | 2 * 2 = 4, 8 + 4 = 12, 12 + 1 = 13


class Unjudgeable:
    """A task whose scoring raises on every completion (a third-party scorer on odd text)."""

    def score(self, problem, completion) -> Score:
        raise ValueError("cannot judge this")


@pytest.mark.parametrize("problem, completion, expected", [
    (ONE_STEP, "3 + 9 = 12\n#### 12", 1.0),
    (ONE_STEP, "#### 12", 1.0),  # the final answer alone is enough
    (ONE_STEP, "3 + 9 = 12\n#### 13", 0.0),
    (ONE_STEP, "3 + 9 = 12", 0.0),  # no `#### N` line: the strict extraction finds no answer
    (THREE_STEPS, "2 * 2 = 4\n8 + 4 = 12\n12 + 1 = 13\n#### 13", 1.0),
    (THREE_STEPS, "", 0.0),
])
def test_sparse_is_one_for_a_correct_final_answer(problem, completion, expected):
    assert rewards.sparse([problem], [completion], task=TASK) == [expected]


@pytest.mark.parametrize("problem, completion, expected", [
    (THREE_STEPS, "2 * 2 = 4\n8 + 4 = 12\n12 + 1 = 13\n#### 13", 1.0),
    (THREE_STEPS, "2 * 2 = 4\n8 + 4 = 12\n#### 12", 2 / 3),
    (THREE_STEPS, "2 * 2 = 4\n#### 4", 1 / 3),
    (THREE_STEPS, "2 * 2 = 5\n#### 5", 0.0),  # a wrong step reaches nothing
    (THREE_STEPS, "#### 13", 0.0),  # the right answer with no step reaches no intermediate result
    (ONE_STEP, "3 + 9 = 12\n#### 12", 1.0),
])
def test_dense_is_the_share_of_the_references_results_reached(problem, completion, expected):
    assert rewards.dense([problem], [completion], task=TASK) == pytest.approx([expected])


@pytest.mark.parametrize("reward", [rewards.sparse, rewards.dense])
def test_a_completion_the_task_cannot_judge_earns_nothing(reward):
    assert reward([ONE_STEP, ONE_STEP], ["#### 12", "anything"], task=Unjudgeable()) == [0.0, 0.0]


class FakeORM:
    """A loaded outcome reward model as the reward reads it: score(prompts, completions) -> (N,) array."""

    def __init__(self, table: dict[tuple[str, str], float]):
        self.table, self.calls = table, []

    def score(self, prompts, completions):
        self.calls.append((list(prompts), list(completions)))
        return np.array([self.table[p, c] for p, c in zip(prompts, completions)], dtype=np.float32)


@pytest.mark.parametrize("completions, expected", [
    (["#### 12"], [0.75]),
    (["#### 12", "#### 13", "#### 12"], [0.75, 0.25, 0.75]),
    ([], []),
])
def test_orm_is_the_models_probability_read_after_the_runs_prompt(completions, expected):
    prompt = lambda p: f"Q: {p.question}\nA:"  # noqa: E731 (the run's ctx.prompt)
    model = FakeORM({(prompt(ONE_STEP), "#### 12"): 0.75, (prompt(ONE_STEP), "#### 13"): 0.25})
    values = rewards.orm(model, prompt)([ONE_STEP] * len(completions), completions)
    assert values == pytest.approx(expected) and all(type(v) is float for v in values)
    assert model.calls == [([prompt(ONE_STEP)] * len(completions), completions)]


@pytest.mark.parametrize("name, expected", [("sparse", [1.0, 0.0]), ("dense", [1.0, 1.0])])
def test_a_reward_is_picked_by_its_config_name(name, expected):
    reward = rewards.reward_function(name, TASK)
    assert reward([ONE_STEP, ONE_STEP], ["3 + 9 = 12\n#### 12", "3 + 9 = 12\n#### 13"]) == expected


def test_the_orm_reward_needs_its_model_and_an_unknown_name_is_refused():
    model = FakeORM({("p", "#### 12"): 0.5})
    assert rewards.reward_function("orm", TASK, model, lambda p: "p")([ONE_STEP], ["#### 12"]) == [0.5]
    with pytest.raises(ValueError, match="outcome reward model"):
        rewards.reward_function("orm", TASK)
    with pytest.raises(ValueError, match="unknown reward 'exact'"):
        rewards.reward_function("exact", TASK)


def test_rollouts_get_their_rewards_as_new_rollouts():
    from engine.algorithms.rollout import Rollout, with_rewards
    from engine.sampling.base import Completion

    texts = ["3 + 9 = 12\n#### 12", "#### 7"]
    rolls = [Rollout(ONE_STEP, j, "Q", [1], Completion([2], t, [-0.1], "stop"), TASK.score(ONE_STEP, t))
             for j, t in enumerate(texts)]
    rewarded = with_rewards(rolls, rewards.reward_function("sparse", TASK))
    assert [r.reward for r in rewarded] == [1.0, 0.0]
    assert [r.reward for r in rolls] == [0.0, 0.0]  # the sampled ones are left as they were
    assert [r.completion for r in rewarded] == [r.completion for r in rolls]


def test_the_rewards_docstring_examples_hold():
    import doctest

    result = doctest.testmod(rewards)
    assert result.attempted >= 6 and result.failed == 0
