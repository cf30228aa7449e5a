"""`reasonlab sft` and `reasonlab eval`: a base model trained from scratch, a checkpoint evaluated.
Their flags are the fields of SFTConfig and EvalConfig (engine/config/commands.py): type, default and doc."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from engine.config import SAMPLERS, EvalConfig, SFTConfig, field_docs
from engine.errors import ReasonlabError
from engine.model.checkpoint import DTYPES
from engine.model.prompts import PROMPT_FORMATS
from engine.tasks.flags import add_task_flags, eval_task, task_spec

SFT_FLAGS = ("steps", "batch_size", "lr", "carry_slips", "stops_short")  # SFTConfig fields `reasonlab sft` sets
EVAL_FLAGS = ("split", "k", "limit", "temperature", "top_p", "max_new_tokens", "seed")  # EvalConfig's, `eval`


def _sft(args) -> None:
    from engine import jobs
    from engine.algorithms.sft import train_sft
    from engine.model.checkpoint import check_writable
    from engine.model.presets import PRESETS
    from engine.workspace import checkpoints_dir, ensure_home

    if args.preset not in PRESETS:  # before anything slow
        raise ReasonlabError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = SFTConfig(task=task_spec(args), preset=args.preset, seed=args.seed)
    if cfg.task.name != "multistep":  # the imperfect teacher's habits belong to the built-in task
        cfg.carry_slips = cfg.stops_short = 0.0
    for field in SFT_FLAGS:
        if getattr(args, field) is not None:
            setattr(cfg, field, getattr(args, field))
    cfg.validate()
    if args.out:
        out = Path(args.out).expanduser().resolve()  # printed and stored: the same from any directory
    else:
        out = checkpoints_dir() / f"base-{cfg.preset}"
        ensure_home()
    check_writable(out)
    if args.overwrite:  # never a checkpoint a stored run starts from or reranks with
        jobs.check_unused(out)
    summary = train_sft(cfg, out, progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps({"checkpoint": str(out), **summary}))


def _eval(args) -> None:
    from engine.evaluation.evaluate import evaluate
    from engine.limits import check_eval_flags
    from engine.model.checkpoint import check_checkpoint, load_checkpoint, load_tokenizer, read_meta, torch_dtype
    from engine.model.prompts import resolve_format

    check_eval_flags(args.batch_size, args.max_new_tokens, args.vllm_memory, args.device)  # what EvalConfig does not hold
    args.checkpoint = args.checkpoint.expanduser().resolve()
    meta = read_meta(args.checkpoint)
    cfg = EvalConfig(task=eval_task(args, meta), **{name: getattr(args, name) for name in EVAL_FLAGS})
    cfg.validate()  # before the slow imports and the model load: reads the data files
    check_checkpoint(args.checkpoint)  # a truncated or half-written one, before the slow imports
    if args.orm is not None:
        args.orm = _orm_dir(args.orm)
    if args.sampler == "vllm":  # vLLM loads the weights itself; only the tokenizer is needed here
        from engine.sampling.vllm_sampler import VLLMSampler, vllm_device

        tokenizer = load_tokenizer(args.checkpoint, trust_remote_code=args.trust_remote_code)
        device = vllm_device() or args.device
        memory = args.vllm_memory or (0.3 if device == "cpu" else 0.9)  # RAM is shared with the rest
        dtype = str(torch_dtype(args.dtype, device)).removeprefix("torch.")  # auto as the torch sampler takes it
        sampler = VLLMSampler(args.checkpoint, tokenizer, dtype=dtype, gpu_memory=memory,
                              seed=args.seed, trust_remote_code=args.trust_remote_code)
    else:
        from engine.sampling.torch_sampler import TorchSampler

        model, tokenizer = load_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype,
                                           trust_remote_code=args.trust_remote_code)
        sampler = TorchSampler(model, tokenizer, batch_size=args.batch_size)
    cfg.prompt_suffix = meta.get("prompt_suffix", "")  # RCRL: condition on <|good|>
    cfg.prompt_format = resolve_format(args.prompt_format, tokenizer, meta)
    orm = None
    if args.orm is not None:  # loaded before sampling, so that a bad one fails at once
        from engine.algorithms.orm import OutcomeRewardModel

        orm = OutcomeRewardModel.load(args.orm, device=args.device, dtype=args.dtype,
                                      trust_remote_code=args.trust_remote_code)
    metrics, _ = evaluate(sampler, cfg, orm=orm)
    if metrics["skipped_lines"]:
        print(f"reasonlab: skipped {metrics['skipped_lines']} malformed lines of the data files", file=sys.stderr)
    named = {"orm": str(args.orm)} if args.orm is not None else {}
    metrics = {"checkpoint": str(args.checkpoint), **named, **metrics}
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}  {value:.4f}" if isinstance(value, float) else f"{key:>16}  {value}")


def _orm_dir(path: Path) -> Path:
    """eval --orm: the absolute path, if it is a whole outcome reward model (cheap checks, no torch)."""
    from engine.model.validity import check_orm

    path = path.expanduser().resolve()
    try:
        return check_orm(path)
    except ReasonlabError as e:
        raise ReasonlabError(f"eval: --orm {path}: {e}") from None


def _config_flags(p: argparse.ArgumentParser, cls, names: tuple[str, ...], defaults: bool = True) -> None:
    """One flag per field of a config dataclass (`-k` for k, else --field-name): its type, default
    and help from the dataclass (`defaults=False`: None when not given, the default only in the help)."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        kind = next(t for t in typing.get_args(hints[name]) or (hints[name],) if t is not type(None))
        default = fields[name].default
        shown = "" if default is None else f" (default {default})"
        p.add_argument("-k" if name == "k" else f"--{name.replace('_', '-')}", type=kind,
                       default=default if defaults else None, help=docs[name].replace("%", "%%") + shown)


