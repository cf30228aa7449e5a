"""Supervised fine-tuning: train a base model from scratch on a task's reference solutions.

The default base (`tiny`, 2000 steps, 5 to 10 minutes on 2 CPU cores) is weak the way real SFT
models are weak where RL helps: it imitates an imperfect teacher who forgets carries and answers
one step early, so greedy decoding follows those habits while sampling still finds correct
solutions (maj@1 ~0.18-0.19, pass@16 ~0.47-0.49 on the test split). Expert iteration, keeping only
correct samples, trains the habits away. With `carry_slips=0 stops_short=0` it learns from clean data
(maj@1 ~0.54 at the same steps): the ceiling of what removing the habits can give.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from engine import distributed
from engine.algorithms.optim import adamw
from engine.algorithms.shared_prefix import causal_lm_loss
from engine.config import SFTConfig
from engine.model.checkpoint import check_target, recover, save_checkpoint
from engine.model.presets import new_model
from engine.model.tokenizer import build_tokenizer, corpus
from engine.sampling.torch_sampler import TorchSampler
from engine.tasks.base import score_safely


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to `peak`, then cosine decay to 10% of it at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(progress * math.pi)))


def lr_at(step: int, cfg: SFTConfig) -> float:
    return cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup)


def completion_batch(tokenizer, prompts: list[str], completions: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels; the loss covers completion + EOS only."""
    rows, labels = [], []
    # one call each for the prompts and the completions: the fast tokenizer encodes a list at once
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    for p_ids, c_ids in zip(prompt_ids, completion_ids):
        c_ids = c_ids + [tokenizer.eos_token_id]
        rows.append(p_ids + c_ids)
        labels.append([-100] * len(p_ids) + c_ids)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in rows]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
    }


def _bucketed_batches(task, tokenizer, problems, cfg: SFTConfig, rng: random.Random, pool: int = 8) -> list[dict]:
    """`pool` batches whose examples were grouped by length, in random order: far less padding."""
    batch_size = cfg.batch_size
    drawn = [problems[rng.randrange(len(problems))] for _ in range(batch_size * pool)]

    def teacher(p, canonical: bool) -> str:
        if cfg.carry_slips or cfg.stops_short:
            return task.teacher_solution(p, rng, canonical, cfg.carry_slips, cfg.stops_short)
        return p.reference if canonical else task.sample_solution(p, rng)
    pairs = [(task.prompt(p), teacher(p, rng.random() < cfg.canonical)) for p in drawn]
    pairs.sort(key=lambda x: len(x[0]) + len(x[1]))
    batches = [completion_batch(tokenizer, *zip(*pairs[i:i + batch_size])) for i in range(0, len(pairs), batch_size)]
    rng.shuffle(batches)
    return batches


