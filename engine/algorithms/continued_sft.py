"""Continued SFT: the comparison behind Havrilla et al. 2024's finding that further supervised
fine-tuning raises maj@1 at pass@K's expense, while RL keeps pass@K. Each round

  1) draws `problems_per_round` training problems (a fresh draw every round, as expert iteration);
  2) adds their reference solutions, the teacher's, to the dataset: D_i = refs_i ∪ D_{i-1};
  3) fine-tunes on D_i, continuing from the last policy (restart=True: from the initial checkpoint);
  4) saves a checkpoint and evaluates it on the eval split.

Nothing is sampled, so `samples_seen` (the sample-complexity axis) counts the reference solutions
trained on so far, and there is no reward nor training accuracy: each round logs `loss` (the mean
fine-tuning loss over its steps), `data/solutions` (|D_i|) and `sft/steps`.

Compute is matched by optimizer steps: a round fine-tunes min(sft_max_steps, ceil(sft_epochs *
|D_i| / batch_size)) steps of batch_size solutions, expert iteration's formula, with the defaults of
the quickstart's expert iteration (3 rounds of 1,024 problems, 3 epochs, batches of 32, lr 3e-4,
continuing): 96, 192 and 288 steps. Expert iteration takes as many when it keeps about one distinct
correct solution per problem drawn (its log's `ei/sft_steps` gives its count; set sft_max_steps or
sft_epochs to match another).

The same loop shape as expert_iteration.py, so checkpoints, evaluation, cancel and resume behave
the same; under a multi-process launch every process builds the same D_i and fine-tunes on shards
of its batches (DDP).
"""

from __future__ import annotations

import math

from engine.algorithms.common import RunContext, draw_problems, load_model, step_seed
from engine.algorithms.sft import finetune
from engine.config import ContinuedSFTConfig
from engine.model.lora import maybe_lora


def train(ctx: RunContext, cfg: ContinuedSFTConfig) -> None:
    base, tokenizer = load_model(cfg)
    initial = maybe_lora(base, cfg)  # with lora_r > 0, fine-tuning trains adapters only
    ctx.use_tokenizer(tokenizer)
    # what a restart resets: the trainable weights (every weight, or the LoRA adapters only)
    trained = {name for name, p in initial.named_parameters() if p.requires_grad}
    initial_state = {k: v.clone() for k, v in initial.state_dict().items() if k in trained}
    policy = initial
    dataset: dict[str, tuple[str, str]] = {}  # problem id -> (prompt, reference solution); insertion-ordered
    first = 1
    if (resume := ctx.resume_point()) is not None:
        step, path, state = resume
        ctx.restore(state)
        dataset = {k: (p, c) for k, p, c in state["dataset"]}
        policy = maybe_lora(load_model(cfg, path)[0], cfg)  # merged weights, fresh adapters
        first = step + 1
        ctx.meta.update(state.get("meta", {}))
    else:
        ctx.progress(0, cfg.rounds, 0.0, "evaluating the base checkpoint")
        ctx.evaluate_base(policy, tokenizer)

    for r in range(first, cfg.rounds + 1):
        if ctx.stop_requested():
            return
        done = (r - 1) / cfg.rounds

        # 1) draw problems, 2) D_i = refs_i ∪ D_{i-1} (a problem drawn again adds nothing)
        for p in draw_problems(ctx.task, cfg, r, cfg.problems_per_round):
            dataset.setdefault(p.id, (ctx.prompt(p), p.reference))
        ctx.samples_seen = len(dataset)

        # 3) fine-tune on D_i
        if cfg.restart:
            policy = initial
            policy.load_state_dict(initial_state, strict=False)
        steps = min(cfg.sft_max_steps, max(1, math.ceil(cfg.sft_epochs * len(dataset) / cfg.batch_size)))

        def on_step(s: int) -> bool:
            if s % 10 == 0:
                ctx.progress(r - 1, cfg.rounds, done + 0.9 * s / steps / cfg.rounds,
                             f"round {r}/{cfg.rounds}: fine-tuning {s}/{steps} steps on {len(dataset)} solutions")
                return ctx.stop_requested()
            # between the collective checks, one process reads its stop signal (a flag) every step
            return ctx.interrupt is not None and ctx.interrupt.is_set()

        losses: list[float] = []
        finetune(policy, tokenizer, list(dataset.values()), steps, cfg.batch_size, cfg.lr,
                 seed=step_seed(cfg.seed, r, salt=2), on_step=on_step, losses=losses)
        if ctx.stop_requested():
            return
        ctx.log(r, {"loss": sum(losses) / len(losses) if losses else None,  # mean over the round's steps
                    "data/solutions": len(dataset), "sft/steps": steps})

        # 4) checkpoint + evaluate
        ctx.progress(r - 1, cfg.rounds, done + 0.9 / cfg.rounds, f"round {r}/{cfg.rounds}: evaluating")
        ctx.save(r, policy, tokenizer, {"dataset": [(k, p, c) for k, (p, c) in dataset.items()],
                                        "meta": dict(ctx.meta)})
        ctx.progress(r, cfg.rounds, r / cfg.rounds, f"round {r}/{cfg.rounds} done")