def add_sft(sub) -> None:
    s = sub.add_parser("sft", help="train a base model from scratch on a task's reference solutions")
    s.add_argument("--preset", default=SFTConfig.preset, help=field_docs(SFTConfig)["preset"])
    s.add_argument("--out", help="checkpoint directory (default: $REASONLAB_HOME/checkpoints/base-PRESET)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoint already in --out (never one a stored run uses)")
    add_task_flags(s, default_task=None)
    _config_flags(s, SFTConfig, SFT_FLAGS, defaults=False)  # a task other than multistep has no teacher habits
    _config_flags(s, SFTConfig, ("seed",))
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_sft)


def add_eval(sub) -> None:
    e = sub.add_parser("eval", help="maj@1 (greedy), pass@k and maj@k (with --orm, rerank@k) of a checkpoint")
    e.add_argument("checkpoint", type=Path)
    add_task_flags(e, default_task=None)
    _config_flags(e, EvalConfig, EVAL_FLAGS)
    e.add_argument("--batch-size", type=int, default=512, help="rows decoded together (torch sampler)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--sampler", default="torch", choices=SAMPLERS,
                   help="vllm: sample with vLLM (pip install 'reasonlab[gpu]' on a CUDA GPU, or vLLM's CPU build)")
    e.add_argument("--vllm-memory", type=float,
                   help="share of the GPU's memory vLLM may take (default 0.9; of RAM with vLLM's CPU build: 0.3)")
    e.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="auto: bfloat16 on a CUDA device that supports it, else float32")
    e.add_argument("--prompt-format", default="auto", choices=PROMPT_FORMATS,
                   help="auto: the checkpoint's own, else chat with a chat template, else plain (reasonlab models) "
                        "or few_shot")
    e.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the checkpoint")
    e.add_argument("--orm", type=Path, metavar="DIR",
                   help="an outcome reward model (e.g. runs/NNNNN/orm of a reward=orm run): adds rerank@k, the "
                        "answer of the sample it scores highest among k")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(run=_eval)
