"""Task families by name. Each owns its prompts, answer extraction, checks and rewards.

    multistep   the built-in procedural word problems (no options)
    gsm8k       GSM8K JSONL file(s)            options: data, eval_data, skip_bad
    svamp       SVAMP JSON file(s)             options: data, eval_data, skip_bad
    jsonl       any question/answer JSONL      options: data, eval_data, skip_bad, question_field, answer_field
    gym         a reasoning-gym generator      options: gym_name, gym_options, gym_size, gym_seed

A config holds a task as a TaskSpec (engine/config/task.py): the family's name and its options, the
fields of the same names (and the CLI's flags); `spec.build()` rebuilds the task when a run resumes.
"""

from __future__ import annotations

import inspect

from engine.errors import ReasonlabError
from engine.tasks.base import Problem, Score, Task
from engine.tasks.files import GSM8K, SVAMP, JSONLTask, TaskOptionError
from engine.tasks.gym import Gym
from engine.tasks.multistep import MultiStep

TASKS = {"multistep": MultiStep, "gsm8k": GSM8K, "svamp": SVAMP, "jsonl": JSONLTask, "gym": Gym}
DESCRIPTIONS = {"multistep": "built-in word problems", "gsm8k": "GSM8K JSONL file", "svamp": "SVAMP JSON file",
                "jsonl": "question/answer JSONL file", "gym": "reasoning-gym generator"}


def get_task(name: str, **options) -> Task:
    if name not in TASKS:
        raise ReasonlabError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)


def option_names(name: str) -> tuple[str, ...]:
    """The options a task family takes (its constructor's keyword arguments)."""
    if name not in TASKS or name == "multistep":
        return ()
    return tuple(inspect.signature(TASKS[name].__init__).parameters)[1:]


__all__ = ["Problem", "Score", "Task", "TASKS", "TaskOptionError", "get_task", "option_names"]
