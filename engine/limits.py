"""The range of every numeric config field, the memory budgets of the sizes that multiply, and the
device names, checked before anything is queued (engine/config.py and the eval command use them).

    RANGES["k"]                       -> Range(1, 100000): closed unless lo_open / hi_open
    number_problem(float, "inf", rng) -> "must be a finite number" (None when the value is fine)
    budget_problems(cfg)              -> [(field, problem), ...] for products over their budget
    device_problem("cuda:3")          -> "names GPU 3, but this machine has 1" (None when usable)
"""

from __future__ import annotations

import math
import os
import re
import typing
from dataclasses import dataclass

from engine.errors import ReasonlabError

INT64 = (-(2**63), 2**63 - 1)  # SQLite's INTEGER: a value outside it cannot be stored with the run


@dataclass(frozen=True)
class Range:
    lo: float
    hi: float
    lo_open: bool = False  # lo itself is out of range
    hi_open: bool = False

    def __contains__(self, x) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"

    def problem(self, x) -> str | None:
        """What is wrong with x: "must be in (0, 1]" for a share or rate, else the bound it crosses
        ("must be >= 1", "must be <= 100000"); None when x is in range."""
        if x in self:
            return None
        if self.hi <= 1:
            return f"must be in {self}"
        if (x <= self.lo) if self.lo_open else (x < self.lo):
            return f"must be {'>' if self.lo_open else '>='} {self.lo}"
        return f"must be {'<' if self.hi_open else '<='} {self.hi}"


SEED = Range(0, 2**32 - 1)  # what every random generator reasonlab seeds (numpy, torch, vLLM) takes
POSITIVE_RATE = Range(0, 1, lo_open=True)  # learning rates
WEIGHT = Range(0, 1000)  # loss weights and clip ranges: 0 turns a term off
ROWS = Range(1, 65536)  # rows processed together in one batch
STEPS = Range(1, 10_000_000)

# Every int and float field of every algorithm config (tests/test_config.py checks none is missing).
RANGES: dict[str, Range] = {
    # RunConfig
    # validation generates the whole test split (train is kept apart from it): 10,000 problems take
    # about 10 s for the slowest generators (gsm_symbolic), well under 1 s for the arithmetic ones
    "gym_size": Range(1, 10_000),
    "gym_seed": SEED, "seed": SEED,
    "temperature": Range(0, 100), "top_p": Range(0, 1, lo_open=True),
    "max_new_tokens": Range(1, 32768), "train_problems": Range(1, 10_000_000),
    "eval_limit": Range(1, 1_000_000), "eval_k": Range(1, 100_000), "sample_batch_size": ROWS,
    "deep_eval_k": Range(0, 100_000), "deep_eval_limit": Range(1, 1_000_000),
    "vllm_memory": Range(0, 1, lo_open=True, hi_open=True),
    "lora_r": Range(0, 4096), "lora_alpha": Range(0, 1_000_000, lo_open=True),
    "lora_dropout": Range(0, 1, hi_open=True),
    # RoundsConfig (EI, RCRL, continued SFT) and EIConfig's k
    "rounds": Range(1, 10_000), "k": Range(1, 100_000), "problems_per_round": Range(1, 10_000_000),
    "sft_epochs": Range(0, 1000, lo_open=True), "sft_max_steps": STEPS, "batch_size": ROWS, "lr": POSITIVE_RATE,
    # PolicyGradientConfig (PPO, GRPO)
    "steps": STEPS, "prompts_per_step": Range(1, 1_000_000), "n": Range(1, 100_000), "orm_steps": STEPS,
    "epochs": Range(1, 1000), "minibatch_size": ROWS, "clip_eps": Range(0, 1, lo_open=True, hi_open=True),
    "kl_coef": WEIGHT, "checkpoint_every": STEPS,
    # PPOConfig
    "gamma": Range(0, 1), "lam": Range(0, 1), "vf_coef": WEIGHT, "vf_clip": WEIGHT, "kl_target": WEIGHT,
    "kl_horizon": Range(1, 1_000_000_000), "reward_clip": WEIGHT, "entropy_coef": WEIGHT,
}

LR = Range(0, 10, lo_open=True)
# The base's training (engine/algorithms/sft.py) and the outcome reward model's (engine/algorithms/orm.py).
SFT_RANGES: dict[str, Range] = {
    "steps": STEPS, "batch_size": ROWS, "lr": LR, "warmup": Range(0, 10_000_000), "weight_decay": WEIGHT,
    "train_problems": Range(1, 10_000_000), "canonical": Range(0, 1), "carry_slips": Range(0, 1),
    "stops_short": Range(0, 1), "seed": SEED,
}
ORM_RANGES: dict[str, Range] = {"steps": STEPS, "batch_size": ROWS, "lr": LR, "weight_decay": WEIGHT, "seed": SEED}
# `reasonlab eval`'s sizes take the training configs' ranges; it always samples, so temperature > 0.
EVAL_RANGES: dict[str, Range] = {"k": RANGES["eval_k"], "limit": RANGES["eval_limit"],
                                 "temperature": Range(0, 100, lo_open=True), "top_p": RANGES["top_p"],
                                 "max_new_tokens": RANGES["max_new_tokens"], "seed": RANGES["seed"]}

