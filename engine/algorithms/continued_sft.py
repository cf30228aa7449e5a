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

The same frame as expert_iteration.py (common.Rounds), so checkpoints, evaluation, cancel and resume behave
the same; under a multi-process launch every process builds the same D_i and fine-tunes on shards
of its batches (DDP).
"""

from __future__ import annotations

from engine.algorithms.common import Rounds
from engine.algorithms.context import RunContext
from engine.algorithms.rollout import draw_problems
from engine.config import ContinuedSFTConfig


def train(ctx: RunContext, cfg: ContinuedSFTConfig) -> None:
    run = Rounds(ctx, cfg)
    for r in range(run.first, cfg.rounds + 1):
        if ctx.stop_requested():
            return
        # 1) draw problems, 2) D_i = refs_i ∪ D_{i-1} (a problem drawn again adds nothing)
        for p in draw_problems(ctx.task, cfg, r, cfg.problems_per_round):
            run.dataset.setdefault(p.id, (ctx.prompt(p), p.reference))
        ctx.samples_seen = len(run.dataset)

        # 3) fine-tune on D_i
        losses: list[float] = []
        steps, _ = run.fit(r, 0.0, losses)
        if ctx.stop_requested():
            return
        ctx.log(r, {"loss": sum(losses) / len(losses) if losses else None,  # mean over the round's steps
                    "data/solutions": len(run.dataset), "sft/steps": steps})

        # 4) checkpoint + evaluate
        run.save(r)
