"""The rewards a run can optimise (its config's `reward`), each a function of the step's rollouts
(rollout.Rollout), one float per rollout. `reward_function` picks one by name; every loop sets
rewards through it (rollout.with_rewards).

The task alone judges a completion: sample_rollouts scored each one once (its `score`, through
score_safely: a completion the task cannot judge is incorrect), and sparse and dense read that
score. orm is built from a loaded outcome reward model and reads each rollout's prompt text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.algorithms.orm import OutcomeRewardModel
    from engine.algorithms.rollout import Rollout

Reward = Callable[[list["Rollout"]], list[float]]


def sparse(rollouts: list[Rollout]) -> list[float]:
    """1.0 for a correct final answer (the task's strict extraction, its Score.correct), else 0.0."""
    return [float(r.score.correct) for r in rollouts]


def dense(rollouts: list[Rollout]) -> list[float]:
    """The share of the reference solution's intermediate results the completion reaches
    (Havrilla et al.'s heuristic; the task's Score.dense), in [0, 1]."""
    return [float(r.score.dense) for r in rollouts]


def orm(model: OutcomeRewardModel) -> Reward:
    """The reward of an outcome reward model: its probability that the completion's final answer
    is correct, read after the rollout's prompt, the text the policy continued."""

    def reward(rollouts: list[Rollout]) -> list[float]:
        return [float(v) for v in model.score([r.prompt_text for r in rollouts],
                                              [r.completion.text for r in rollouts])]

    return reward


def reward_function(name: str, orm_model: OutcomeRewardModel | None = None) -> Reward:
    """The reward called `name` (sparse, dense or orm: engine.config's REWARDS) as one function of
    the rollouts. orm needs the loaded `orm_model`."""
    if name == "sparse":
        return sparse
    if name == "dense":
        return dense
    if name == "orm":
        if orm_model is None:
            raise ValueError("the orm reward needs a loaded outcome reward model")
        return orm(orm_model)
    raise ValueError(f"unknown reward {name!r}")
