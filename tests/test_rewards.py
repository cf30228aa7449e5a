"""Rewards (engine/algorithms/rewards.py): pure functions of the rollouts (the task's score of each,
made once when it was sampled), one float per rollout, and the one place a run's reward is picked
by name."""

import numpy as np
import pytest

from engine.algorithms import rewards
from engine.algorithms.rollout import Rollout, with_rewards
from engine.sampling.base import Completion
from engine.tasks.base import Score, score_safely
from engine.tasks.multistep import MultiStep

TASK = MultiStep()
ONE_STEP, THREE_STEPS = TASK.problems("test", 2)  # 3 + 9 = 12 | 2 * 2 = 4, 8 + 4 = 12, 12 + 1 = 13


def rollouts(problems, completions, task=TASK, prompt=lambda p: "Q"):
    """Rollouts as sample_rollouts makes them: each completion scored by the task, once."""
    return [Rollout(p, j, prompt(p), [1], Completion([2], c, [-0.1], "stop"), score_safely(task, p, c))
            for j, (p, c) in enumerate(zip(problems, completions, strict=True))]


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
    assert rewards.sparse(rollouts([problem], [completion])) == [expected]


@pytest.mark.parametrize("problem, completion, expected", [
    (THREE_STEPS, "2 * 2 = 4\n8 + 4 = 12\n12 + 1 = 13\n#### 13", 1.0),
    (THREE_STEPS, "2 * 2 = 4\n8 + 4 = 12\n#### 12", 2 / 3),
    (THREE_STEPS, "2 * 2 = 4\n#### 4", 1 / 3),
    (THREE_STEPS, "2 * 2 = 5\n#### 5", 0.0),  # a wrong step reaches nothing
    (THREE_STEPS, "#### 13", 0.0),  # the right answer with no step reaches no intermediate result
    (ONE_STEP, "3 + 9 = 12\n#### 12", 1.0),
])
def test_dense_is_the_share_of_the_references_results_reached(problem, completion, expected):
    assert rewards.dense(rollouts([problem], [completion])) == pytest.approx([expected])


@pytest.mark.parametrize("reward", [rewards.sparse, rewards.dense])
def test_a_completion_the_task_cannot_judge_earns_nothing(reward):
    assert reward(rollouts([ONE_STEP, ONE_STEP], ["#### 12", "anything"], task=Unjudgeable())) == [0.0, 0.0]


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
    values = rewards.orm(model)(rollouts([ONE_STEP] * len(completions), completions, prompt=prompt))
    assert values == pytest.approx(expected) and all(type(v) is float for v in values)
    assert model.calls == [([prompt(ONE_STEP)] * len(completions), completions)]


@pytest.mark.parametrize("name, expected", [("sparse", [1.0, 0.0]), ("dense", [1.0, 1.0])])
def test_a_reward_is_picked_by_its_config_name(name, expected):
    reward = rewards.reward_function(name)
    assert reward(rollouts([ONE_STEP, ONE_STEP], ["3 + 9 = 12\n#### 12", "3 + 9 = 12\n#### 13"])) == expected


def test_the_orm_reward_needs_its_model_and_an_unknown_name_is_refused():
    model = FakeORM({("p", "#### 12"): 0.5})
    assert rewards.reward_function("orm", model)(rollouts([ONE_STEP], ["#### 12"], prompt=lambda p: "p")) == [0.5]
    with pytest.raises(ValueError, match="outcome reward model"):
        rewards.reward_function("orm")
    with pytest.raises(ValueError, match="unknown reward 'exact'"):
        rewards.reward_function("exact")


def test_rollouts_get_their_rewards_as_new_rollouts():
    rolls = rollouts([ONE_STEP, ONE_STEP], ["3 + 9 = 12\n#### 12", "#### 7"])
    rewarded = with_rewards(rolls, rewards.reward_function("sparse"))
    assert [r.reward for r in rewarded] == [1.0, 0.0]
    assert [r.reward for r in rolls] == [0.0, 0.0]  # the sampled ones are left as they were
    assert [r.completion for r in rewarded] == [r.completion for r in rolls]
