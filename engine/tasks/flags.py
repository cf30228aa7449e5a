"""The command line's task flags (--task, --data, --gym-name...), shared by `reasonlab sft`, `eval`
and `train`: one per TaskSpec field (engine/config/task.py), with its doc as the help, and a task
refuses a flag it does not take."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from engine.config import TASK_FIELDS, TaskSpec, field_docs
from engine.errors import ReasonlabError
from engine.tasks import TASKS, option_names


def add_task_flags(p: argparse.ArgumentParser, default_task: str | None = "multistep") -> None:
    g = p.add_argument_group("task", "the problems: built in, from a data file, or a reasoning-gym generator")
    docs, hints = field_docs(TaskSpec), typing.get_type_hints(TaskSpec)
    g.add_argument("--task", default=default_task, help=docs["name"])
    for f in dataclasses.fields(TaskSpec):
        if f.name == "name":
            continue
        # no defaults here: a flag not given leaves the option to the task (and `eval` to the checkpoint's)
        help = docs[f.name].replace("%", "%%") + ("" if f.default in ("", False) else f" (default {f.default})")
        if hints[f.name] is bool:
            g.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", default=None, help=help)
        else:
            g.add_argument(f"--{f.name.replace('_', '-')}", type=hints[f.name], help=help)


def task_options_from_flags(task: str, args) -> dict:
    """The flags the task takes, as its options (paths made absolute); a flag it does not take is an error."""
    if task not in TASKS:
        raise ReasonlabError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))}")
    given = {k: getattr(args, k) for k in TASK_FIELDS if getattr(args, k, None) is not None}
    for name in given:
        if name not in option_names(task):
            raise ReasonlabError(f"--{name.replace('_', '-')} is not an option of task {task}")
    for name in ("data", "eval_data"):
        if given.get(name):
            given[name] = str(Path(given[name]).expanduser().resolve())
    return given


def task_spec(args) -> TaskSpec:
    """The task the flags name (sft: the built-in one when --task is not given)."""
    name = args.task or "multistep"
    return TaskSpec(name, **task_options_from_flags(name, args))


def task_sets(args) -> list[str]:
    """The task flags as `--set field=value` items (train)."""
    items = [f"task={args.task}"] if getattr(args, "task", None) else []
    if getattr(args, "trust_remote_code", None):
        items.append("trust_remote_code=true")
    return items + [f"{k}={getattr(args, k)}" for k in TASK_FIELDS if getattr(args, k, None) is not None]


def eval_task(args, meta: dict) -> TaskSpec:
    """The task to evaluate on: the flags, else the task the checkpoint was trained on (its options
    overridden by the flags given), else multistep."""
    if args.task:
        return task_spec(args)
    stored = TaskSpec.from_stored(meta.get("config"))
    return dataclasses.replace(stored, **task_options_from_flags(stored.name, args))
