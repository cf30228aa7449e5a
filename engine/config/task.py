"""Where a run's problems come from: one `TaskSpec` (a task family and its options), nested as
`task` in every config that reads problems (runs, `reasonlab sft`, `reasonlab eval`).

    TaskSpec("gsm8k", data="/data/gsm8k.jsonl").build()   -> the task, its data file read
    TaskSpec.from_stored(run["config"])                   -> the spec of a stored run or checkpoint,
                                                              whatever version stored it

A family takes only its own options (engine/tasks/__init__.py lists which); the others keep their
defaults, and `check` refuses a config that sets one its family does not take.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine.errors import ReasonlabError


@dataclass
class TaskSpec:
    """A task family and its options (the options of the families that do not take them stay at
    their defaults)."""

    name: str = "multistep"
    """Task family whose train split gives the problems: multistep (built in), gsm8k, svamp, jsonl
    (a data file) or gym (a reasoning-gym generator)."""
    data: str = ""
    """Data file of a gsm8k / svamp / jsonl task: its train split (and its test split, about 10% of
    it by question hash, when eval_data is empty)."""
    eval_data: str = ""
    """Optional separate data file for the test split (same format as data)."""
    question_field: str = "question"
    """jsonl task: the field holding the question."""
    answer_field: str = "answer"
    """jsonl task: the field holding the answer (a number, free-form text, or a `#### N` solution)."""
    skip_bad: bool = False
    """Skip malformed lines of the data files (their count is reported) instead of refusing the file."""
    gym_name: str = ""
    """gym task: the reasoning-gym generator, e.g. gsm_symbolic, basic_arithmetic, chain_sum."""
    gym_options: str = ""
    """gym task: the generator's options as a JSON object, e.g. {"min_terms": 2, "max_terms": 4}."""
    gym_size: int = 1000
    """gym task: problems per split by default (train draws at most train_problems)."""
    gym_seed: int = 0
    """gym task: seed of the generated stream (test: its first gym_size items; train: distinct ones after)."""

    def options(self) -> dict:
        """The options its family takes, as the family's constructor's keyword arguments."""
        from engine.tasks import option_names

        return {name: getattr(self, name) for name in option_names(self.name)}

    def build(self):
        """The task (data files read, generator set up); a TaskOptionError names the option at fault."""
        from engine.tasks import get_task

        return get_task(self.name, **self.options())

    def check(self, owner: str):
        """The task, built; a problem is an error naming the config field at fault (task, data,
        eval_data, gym_name, gym_options...) as "OWNER config field NAME ..."."""
        from engine.tasks import TASKS, TaskOptionError, option_names

        def refuse(field: str, problem: str):
            raise ReasonlabError(f"{owner} config field {field} {problem}", field=field)

        if self.name not in TASKS:
            refuse("task", f"must be one of {', '.join(sorted(TASKS))}, got {self.name!r}")
        used = option_names(self.name)
        for f in dataclasses.fields(self):
            if f.name != "name" and f.name not in used and getattr(self, f.name) != f.default:
                refuse(f.name, f"is not an option of task {self.name}"
                       + (f" (its options: {', '.join(used)})" if used else " (it has none)")
                       + f", got {getattr(self, f.name)!r}")
        for name in ("question_field", "answer_field"):
            if not str(getattr(self, name)).strip():
                refuse(name, f"must name a field, got {getattr(self, name)!r}")
        try:
            return self.build()
        except TaskOptionError as e:
            raise ReasonlabError(f"{owner} config field {e.option}: {e}", field=e.option) from None
        except ReasonlabError as e:
            raise ReasonlabError(f"{owner} config field task: {e}", field="task") from None

    @classmethod
    def from_stored(cls, config: dict | None) -> TaskSpec:
        """The spec in a stored config (a run's, or a checkpoint's meta), in each shape a version
        of reasonlab stored: {"task": {"name": ..., options}} (now), {"task": NAME, "data": ...}
        (runs, flat options), {"task": NAME, "task_options": {...}} (sft and eval)."""
        config = config if isinstance(config, dict) else {}
        task = config.get("task")
        if isinstance(task, TaskSpec):  # a config's fields, not yet stored
            return task
        if isinstance(task, dict):
            values = dict(task)
        else:
            values = {"name": task or "multistep", **{k: config[k] for k in TASK_FIELDS if k in config},
                      **(config.get("task_options") or {})}
        return cls(**{k: v for k, v in values.items() if k in _NAMES and v is not None})

    def key(self) -> tuple:
        """(name, options) hashable, for caches: an option stored as a JSON object (gym_options) as
        its JSON text, which the task reads the same."""
        import json

        return self.name, tuple(sorted((k, json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v)
                                       for k, v in self.options().items()))


_NAMES = {f.name for f in dataclasses.fields(TaskSpec)}
# The options (every field but the family's name): `--set data=...` and the CLI's --data set them.
TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskSpec) if f.name != "name")
