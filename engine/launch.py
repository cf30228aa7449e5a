"""The Launch page's logic: a form's fields from an algorithm's documented config, size presets,
validation that names the field at fault, and queueing the run in the background.

    fields("ppo")                       -> [Field(name, doc, default, kind, choices, shared, group), ...]
    task_fields("gsm8k")                -> the task's own inputs (data file, eval file, skip_bad...)
    check("ppo", base, {"n": 1, ...})   -> Checked(cfg or None, field at fault, message)
    launch(store, checked.cfg)          -> run id (queued; a worker process trains it)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from engine import jobs
from engine.quickstart import QUICKSTART_EI
from engine.algorithms import ALGORITHMS
from engine.config import CONFIGS, REWARDS, SAMPLERS, RunConfig, TaskSpec, field_docs, make_config, parse_bool
from engine.errors import ReasonlabError
from engine.limits import RANGES
from engine.model.checkpoint import DTYPES
from engine.model.prompts import PROMPT_FORMATS
from engine.tasks import DESCRIPTIONS, option_names
from engine.tasks.gym import generators

# Chosen above the generic fields: what to train and on which problems (and the task's own inputs).
TOP_FIELDS = ("base", "task", "eval_split")
# How the base model is loaded, prompted and adapted: a group of their own.
MODEL_FIELDS = ("prompt_format", "dtype", "trust_remote_code", "lora_r", "lora_alpha", "lora_dropout", "lora_targets")
CHOICES = {"reward": REWARDS, "dedup": ("exact", "steps"), "device": ("cpu", "cuda"), "prompt_format": PROMPT_FORMATS,
           "dtype": DTYPES, "sampler": SAMPLERS}
TASK_LABELS = DESCRIPTIONS  # task -> what it reads
LABELS = {name: a.label for name, a in ALGORITHMS.items()}  # algorithm -> its name on the page

# Size presets: overrides applied on top of the config defaults. "smoke test" is the budget of
# the training tests (seconds on a laptop: it checks the pipeline, it does not learn).
SMOKE_SHARED = {"max_new_tokens": 24, "eval_limit": 3, "eval_k": 2, "train_problems": 64, "sample_batch_size": 64}
_SMOKE_ROUNDS = {"rounds": 2, "k": 3, "problems_per_round": 4, "sft_max_steps": 3, "batch_size": 4}
_SMOKE_STEPS = {"steps": 2, "prompts_per_step": 3, "n": 2, "minibatch_size": 4, "checkpoint_every": 1}
_QUICK_ROUNDS = dict(item.split("=", 1) for item in QUICKSTART_EI)  # the quickstart's expert iteration
_QUICK_STEPS = {"steps": 30, "prompts_per_step": 32, "checkpoint_every": 10}


def _unsampled(preset: dict) -> dict:
    """A rounds preset without the sampling fields continued SFT does not have (it samples nothing)."""
    return {k: v for k, v in preset.items() if k not in ("k", "dedup")}


SIZES = {
    "defaults": {algo: {} for algo in CONFIGS},
    "quick": {"ei": _QUICK_ROUNDS, "rcrl": _QUICK_ROUNDS, "ppo": _QUICK_STEPS, "grpo": _QUICK_STEPS,
              "sft": _unsampled(_QUICK_ROUNDS)},
    "smoke test": {"ei": {**SMOKE_SHARED, **_SMOKE_ROUNDS}, "rcrl": {**SMOKE_SHARED, **_SMOKE_ROUNDS, "rounds": 1},
                   "ppo": {**SMOKE_SHARED, **_SMOKE_STEPS}, "grpo": {**SMOKE_SHARED, **_SMOKE_STEPS},
                   "sft": {**SMOKE_SHARED, **_unsampled(_SMOKE_ROUNDS)}},
}
SIZE_HELP = ("defaults: the documented defaults (the paper's recipe at laptop scale: tens of minutes); "
             "quick: a few minutes on 2 CPU cores; smoke test: seconds, checks the pipeline, learns nothing")


@dataclass
class Field:
    name: str
    doc: str  # the config field's docstring: the form's help text
    default: object  # after the size preset
    kind: str  # "bool" | "int" | "float" | "str" | "choice"
    choices: tuple = ()
    shared: bool = False  # a field every algorithm has (sampling, evaluation), not the algorithm's own
    group: str = "algorithm"  # algorithm | shared (sampling and evaluation) | model | task


def fields(algo: str, size: str = "defaults") -> list[Field]:
    """The form of an algorithm: its own fields first, then the shared ones (sampling and
    evaluation, then the model's); base, task, eval_split and the task's options are left to the
    page's top controls."""
    if algo not in CONFIGS:
        raise ReasonlabError(f"unknown algorithm {algo!r}; choose one of {', '.join(CONFIGS)}")
    hints = {f.name: f.type for f in dataclasses.fields(CONFIGS[algo])}
    shared = {f.name for f in dataclasses.fields(RunConfig)}
    preset = SIZES[size][algo]
    out = []
    for name, doc, default in describe(algo):
        if name in TOP_FIELDS:
            continue
        hint = hints[name] if isinstance(hints[name], str) else hints[name].__name__
        kind = "choice" if name in CHOICES else hint
        value = _typed(hint, preset[name]) if name in preset else default
        group = "model" if name in MODEL_FIELDS else "shared" if name in shared else "algorithm"
        out.append(Field(name, doc, value, kind, CHOICES.get(name, ()), name in shared, group))
    order = ("algorithm", "shared", "model")
    return sorted(out, key=lambda f: order.index(f.group))  # stable: fields keep their order within a group


def task_fields(task: str) -> list[Field]:
    """The inputs a task family needs (its options, documented as TaskSpec fields): a data file
    for gsm8k / svamp / jsonl, a generator and its options for gym, none for multistep."""
    docs = _with_ranges(field_docs(TaskSpec))
    spec = {f.name: f for f in dataclasses.fields(TaskSpec)}
    hints = {name: f.type if isinstance(f.type, str) else f.type.__name__ for name, f in spec.items()}
    out = []
    for name in option_names(task):
        doc, default = docs.get(name, ""), spec[name].default
        if name == "gym_name" and generators():  # reasoning-gym installed: pick from its generators
            names = tuple(generators())
            out.append(Field(name, doc, "chain_sum" if "chain_sum" in names else names[0], "choice", names, True, "task"))
        else:
            out.append(Field(name, doc, default, hints[name], (), True, "task"))
    return out


def _typed(hint: str, value):
    """A preset value (text in QUICKSTART_EI) as the field's type, for the form's widgets."""
    if not isinstance(value, str) or hint == "str":
        return value
    if hint == "bool":
        return parse_bool(value)
    return {"int": int, "float": float}[hint](value)


@dataclass
class Checked:
    cfg: RunConfig | None  # None when invalid
    field: str | None = None  # the field at fault ("" when the message names none)
    message: str = ""


def check(algo: str, base: str, values: dict) -> Checked:
    """Build and validate a config from the form's values (text for float fields, as typed)."""
    try:
        return Checked(make_config(algo, base=base, sets=values))
    except ReasonlabError as e:
        return Checked(None, e.field or "", str(e))


def launch(store, cfg: RunConfig, name: str | None = None) -> int:
    """Queue a validated config as a background run and start a worker (`train --detach`)."""
    run_id = jobs.submit(store, cfg, name=name or None, foreground=False)
    jobs.spawn_worker()
    return run_id


def describe(algo: str) -> list[tuple[str, str, object]]:
    """(field, doc, default) for every field of an algorithm's config, for the form's help texts:
    a field's doc is the docstring under it in engine/config/runs.py (the most derived class's)."""
    docs = _with_ranges(field_docs(CONFIGS[algo]))
    return [(f.name, docs.get(f.name, ""), f.default) for f in dataclasses.fields(CONFIGS[algo])]


def _with_ranges(docs: dict[str, str]) -> dict[str, str]:
    """The docs, each followed by the range validation enforces (engine/limits.py)."""
    return {name: doc + (f" Range: {RANGES[name]}." if name in RANGES else "") for name, doc in docs.items()}
