"""Task families by name. Each owns its prompts, answer extraction, checks and rewards."""

from __future__ import annotations

from engine.errors import ReasonlabError
from engine.tasks.base import Problem, Score, Task
from engine.tasks.multistep import MultiStep

TASKS = {"multistep": MultiStep}


def get_task(name: str, **options) -> Task:
    if name not in TASKS:
        raise ReasonlabError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)


__all__ = ["Problem", "Score", "Task", "TASKS", "get_task"]
