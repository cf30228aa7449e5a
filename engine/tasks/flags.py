"""The command line's task flags (--task, --data, --gym-name...), shared by `reasonlab sft`, `eval`
and `train`: each is the RunConfig field of the same name, and a task refuses a flag it does not take."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.config import TASK_FIELDS
from engine.errors import ReasonlabError
from engine.tasks import TASKS, option_names, task_options

# the RunConfig fields of the same names (engine/tasks/__init__.py lists which task takes which)
TASK_FLAGS = TASK_FIELDS


def add_task_flags(p: argparse.ArgumentParser, default_task: str | None = "multistep") -> None:
    g = p.add_argument_group("task", "the problems: built in, from a data file, or a reasoning-gym generator")
    g.add_argument("--task", default=default_task, help="multistep (built in), gsm8k, svamp, jsonl or gym")
    g.add_argument("--data", help="data file of a gsm8k / svamp / jsonl task (train split; test is ~10%% of it "
                                  "by question hash unless --eval-data is given)")
    g.add_argument("--eval-data", help="separate data file for the test split")
    g.add_argument("--question-field", help="jsonl: the question's field (default question)")
    g.add_argument("--answer-field", help="jsonl: the answer's field (default answer)")
    g.add_argument("--skip-bad", action="store_true", default=None,
                   help="skip malformed lines of the data files (and report how many) instead of refusing them")
    g.add_argument("--gym-name", help="gym: the reasoning-gym generator, e.g. chain_sum")
    g.add_argument("--gym-options", help='gym: the generator\'s options as JSON, e.g. \'{"min_terms": 3}\'')
    g.add_argument("--gym-size", type=int, help="gym: problems per split (default 1000)")
    g.add_argument("--gym-seed", type=int, help="gym: seed of the train split (test: seed + 1)")


def task_options_from_flags(task: str, args) -> dict:
    """The flags the task takes, as its options (paths made absolute); a flag it does not take is an error."""
    if task not in TASKS:
        raise ReasonlabError(f"unknown task {task!r}; choose one of {', '.join(sorted(TASKS))}")
    given = {k: getattr(args, k) for k in TASK_FLAGS if getattr(args, k, None) is not None}
    for name in given:
        if name not in option_names(task):
            raise ReasonlabError(f"--{name.replace('_', '-')} is not an option of task {task}")
    for name in ("data", "eval_data"):
        if given.get(name):
            given[name] = str(Path(given[name]).expanduser().resolve())
    return given


def task_sets(args) -> list[str]:
    """The task flags as `--set field=value` items (train)."""
    items = [f"task={args.task}"] if getattr(args, "task", None) else []
    if getattr(args, "trust_remote_code", None):
        items.append("trust_remote_code=true")
    return items + [f"{k}={getattr(args, k)}" for k in TASK_FLAGS if getattr(args, k, None) is not None]


def eval_task(args, meta: dict) -> tuple[str, dict]:
    """The task to evaluate on: the flags, else the task the checkpoint was trained on, else multistep."""
    if args.task:
        return args.task, task_options_from_flags(args.task, args)
    config = meta.get("config") or {}
    task = config.get("task") or "multistep"
    options = config.get("task_options") or task_options(task, config)  # sft stores a dict, runs flat fields
    options.update(task_options_from_flags(task, args))
    return task, options
