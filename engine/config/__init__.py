"""Every config of reasonlab lives here, one documented dataclass each, stored whole with what it made:

    task.py      TaskSpec: a task family and its options, nested as `task` in each config below
    runs.py      the training runs': RunConfig and one subclass per algorithm (EIConfig, PPOConfig...)
    commands.py  the other commands': SFTConfig (reasonlab sft), EvalConfig (eval), ORMConfig (reward models)

`make_config("ei", base=..., sets=["k=32", "rounds=2"])` builds a run's config from the command
line's `--set field=value` pairs and validates it, so a bad value is refused before any process
starts with an error that names the field. A task option is set by its own name (`data=...`,
`gym_name=...`) or as `task.data=...`; `task=gsm8k` names the family.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from pathlib import Path

from engine.config.commands import EvalConfig, ORMConfig, SFTConfig
from engine.config.runs import (CONFIGS, PATH_FIELDS, REWARDS, SAMPLERS, ContinuedSFTConfig, EIConfig, GRPOConfig,
                                PolicyGradientConfig, PPOConfig, RCRLConfig, RoundsConfig, RunConfig, check_limits)
from engine.config.task import TASK_FIELDS, TaskSpec
from engine.errors import ReasonlabError


def parse_bool(text: str) -> bool:
    """1/true/yes/on or 0/false/no/off, in any case; ValueError otherwise."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes or no: {text!r}")


def _coerce(cls, name: str, text: str, algo: str):
    hint = typing.get_type_hints(cls)[name]
    try:
        if hint is bool:
            return parse_bool(text)
        value = hint(text) if hint in (int, float, str) else text
    except ValueError:
        kind = {int: "int (a whole number)", float: "float (a number)"}.get(hint, hint.__name__)
        raise ReasonlabError(f"{algo} config field {name} must be {kind}, got {text!r}", field=name) from None
    if hint is float and not math.isfinite(value):  # float() takes nan, inf and 1e999
        raise ReasonlabError(f"{algo} config field {name} must be a finite number, got {text!r}", field=name)
    return value


def make_config(algo: str, base: str | Path | None = None, sets: list[str] | dict | None = None,
                validate: bool = True) -> RunConfig:
    """Build (and validate) an algorithm's config from defaults, `base` and `field=value` overrides
    (a task option by its name or as task.NAME; `task` the family, or a whole TaskSpec)."""
    if algo not in CONFIGS:
        raise ReasonlabError(f"unknown algorithm {algo!r}; choose one of {', '.join(CONFIGS)}")
    cls = CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict = {}
    task: dict = {}
    items = sets.items() if isinstance(sets, dict) else [_split(s) for s in sets or []]
    for name, value in items:
        option = name.removeprefix("task.")
        if name == "task" and isinstance(value, TaskSpec | dict):
            task.update(dataclasses.asdict(value) if isinstance(value, TaskSpec) else value)
        elif name == "task" or option in TASK_FIELDS:
            key = "name" if name == "task" else option
            task[key] = _coerce(TaskSpec, key, value, algo) if isinstance(value, str) else value
        elif name not in names:
            known = ", ".join(sorted(names | set(TASK_FIELDS)))
            raise ReasonlabError(f"{algo} config has no field {name!r}; fields: {known}", field=name)
        else:
            values[name] = _coerce(cls, name, value, algo) if isinstance(value, str) else value
    if base is not None:
        values["base"] = str(base)
    for name in PATH_FIELDS:
        holder = task if name in TASK_FIELDS else values
        if isinstance(holder.get(name), str | Path) and str(holder[name]).strip():
            holder[name] = _absolute(str(holder[name]).strip(), name, algo)
    cfg = cls(**values, task=_task_spec(task, algo))
    if validate:
        cfg.validate()
    return cfg


def _absolute(path: str, name: str, algo: str) -> str:
    try:
        return str(Path(path).expanduser().resolve())
    except (ValueError, OSError, RuntimeError) as e:  # a NUL byte, a symlink loop, an unknown ~user
        raise ReasonlabError(f"{algo} config field {name} is not a usable path ({e}), got {path!r}", field=name) from None


def _task_spec(values: dict, algo: str) -> TaskSpec:
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(TaskSpec)})
    if unknown:
        raise ReasonlabError(f"{algo} config field task has no option {unknown[0]!r}; "
                             f"options: {', '.join(TASK_FIELDS)}", field="task")
    return TaskSpec(**values)


def config_from_dict(algo: str, values: dict) -> RunConfig:
    """The config a run was stored with: unknown keys from older versions are dropped, and a task
    stored flat (task name and options side by side, before TaskSpec) is nested."""
    cls = CONFIGS[algo]
    names = {f.name for f in dataclasses.fields(cls)} - {"task"}
    return cls(**{k: v for k, v in values.items() if k in names}, task=TaskSpec.from_stored(values))


def _split(item: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or not name.strip():
        raise ReasonlabError(f"--set expects field=value, got {item!r}")
    return name.strip(), value.strip()


def field_docs(cls) -> dict[str, str]:
    """{field: its docstring} of a config dataclass (the docstring under the field, the most
    derived class's): the CLI's help and the Launch form's help texts. Read from the source once
    per class (every command builds the parser; the Launch page asks on every rerun)."""
    return dict(_field_docs(cls))


@functools.cache
def _field_docs(cls) -> dict[str, str]:
    import ast
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(inspect.getsource(klass)).body[0].body
        for node, after in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


__all__ = ["CONFIGS", "PATH_FIELDS", "REWARDS", "SAMPLERS", "TASK_FIELDS", "ContinuedSFTConfig", "EIConfig",
           "EvalConfig", "GRPOConfig", "ORMConfig", "PPOConfig", "PolicyGradientConfig", "RCRLConfig", "RoundsConfig",
           "RunConfig", "SFTConfig", "TaskSpec", "check_limits", "config_from_dict", "field_docs", "make_config",
           "parse_bool"]