# Samples one round, step or evaluation holds at once (sampled, scored, then stored together).
MAX_SAMPLES = 1_000_000
# Rows decoded or trained together x the longest completion: activations and KV cache grow with it.
MAX_BATCH_TOKENS = 2**22
# Sampled tokens held at once may take a quarter of the machine's memory, at about this many bytes
# each (text, token ids and log-probabilities as Python objects, and the rows for the store).
BYTES_PER_SAMPLED_TOKEN = 64
# (fields whose product is one budget's count, what it counts)
SAMPLE_PRODUCTS = ((("problems_per_round", "k"), "samples per round"),
                   (("prompts_per_step", "n"), "samples per step"),
                   (("eval_limit", "eval_k"), "samples per evaluation"),
                   (("deep_eval_limit", "deep_eval_k"), "samples per deep evaluation"))
BATCH_PRODUCTS = ((("sample_batch_size", "max_new_tokens"), "tokens decoded together"),
                  (("batch_size", "max_new_tokens"), "tokens per optimizer step"),
                  (("minibatch_size", "max_new_tokens"), "tokens per optimizer step"))


def number_problem(kind: type, value, rng: Range | None) -> str | None:
    """What is wrong with a numeric field's value (its type, finiteness, SQLite's range, `rng`)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        return f"must be {'int (a whole number)' if kind is int else 'float (a number)'}"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if rng is not None:  # every range lies within SQLite's integers
        return rng.problem(value)
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        return f"must fit a 64-bit integer (range [{INT64[0]}, {INT64[1]}])"
    return None


def machine_memory() -> int:
    """Bytes of physical memory (8 GiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def sampled_token_budget() -> int:
    return machine_memory() // 4 // BYTES_PER_SAMPLED_TOKEN


def budget_problems(cfg) -> list[tuple[str, str]]:
    """(field to blame, problem) for each product of sizes over its budget; the limit is in the problem."""
    out = []
    tokens = sampled_token_budget()
    for names, what in SAMPLE_PRODUCTS:
        if not all(hasattr(cfg, n) for n in names):
            continue
        count = math.prod(getattr(cfg, n) for n in names)
        shown = " x ".join(names)
        if count > MAX_SAMPLES:
            out.append((names[-1], f"gives {shown} = {count} {what}, over the limit of {MAX_SAMPLES}"))
        elif count * cfg.max_new_tokens > tokens:
            out.append((names[-1], f"gives {shown} x max_new_tokens = {count * cfg.max_new_tokens} sampled tokens "
                                   f"held at once, over the {tokens} this machine's memory "
                                   f"({machine_memory() / 2**30:.1f} GiB) holds"))
    for names, what in BATCH_PRODUCTS:
        if not all(hasattr(cfg, n) for n in names):
            continue
        if (count := math.prod(getattr(cfg, n) for n in names)) > MAX_BATCH_TOKENS:
            out.append((names[0], f"gives {' x '.join(names)} = {count} {what}, over the limit of {MAX_BATCH_TOKENS}"))
    return out


DEVICE = re.compile(r"cuda(?::(\d+))?")


def device_problem(device: str) -> str | None:
    """Why a torch device name cannot be used here: cpu, cuda or cuda:N, CUDA only where torch finds it."""
    if device == "cpu":
        return None
    found = DEVICE.fullmatch(device) if isinstance(device, str) else None
    if found is None:
        return "must be cpu, cuda or cuda:N"
    import torch  # here, not at import: the Launch page validates without loading torch up front

    if not torch.cuda.is_available():
        return "is a CUDA device, but torch finds no CUDA GPU on this machine; use device=cpu"
    if found.group(1) is not None and int(found.group(1)) >= (count := torch.cuda.device_count()):
        return f"names GPU {found.group(1)}, but this machine has {count} (cuda:0 to cuda:{count - 1})"
    return None


def check_fields(owner: str, cfg, ranges: dict[str, Range]) -> None:
    """Every int and float field of a config dataclass in its range (`ranges`; finite, and within
    SQLite's integers where none is given): "OWNER config field NAME must be ..., got VALUE"."""
    for name, hint in typing.get_type_hints(type(cfg)).items():
        if hint in (int, float) and (problem := number_problem(hint, getattr(cfg, name), ranges.get(name))):
            raise ReasonlabError(f"{owner} config field {name} {problem}, got {getattr(cfg, name)!r}", field=name)


def check_eval_flags(batch_size: int, max_new_tokens: int, vllm_memory: float | None, device: str) -> None:
    """`reasonlab eval`'s sampling flags: batch size and length (and their product), vLLM's memory share, the device."""
    check_number("eval", "--batch-size", int, batch_size, RANGES["sample_batch_size"])
    check_number("eval", "--max-new-tokens", int, max_new_tokens, RANGES["max_new_tokens"])
    if batch_size * max_new_tokens > MAX_BATCH_TOKENS:
        raise ReasonlabError(f"eval: --batch-size x --max-new-tokens = {batch_size * max_new_tokens} "
                             f"tokens decoded together, over the limit of {MAX_BATCH_TOKENS}")
    if vllm_memory is not None:
        check_number("eval", "--vllm-memory", float, vllm_memory, RANGES["vllm_memory"])
    if (problem := device_problem(device)) is not None:
        raise ReasonlabError(f"eval: --device {problem}, got {device!r}")


def check_number(owner: str, name: str, kind: type, value, rng: Range | None) -> None:
    """Raise "OWNER: NAME must be ..., got VALUE" for a value number_problem refuses."""
    if (problem := number_problem(kind, value, rng)) is not None:
        raise ReasonlabError(f"{owner}: {name} {problem}, got {value!r}")
