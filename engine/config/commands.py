"""The configs of the commands that are not training runs: `reasonlab sft` (SFTConfig), `reasonlab
eval` (EvalConfig) and the outcome reward model a reward=orm run or the findings train (ORMConfig).
The CLI's flags of sft and eval are these fields (engine/cli/models.py reads their defaults and docs here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.config.task import TaskSpec
from engine.errors import ReasonlabError
from engine.limits import EVAL_RANGES, MAX_SAMPLES, ORM_RANGES, SFT_RANGES, check_fields, check_number


@dataclass
class SFTConfig:
    """Supervised fine-tuning of a base model from scratch on a task's reference solutions
    (engine/algorithms/sft.py)."""

    task: TaskSpec = field(default_factory=TaskSpec)
    """Task whose train split provides the problems (engine/config/task.py)."""
    preset: str = "tiny"
    """Model size: tiny (~1M parameters) or small (~10M)."""
    steps: int = 2000
    """Optimizer steps: enough for the tiny model to learn the arithmetic (and the habits)."""
    batch_size: int = 32
    """Problems per step (each with a freshly drawn valid solution order)."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay to 10%)."""
    warmup: int = 50
    """Warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    train_problems: int = 20000
    """Distinct training problems drawn from."""
    canonical: float = 0.75
    """Share of examples in the canonical order; the rest take a random valid order, so the base
    learns that several orders exist (and sampled solutions branch) without the order noise
    slowing down how fast it learns to solve."""
    carry_slips: float = 0.7
    """Share of the additions needing a carry in which the teacher forgets it (17 + 25 = 32), the
    commonest procedural bug of school arithmetic (Brown & Burton 1978). The base learns the habit
    and follows it when decoding greedily, though it also saw the right carries: a gap that RL
    with a correctness check can close. 0: no such slips. Built-in task only."""
    stops_short: float = 0.9
    """Share of the problems ending with a get / give / share / sell operation in which the
    teacher answers one step early (the quantity before it): a second habit, in the plan rather
    than the arithmetic. 0: never. Built-in task only."""
    seed: int = 0
    """Seed of the model init, the problem order and the solution orders."""

    def validate(self) -> None:
        from engine.model.presets import PRESETS

        check_fields("sft", self, SFT_RANGES)  # every number finite and in its range (engine/limits.py)
        if self.preset not in PRESETS:
            raise ReasonlabError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}", field="preset")
        task = self.make_task()  # raises on an unknown task or unusable options (naming file and line)
        for name in ("carry_slips", "stops_short"):
            if getattr(self, name) and not hasattr(task, "teacher_solution"):
                raise ReasonlabError(f"sft config field {name} applies to the built-in task only; "
                                     f"set it to 0 for task {self.task.name}", field=name)

    def make_task(self):
        return self.task.check("sft")


@dataclass
class EvalConfig:
    """An evaluation of a checkpoint: greedy maj@1, then k samples per problem (engine/evaluation/evaluate.py)."""

    task: TaskSpec = field(default_factory=TaskSpec)
    """Task to evaluate on (engine/config/task.py)."""
    split: str = "test"
    """Split to evaluate on: train, test, (file tasks) all, (multistep) ood."""
    k: int = 96
    """Samples per problem; pass@k and maj@k are reported for k = 1, 2, 4, ... up to this."""
    limit: int | None = None
    """Number of problems (None: the split's default size)."""
    temperature: float = 1.0
    """Sampling temperature for the k samples (maj@1 is always greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 96
    """Longest completion."""
    seed: int = 0
    """Sampling seed (also seeds the maj@k subsets)."""
    prompt_suffix: str = ""
    """Appended to every prompt (RCRL checkpoints are sampled conditioned on `<|good|>`)."""
    prompt_format: str = "plain"
    """plain, chat or few_shot (engine/model/prompts.py; resolve `auto` before evaluating)."""

    def validate(self) -> None:
        for name, kind in (("k", int), ("limit", int), ("temperature", float), ("top_p", float),
                           ("max_new_tokens", int), ("seed", int)):
            value = getattr(self, name)
            if value is not None or name != "limit":
                check_number("eval", name, kind, value, EVAL_RANGES[name])
        samples = self.k * (self.limit or 1)
        if samples > MAX_SAMPLES:
            raise ReasonlabError(f"eval: limit x k = {samples} samples, over the limit of {MAX_SAMPLES}", field="limit")
        task = self.make_task()
        if self.split not in task.splits:
            raise ReasonlabError(f"eval: unknown split {self.split!r} for task {self.task.name}; "
                                 f"choose one of {', '.join(task.splits)}", field="split")
        if not task.problems(self.split, 1):
            raise ReasonlabError(f"eval: split {self.split} of task {self.task.name} has no problems", field="split")

    def make_task(self):
        return self.task.check("eval")


@dataclass
class ORMConfig:
    """Training of an outcome reward model (engine/algorithms/orm.py)."""

    steps: int = 300
    """Optimizer steps."""
    batch_size: int = 32
    """Examples per step."""
    lr: float = 1e-3
    """AdamW learning rate of trunk and head (linear decay to 10%)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    balance: bool = True
    """Draw correct and incorrect examples equally per batch, whatever their ratio in the data."""
    seed: int = 0
    """Seed of the head init and the batch draws."""
    device: str = "cpu"
    """Torch device the trunk trains on (a run's ORM takes the run's device)."""
    dtype: str = "auto"
    """The trunk's dtype: auto (bfloat16 on a CUDA device that supports it, else float32), float32 or bfloat16."""
    trust_remote_code: bool = False
    """Let transformers run Python code shipped in the base directory (only for models you trust)."""

    def validate(self) -> None:
        check_fields("orm", self, ORM_RANGES)  # every number finite and in its range (engine/limits.py)
        if self.balance and self.batch_size < 2:
            raise ReasonlabError(f"orm config field batch_size must be >= 2 when balance is on, got {self.batch_size}",
                                 field="batch_size")
