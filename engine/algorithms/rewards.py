"""The rewards a run can optimise (its config's `reward`), each a function of problems and the
completions' texts, one float per completion. `reward_function` picks one by name; every loop
sets rewards through it (rollout.with_rewards).

The task alone judges a completion (its `score`, through score_safely: a completion it cannot
judge is incorrect), so sparse and dense take it as a keyword; orm is built from a loaded outcome
reward model and the run's prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from engine.tasks.base import Problem, score_safely

if TYPE_CHECKING:
    from engine.algorithms.orm import OutcomeRewardModel

Reward = Callable[[list[Problem], list[str]], list[float]]


def sparse(problems: list[Problem], completions: list[str], *, task) -> list[float]:
    """1.0 for a correct final answer (the task's strict extraction), else 0.0.

    >>> from engine.tasks.multistep import MultiStep
    >>> task = MultiStep()
    >>> p = task.problems("test", 1)[0]  # 3 + 9
    >>> sparse([p, p], ["3 + 9 = 12\\n#### 12", "#### 13"], task=task)
    [1.0, 0.0]
    """
    return [float(score_safely(task, p, c).correct) for p, c in zip(problems, completions, strict=True)]


def dense(problems: list[Problem], completions: list[str], *, task) -> list[float]:
    """The share of the reference solution's intermediate results the completion reaches
    (Havrilla et al.'s heuristic; the task's Score.dense), in [0, 1].

    >>> from engine.tasks.multistep import MultiStep
    >>> task = MultiStep()
    >>> p = task.problems("test", 2)[1]  # 2 * 2 = 4, 8 + 4 = 12, 12 + 1 = 13
    >>> dense([p], ["2 * 2 = 4\\n#### 4"], task=task)
    [0.3333333333333333]
    """
    return [float(score_safely(task, p, c).dense) for p, c in zip(problems, completions, strict=True)]


def orm(model: OutcomeRewardModel, prompt: Callable[[Problem], str]) -> Reward:
    """The reward of an outcome reward model: its probability that the completion's final answer
    is correct, read after `prompt(problem)`, the text the policy continued."""

    def reward(problems: list[Problem], completions: list[str]) -> list[float]:
        return [float(v) for v in model.score([prompt(p) for p in problems], completions)]

    return reward


def reward_function(name: str, task, orm_model: OutcomeRewardModel | None = None,
                    prompt: Callable[[Problem], str] | None = None) -> Reward:
    """The reward called `name` (sparse, dense or orm: engine.config's REWARDS) as one function of
    (problems, completions). orm needs the loaded `orm_model` and the run's `prompt`."""
    if name == "sparse":
        return partial(sparse, task=task)
    if name == "dense":
        return partial(dense, task=task)
    if name == "orm":
        if orm_model is None or prompt is None:
            raise ValueError("the orm reward needs a loaded outcome reward model and the run's prompt")
        return orm(orm_model, prompt)
    raise ValueError(f"unknown reward {name!r}")
