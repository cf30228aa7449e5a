"""The base build's training speed: reasonlab's SFT loop against transformers.Trainer.

All three train the same preset from the same initial weights on the same examples (the ones
`reasonlab sft` draws: its seeded teacher solutions, batches of `--batch-size`), for `--steps`
optimizer steps with AdamW, lr 3e-3, weight decay 0.01, betas (0.9, 0.95), gradient clipping 1.0:

  reasonlab          engine.algorithms.sft.train_sft: batches grouped by length (8 at a time),
                     each computed without its padding (shared_prefix.causal_lm_loss: the
                     vocabulary head only where a label is predicted), fused AdamW
  trainer-same       Trainer over exactly those batches in the same order (sequential sampler):
                     the difference is how each computes the same batches
  trainer-default    Trainer as a user starts it: the same examples, its default random sampler

Tokens are the non-padding tokens trained on (prompt and solution); a second is the training
loop's (setup, tokenizer and saving left out). Model FLOP utilisation is 6 x params x tokens/s
over the matmul FLOP/s measured in the same run. Goal: reasonlab at least 1.5x trainer-default.
What differs and stays: Trainer computes the loss over the batch's labels with its own loss
function, steps its scheduler (linear here; reasonlab's is cosine, the same cost), and runs its
callbacks each step; reasonlab draws and tokenizes its batches inside its timed loop, where
Trainer's rows come tokenized. Both use torch's fused AdamW.

Each of the three runs `--repeats` times, in turns; a figure is its median run's, with every
run's tokens a second beside it.

Usage: python bench/sft.py [--steps 150] [--batch-size 32] [--preset tiny] [--repeats 3]
Last line: {"reasonlab": {"tokens": .., "train_s": .., "tokens_per_s": .., "mfu": .., "tokens_per_s_each": [..]},
"trainer-same": {...}, "trainer-default": {...}, "speedup_vs_default": .., "speedup_vs_same": .., ...}
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import matmul_flops  # noqa: E402


def examples(cfg, tokenizer) -> list[dict]:
    """The rows train_sft trains on, in its order: it draws pools of length-grouped batches with
    its seeded generator and takes each pool's batches from the last."""
    from engine.algorithms.sft import _bucketed_batches

    task = cfg.make_task()
    problems = task.problems("train", cfg.train_problems)
    rng = random.Random(cfg.seed)
    rows: list[dict] = []
    while len(rows) < cfg.steps * cfg.batch_size:
        for batch in reversed(_bucketed_batches(task, tokenizer, problems, cfg, rng)):
            for i in range(len(batch["input_ids"])):
                keep = batch["attention_mask"][i].bool()
                rows.append({k: batch[k][i][keep].tolist() for k in ("input_ids", "attention_mask", "labels")})
    return rows[:cfg.steps * cfg.batch_size]


def trainer_run(cfg, tokenizer, rows: list[dict], strategy: str, flops: float) -> dict:
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from engine.model.presets import new_model

    model = new_model(cfg.preset, tokenizer, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=cfg.batch_size, max_steps=cfg.steps,
                                 learning_rate=cfg.lr, weight_decay=cfg.weight_decay, adam_beta2=0.95,
                                 max_grad_norm=1.0, warmup_steps=cfg.warmup, lr_scheduler_type="linear",
                                 train_sampling_strategy=strategy, use_cpu=True, report_to="none",
                                 save_strategy="no", logging_strategy="no", disable_tqdm=True,
                                 dataloader_num_workers=0, seed=cfg.seed)
        collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
    tokens = sum(len(r["input_ids"]) for r in rows)  # one epoch: every row once
    return summary(tokens, train_s, model, flops)


def summary(tokens: int, train_s: float, model, flops: float) -> dict:
    params = sum(p.numel() for p in model.parameters())
    rate = tokens / train_s
    return {"tokens": tokens, "train_s": round(train_s, 2), "tokens_per_s": round(rate), "mfu": round(6 * params * rate / flops, 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of the three, one after the other (each figure: the median round)")
    args = p.parse_args()
    from engine.algorithms.sft import train_sft
    from engine.config import SFTConfig
    from engine.model.checkpoint import load_checkpoint
    from engine.model.tokenizer import build_tokenizer, corpus

    cfg = SFTConfig(steps=args.steps, batch_size=args.batch_size, preset=args.preset)
    flops = matmul_flops()
    tokenizer = build_tokenizer(corpus(cfg.make_task(), seed=cfg.seed))
    rows = examples(cfg, tokenizer)
    rounds: dict[str, list[dict]] = {"reasonlab": [], "trainer-same": [], "trainer-default": []}
    for _ in range(args.repeats):  # alternated, so that a slow minute of a shared machine hits all three
        with tempfile.TemporaryDirectory() as out:
            made = train_sft(cfg, Path(out) / "base", progress=False)
            model, _ = load_checkpoint(Path(out) / "base")
        assert made["tokens"] == sum(len(r["input_ids"]) for r in rows), "the bench no longer draws train_sft's examples"
        rounds["reasonlab"].append(summary(made["tokens"], made["train_s"], model, flops))
        for name, strategy in (("trainer-same", "sequential"), ("trainer-default", "random")):
            rounds[name].append(trainer_run(cfg, tokenizer, rows, strategy, flops))
        print({name: r[-1]["tokens_per_s"] for name, r in rounds.items()}, file=sys.stderr, flush=True)
    results = {name: {**sorted(r, key=lambda x: x["tokens_per_s"])[len(r) // 2],
                      "tokens_per_s_each": [x["tokens_per_s"] for x in r]} for name, r in rounds.items()}
    ours = results["reasonlab"]["tokens_per_s"]
    results.update(speedup_vs_default=round(ours / results["trainer-default"]["tokens_per_s"], 2),
                   speedup_vs_same=round(ours / results["trainer-same"]["tokens_per_s"], 2),
                   steps=args.steps, batch_size=args.batch_size, preset=args.preset, repeats=args.repeats,
                   matmul_gflops=round(flops / 1e9, 1), threads=torch.get_num_threads())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
