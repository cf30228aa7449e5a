"""`reasonlab` command line. Errors a user can fix print one line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from engine.errors import ReasonlabError


def _sft(args) -> None:
    from engine.algorithms.sft import SFTConfig, train_sft
    from engine.model.presets import PRESETS
    from engine.workspace import checkpoints_dir, ensure_home

    if args.preset not in PRESETS:  # before anything slow
        raise ReasonlabError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = SFTConfig(task=args.task, preset=args.preset, seed=args.seed)
    for field in ("steps", "batch_size", "lr"):
        if getattr(args, field) is not None:
            setattr(cfg, field, getattr(args, field))
    cfg.validate()
    if args.out:
        out = Path(args.out)
    else:
        out = checkpoints_dir() / f"base-{cfg.preset}"
        ensure_home()
    _check_writable(out)
    summary = train_sft(cfg, out, progress=not args.quiet)
    print(json.dumps({"checkpoint": str(out), **summary}))


def _eval(args) -> None:
    from engine.evaluation.evaluate import EvalConfig, evaluate
    from engine.model.checkpoint import load_checkpoint
    from engine.sampling.torch_sampler import TorchSampler

    cfg = EvalConfig(task=args.task, split=args.split, k=args.k, limit=args.limit, temperature=args.temperature,
                     top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed)
    cfg.validate()  # before the (slow) model load
    model, tokenizer = load_checkpoint(args.checkpoint, device=args.device)
    metrics, _ = evaluate(TorchSampler(model, tokenizer, batch_size=args.batch_size), cfg)
    metrics = {"checkpoint": str(args.checkpoint), **metrics}
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}  {value:.4f}" if isinstance(value, float) else f"{key:>16}  {value}")


def _check_writable(out: Path) -> None:
    """Fail fast, before training, when the checkpoint directory cannot be written."""
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ReasonlabError(f"cannot write checkpoint {out}: {parent} is not a writable directory")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reasonlab", description="RL fine-tuning of language models on math reasoning.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sft", help="train a base model from scratch on a task's reference solutions")
    s.add_argument("--preset", default="tiny", help="model size: tiny (~1M params) or small (~10M)")
    s.add_argument("--out", help="checkpoint directory (default: $REASONLAB_HOME/checkpoints/base-PRESET)")
    s.add_argument("--task", default="multistep")
    s.add_argument("--steps", type=int, help="optimizer steps (default 600: a deliberately weak base)")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_sft)

    e = sub.add_parser("eval", help="maj@1 (greedy), pass@k and maj@k of a checkpoint")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--task", default="multistep")
    e.add_argument("--split", default="test")
    e.add_argument("-k", type=int, default=96, help="samples per problem (default 96)")
    e.add_argument("--limit", type=int, help="number of problems (default: the split's size)")
    e.add_argument("--temperature", type=float, default=1.0)
    e.add_argument("--top-p", type=float, default=1.0)
    e.add_argument("--max-new-tokens", type=int, default=96)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--batch-size", type=int, default=512, help="rows decoded together")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(run=_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except ReasonlabError as e:
        print(f"reasonlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reasonlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
