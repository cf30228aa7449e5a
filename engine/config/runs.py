"""The training runs' configs: one dataclass per algorithm, every field documented, stored whole
with each run (engine/config/__init__.py builds them from `--set field=value`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.algorithms import ALGORITHMS
from engine.config.task import TASK_FIELDS, TaskSpec
from engine.errors import ReasonlabError
from engine.limits import RANGES, budget_problems, check_fields, device_problem
from engine.model.checkpoint import DTYPES, read_meta
from engine.model.prompts import PROMPT_FORMATS
from engine.model.validity import check_checkpoint, check_orm
from engine.sampling.vllm_sampler import vllm_device

REWARDS = ("sparse", "dense", "orm")
SAMPLERS = ("torch", "vllm")
# Made absolute (~ expanded) when a config is made: a background worker runs in another directory.
PATH_FIELDS = ("base", "orm", "data", "eval_data")


@dataclass
class RunConfig:
    """Fields every algorithm shares: what to train, how to sample, how to evaluate."""

    base: str = ""
    """Checkpoint training starts from (an HF directory: from `reasonlab sft`, or any local causal LM
    such as a downloaded Qwen2.5-0.5B-Instruct)."""
    task: TaskSpec = field(default_factory=TaskSpec)
    """Where the problems come from: a task family and its options (engine/config/task.py)."""
    seed: int = 0
    """Seed of problem order, sampling and training; the same seed replays the same run."""
    temperature: float = 1.0
    """Sampling temperature of training rollouts."""
    top_p: float = 1.0
    """Nucleus sampling mass of training rollouts."""
    max_new_tokens: int = 96
    """Longest sampled solution, in tokens."""
    train_problems: int = 20000
    """Size of the pool of training problems drawn from."""
    eval_split: str = "test"
    """Split evaluated at every checkpoint."""
    eval_limit: int = 200
    """Problems evaluated at every checkpoint."""
    eval_k: int = 16
    """Samples per problem at every checkpoint (pass@k, maj@k up to this k)."""
    deep_eval_k: int = 0
    """Samples per problem of a second, larger evaluation of the base and the last checkpoint only:
    pass@k up to large k, where the base may catch up with RL (Yue et al. 2025); 0: none. Stored
    apart from the evaluation at every checkpoint."""
    deep_eval_limit: int = 64
    """Problems of that larger evaluation (the first ones of eval_split)."""
    sample_batch_size: int = 512
    """Rows the torch sampler decodes together (vLLM schedules its own batches)."""
    device: str = "cpu"
    """Torch device: cpu, cuda or cuda:N (CUDA only on a machine where torch finds a GPU)."""
    sampler: str = "torch"
    """Sampling backend of rollouts and evaluation: torch (built in; CPU or GPU) or vllm (needs
    `reasonlab[gpu]` and device=cuda, or vLLM's CPU build and device=cpu; the policy's weights are
    pushed into it before sampling)."""
    vllm_memory: float = 0.3
    """sampler=vllm: share of the GPU's memory (of RAM, on the CPU) vLLM takes for weights and KV cache;
    training keeps the rest."""
    dtype: str = "auto"
    """Weights' dtype: auto (bfloat16 on a CUDA device that supports it, else float32), float32 or bfloat16."""
    prompt_format: str = "auto"
    """How problems are shown to the model: plain (the task's prompt), chat (the tokenizer's chat
    template), few_shot (worked examples first); auto picks from the checkpoint (engine/model/prompts.py)."""
    trust_remote_code: bool = False
    """Let transformers run Python code shipped in the base directory (only for models you trust)."""
    lora_r: int = 0
    """LoRA rank (0: fine-tune every weight). > 0 trains adapters only (needs `reasonlab[lora]`);
    checkpoints are saved merged, as plain HF directories."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the adapters' update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA adapters' input."""
    lora_targets: str = ""
    """Comma-separated module names to adapt (e.g. q_proj,v_proj); empty: every linear layer but the head."""

    def validate(self) -> None:
        check_limits(self)  # first: cheap, and a huge gym_size or k must not reach the task or sampler
        _check(self, not self.base == "", "base", "is required (a checkpoint directory)")
        if self.base:
            _check_path(self, "base", check_checkpoint)
            _check_path(self, "base", read_meta)  # the run reads its prompt format there
        task = self.task.check(self.algo)  # built: data files read, the generator set up
        if self.task.name == "gym":  # a generator's train pool must hold train_problems distinct questions
            check_train_pool(self, task)
        _check(self, self.eval_split in task.splits, "eval_split", f"must be one of {', '.join(task.splits)}")
        _check(self, bool(task.problems("train", 1)), "data", f"gives no train problems (task {self.task.name})")
        _check(self, bool(task.problems(self.eval_split, 1)), "eval_data" if self.task.eval_data else "eval_split",
               f"gives no {self.eval_split} problems (task {self.task.name}); give eval_data")
        _check(self, self.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
        _check(self, self.sampler in SAMPLERS, "sampler", f"must be one of {', '.join(SAMPLERS)}")
        if self.sampler == "vllm":
            where = vllm_device()
            _check(self, where is not None, "sampler",
                   "vllm needs vLLM installed: pip install 'reasonlab[gpu]' (for a CUDA GPU; vLLM's CPU "
                   "build runs it with device=cpu)")
            _check(self, self.device.split(":")[0] == where, "sampler",
                   f"the installed vLLM runs on {where}: set device={where} (device is {self.device})")
        _check(self, self.prompt_format in PROMPT_FORMATS, "prompt_format", f"must be one of {', '.join(PROMPT_FORMATS)}")
        if self.lora_r > 0:
            from engine.model.lora import peft_available

            _check(self, peft_available(), "lora_r", "needs peft: pip install 'reasonlab[lora]'")

    @property
    def algo(self) -> str:
        return next((a for a, c in CONFIGS.items() if c is type(self)), "run")


@dataclass
class RoundsConfig(RunConfig):
    """Fields the round-based runs share (expert iteration, RCRL, continued SFT): rounds of
    growing a dataset D_i, fine-tuning on it and evaluating (algorithms/common.Rounds)."""

    rounds: int = 4
    """Rounds of grow the dataset -> fine-tune -> evaluate."""
    problems_per_round: int = 128
    """Training problems drawn each round (a fresh draw every round)."""
    restart: bool = True
    """Fine-tune each round from the initial checkpoint, as the paper does (False: continue from the last policy)."""
    sft_epochs: float = 2.0
    """Passes over the growing dataset D_i in each round's fine-tuning."""
    sft_max_steps: int = 400
    """Cap on optimizer steps per round."""
    batch_size: int = 32
    """Solutions per optimizer step."""
    lr: float = 1e-3
    """Peak AdamW learning rate of each round's fine-tuning (warm-up, cosine decay)."""


@dataclass
class EIConfig(RoundsConfig):
    """Expert Iteration as in Havrilla et al. 2024: sample, keep the correct, deduplicate, fine-tune."""

    k: int = 96
    """Solutions sampled per training problem each round."""
    dedup: str = "exact"
    """Deduplicate kept solutions per problem: `exact` text, or `steps` (same step sequence)."""

    def validate(self) -> None:
        super().validate()
        _check(self, self.dedup in ("exact", "steps"), "dedup", "must be exact or steps")
        _check(self, not (self.temperature == 0 and self.k > 1), "temperature",
               f"is 0 (greedy) with k={self.k}: all k samples would be the same; use temperature > 0 or k=1")


@dataclass
class RCRLConfig(EIConfig):
    """Return-conditioned RL: fine-tune on every sampled solution prefixed by a return token
    (<|good|> when correct, <|bad|> when not), then sample conditioned on <|good|>."""


@dataclass
class ContinuedSFTConfig(RoundsConfig):
    """Continued SFT (Havrilla et al. 2024's comparison): fine-tune the base further on the task's
    reference solutions, round by round, at the compute of the quickstart's expert iteration.
    Each problem drawn adds its one reference solution to the dataset."""

    rounds: int = 3
    problems_per_round: int = 1024
    restart: bool = False
    sft_epochs: float = 3.0
    lr: float = 3e-4

    def validate(self) -> None:
        super().validate()
        task = self.task.check(self.algo)  # built again (its data files are cached): super() keeps none
        shown = task.problems("train", min(self.train_problems, 64))
        answer_only = sum(len(task.steps(p.reference)) < 2 for p in shown)  # `#### N` is one step
        _check(self, answer_only == 0, "task",
               f"has no worked reference solution for {answer_only} of its first {len(shown)} training problems "
               "(only a final answer): continued SFT trains on the references; use a task whose data holds "
               "worked solutions (multistep, gsm8k, or a jsonl answer field with `#### N` solutions)")


@dataclass
class PolicyGradientConfig(RunConfig):
    """Fields PPO and GRPO share: online steps of sample -> score -> update."""

    steps: int = 60
    """Training iterations (each: sample, score, update)."""
    prompts_per_step: int = 32
    """Training problems per iteration."""
    n: int = 8
    """Samples per problem."""
    reward: str = "sparse"
    """sparse: +1 for a correct final answer; dense: share of the reference's intermediate results
    reached; orm: the outcome reward model's probability of being correct."""
    orm: str = ""
    """Outcome reward model directory (reward=orm); empty: train one from the base's samples first."""
    orm_steps: int = 300
    """Optimizer steps when training that outcome reward model."""
    lr: float = 3e-5
    """AdamW learning rate (3e-4 drifts the tiny model ~2 nats/sequence from its base in a few
    steps and GRPO collapses; see bench/learning.py)."""
    epochs: int = 2
    """Passes over each iteration's rollouts."""
    minibatch_size: int = 64
    """Rollouts per optimizer step."""
    clip_eps: float = 0.2
    """Clip range of the probability ratio."""
    kl_coef: float = 0.02
    """Weight of the KL penalty to the frozen base (0: none)."""
    checkpoint_every: int = 20
    """Iterations between checkpoints (each evaluated on eval_split); the last is always saved."""

    def validate(self) -> None:
        super().validate()
        _check(self, self.reward in REWARDS, "reward", f"must be one of {', '.join(REWARDS)}")
        if self.orm:
            _check_path(self, "orm", check_orm)
        _check(self, self.temperature > 0, "temperature", "must be > 0: policy-gradient methods sample")


@dataclass
class PPOConfig(PolicyGradientConfig):
    """PPO (Schulman et al. 2017) with a value head, GAE and a KL penalty, as in RLHF."""

    n: int = 4
    """Samples per problem."""
    gamma: float = 1.0
    """Discount of GAE."""
    lam: float = 0.95
    """Lambda of GAE."""
    vf_coef: float = 0.1
    """Weight of the value loss (the value head shares the policy's body)."""
    vf_clip: float = 0.2
    """Clip range of value updates."""
    kl_target: float = 0.0
    """Target KL per sequence for the adaptive coefficient (Ziegler et al. 2019); 0 keeps kl_coef fixed."""
    kl_horizon: int = 10000
    """Horizon of the adaptive KL controller, in samples."""
    reward_scale: bool = False
    """Divide rewards by a running standard deviation."""
    reward_clip: float = 0.0
    """Clip (scaled) rewards to [-reward_clip, reward_clip]; 0: no clipping."""
    entropy_coef: float = 0.0
    """Weight of an entropy bonus."""
    whiten_advantages: bool = True
    """Normalise advantages over the batch."""

    def validate(self) -> None:
        super().validate()
        _check(self, not (self.kl_target > 0 and self.kl_coef == 0), "kl_coef",
               "must be > 0 when kl_target is set: the adaptive controller scales it")


@dataclass
class GRPOConfig(PolicyGradientConfig):
    """GRPO (Shao et al. 2024): advantages normalised within each problem's group, no value model."""

    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the frozen base (0: off, as in DAPO / Dr. GRPO)."""
    scale_rewards: bool = True
    """Divide by the group's std (GRPO); False only centres them (Dr. GRPO)."""

    def validate(self) -> None:
        super().validate()
        _check(self, self.n >= 2, "n", "must be >= 2: advantages compare samples within a group")


CONFIGS: dict[str, type[RunConfig]] = {name: globals()[a.config] for name, a in ALGORITHMS.items()}


def _check_path(cfg, field: str, check) -> None:
    """A checkpoint field whose directory `check` (engine/model/validity.py) refuses: what is wrong, and where."""
    try:
        check(getattr(cfg, field))
    except ReasonlabError as e:
        _check(cfg, False, field, f"must be a checkpoint directory: {e}")


def check_train_pool(cfg, task) -> None:
    """The train pool a run draws from is generated now (and cached in this process): a generator that
    cannot fill it is refused before the run is queued, naming train_problems and gym_size."""
    from engine.tasks import TaskOptionError

    try:
        task.problems("train", cfg.train_problems)
    except TaskOptionError as e:
        raise ReasonlabError(f"{cfg.algo} config field {e.option}: {e}", field=e.option) from None


def field_value(cfg, field: str):
    """A config field's value; a task option's (data, gym_size...) is in cfg.task."""
    return getattr(cfg.task, field) if field in TASK_FIELDS else getattr(cfg, field)


def _check(cfg, ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ReasonlabError(f"{cfg.algo} config field {field} {problem}, got {field_value(cfg, field)!r}", field=field)


def check_limits(cfg) -> None:
    """Every int and float field in its range (engine/limits.py: finite, within SQLite's integers),
    the task's too, the sizes that multiply within their memory budgets, and a device this machine has."""
    check_fields(cfg.algo, cfg, RANGES)
    check_fields(cfg.algo, cfg.task, RANGES)
    for name, problem in budget_problems(cfg):
        _check(cfg, False, name, problem)
    problem = device_problem(cfg.device)
    _check(cfg, problem is None, "device", problem or "")