def train_sft(cfg: SFTConfig, out: str | Path, progress: bool = True, on_step=None, watch_every: int = 0,
              overwrite: bool = False) -> dict:
    """Train a model from scratch and write it to `out` as an HF checkpoint. Returns a summary.
    `on_step(steps_done, steps, info)` is called after every optimizer step (e.g. the dashboard's
    bar) with info {"loss": the smoothed loss}. With `watch_every`, every that many steps and at
    the last, info also holds "probe": the model's greedy solution so far to one fixed held-out
    problem ({"step", "question", "completion", "answer", "correct"}), to watch it learn.
    A non-empty `out` is refused before training unless `overwrite` (then replaced atomically)."""
    cfg.validate()
    recover(out)
    check_target(out, overwrite)
    start = time.time()
    task = cfg.make_task()
    tokenizer = build_tokenizer(corpus(task, seed=cfg.seed))
    model = new_model(cfg.preset, tokenizer, seed=cfg.seed)
    model.train()
    problems = task.problems("train", cfg.train_problems)
    watched = task.problems("test" if "test" in task.splits else "train", 1)[0] if watch_every else None
    rng = random.Random(cfg.seed)
    opt = adamw(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    tokens, loss_ema = 0, None
    pending: list[dict] = []
    bar = tqdm(range(cfg.steps), desc=f"sft {cfg.preset}", disable=not progress, unit="step")
    loop_started = time.time()
    for step in bar:
        if not pending:
            pending = _bucketed_batches(task, tokenizer, problems, cfg, rng)
        inputs = pending.pop()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = causal_lm_loss(model, **inputs)  # the model's loss, without computing padding
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += int(inputs["attention_mask"].sum())
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        bar.set_postfix(loss=f"{loss_ema:.3f}")
        if on_step is not None:
            info = {"loss": loss_ema}
            if watched is not None and ((step + 1) % watch_every == 0 or step + 1 == cfg.steps):
                info["probe"] = {"step": step + 1, **probe(model, tokenizer, task, watched)}
            on_step(step + 1, cfg.steps, info)
    wall, train_s = time.time() - start, time.time() - loop_started
    summary = {"loss": loss_ema, "wall_s": round(wall, 1), "train_s": round(train_s, 2), "tokens": tokens,
               "params": sum(p.numel() for p in model.parameters())}
    save_checkpoint(model.eval(), tokenizer, out, {"made_by": "reasonlab sft", "config": asdict(cfg), **summary},
                    replace=overwrite)
    return summary


def probe(model, tokenizer, task, problem, max_new_tokens: int = 96) -> dict:
    """The model's greedy solution to one problem, scored; the model is left in train mode."""
    completion = TorchSampler(model, tokenizer).sample([task.prompt(problem)], temperature=0.0,
                                                       max_new_tokens=max_new_tokens)[0][0].text
    model.train()
    score = score_safely(task, problem, completion)
    return {"question": problem.question, "completion": completion, "answer": score.answer, "correct": score.correct}


def finetune(model, tokenizer, pairs: list[tuple[str, str]], steps: int, batch_size: int, lr: float,
             seed: int, weight_decay: float = 0.01, on_step=None, losses: list[float] | None = None) -> float | None:
    """Fine-tune `model` in place on (prompt, completion) pairs: shuffled epochs, batches grouped
    by length, cosine schedule. `on_step(step)` returning True stops early (a cancel). Returns the
    final smoothed loss (None when stopped before the first step); `losses`, when given, gets every
    step's loss appended.

    Under a multi-process launch every process holds the same pairs and draws the same batches;
    each trains on every world-th row of a batch and DDP averages the gradients, each process's
    loss weighted by its share of the batch's target tokens (the mean over all of them)."""
    rng = random.Random(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]  # the adapters only, under LoRA
    opt = adamw(params, lr=lr, weight_decay=weight_decay)
    acc = distributed.accelerator(model.device.type)
    trained, opt = acc.prepare(model, opt)
    order: list[tuple[str, str]] = []
    pending: list[dict] = []
    loss_ema = None
    for step in range(steps):
        if on_step is not None and on_step(step):
            break
        if not pending:
            if len(order) < batch_size * 8:
                epoch = list(pairs)
                rng.shuffle(epoch)
                order += epoch
            pool, order = order[:batch_size * 8], order[batch_size * 8:]
            pool.sort(key=lambda x: len(x[0]) + len(x[1]))
            pending = [completion_batch(tokenizer, *zip(*_share(pool[i:i + batch_size], acc)))
                       for i in range(0, len(pool), batch_size)]
            rng.shuffle(pending)
        inputs = pending.pop()
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, lr, warmup=max(1, steps // 10))
        loss = causal_lm_loss(trained, **{k: v.to(model.device) for k, v in inputs.items()})
        opt.zero_grad(set_to_none=True)
        targets = (inputs["labels"][:, 1:] != -100).sum()  # the tokens the loss averages over
        acc.backward(loss * distributed.share_weight(targets, acc))
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        if losses is not None:
            losses.append(loss.item())
    model.eval()
    return loss_ema


def _share(rows: list, acc) -> list:
    """This process's rows of a batch. A batch with fewer rows than processes (a dataset of one
    solution) gives each process one of them, repeated, since every process must take a step."""
    return rows[acc.process_index::acc.num_processes] or rows[acc.process_index % len(rows):][:1]
