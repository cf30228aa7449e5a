"""Expert Iteration (Havrilla et al. 2024, after Anthony et al. 2017): each round

  1) sample K solutions per training problem from the current policy;
  2) keep the correct ones and deduplicate them per problem (exact text, or same step sequence);
  3) grow the dataset, D_i = R_i ∪ D_{i-1};
  4) fine-tune on D_i, from the initial checkpoint as the paper does (or from the last policy);
  5) evaluate the new checkpoint on the eval split.

`run_rounds` is also the skeleton of return-conditioned RL (rcrl.py), which differs only in which
samples it keeps and how it labels them.

Under a multi-process launch each process samples its share of the round's problems; the rollouts
are gathered, so every process grows the same D_i and fine-tunes on shards of its batches (DDP).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.algorithms.common import Rounds
from engine.algorithms.context import RunContext
from engine.algorithms.rewards import sparse
from engine.algorithms.rollout import Rollout, draw_problems, sample_rollouts, step_seed, summary, with_rewards
from engine.config import EIConfig
from engine.sampling import make_sampler

# A selection turns one round's rollouts into new training examples: (dedup key, prompt, completion).
Selection = Callable[[RunContext, list[Rollout]], list[tuple[tuple, str, str]]]


def keep_correct(ctx: RunContext, rollouts: list[Rollout]) -> list[tuple[tuple, str, str]]:
    """EI's filter: correct final answers only, keyed for deduplication."""
    return [(dedup_key(ctx, r), ctx.prompt(r.problem), r.completion.text)
            for r in rollouts if r.score.correct]


def dedup_key(ctx: RunContext, r: Rollout, label: str = "") -> tuple:
    body = (ctx.task.step_signature(r.completion.text) if ctx.cfg.dedup == "steps"
            else r.completion.text.strip())
    return (r.problem.id, label, body)


def train(ctx: RunContext, cfg: EIConfig) -> None:
    run_rounds(ctx, cfg, keep_correct)


def run_rounds(ctx: RunContext, cfg: EIConfig, select: Selection, sample_suffix: str = "") -> None:
    """The round loop. `sample_suffix` is appended to prompts when sampling from a trained policy
    (RCRL conditions on its good-return token); round 1 samples the base as it is."""
    run = Rounds(ctx, cfg)
    tokenizer, dataset = run.tokenizer, run.dataset
    if sample_suffix:  # checkpoints of this run are evaluated the way they are sampled
        ctx.meta["prompt_suffix"] = sample_suffix

    for r in range(run.first, cfg.rounds + 1):
        done = (r - 1) / cfg.rounds

        # 1) sample K solutions per problem, in chunks so progress shows and cancel is prompt;
        #    each process its share (every process goes through as many chunks: the cancel check is collective)
        problems = draw_problems(ctx.task, cfg, r, cfg.problems_per_round)
        mine = ctx.shard(problems)
        suffix = sample_suffix if r > 1 else ""
        chunk = max(1, 4 * cfg.sample_batch_size // cfg.k)
        rollouts: list[Rollout] = []
        t0, tokens = time.time(), 0
        sampler = make_sampler(run.policy, tokenizer, cfg, cancel=ctx.interrupt)  # vLLM: this round's weights pushed once
        for i in range(0, -(-len(problems) // ctx.world), chunk):
            if ctx.stop_requested():
                return
            ctx.progress(r - 1, cfg.rounds, done + 0.5 * i * ctx.world / len(problems) / cfg.rounds,
                         f"round {r}/{cfg.rounds}: sampling {i * ctx.world}/{len(problems)} problems x {cfg.k}")
            with ctx.phases.time("sample"):
                part = sample_rollouts(run.policy, tokenizer, ctx.task, mine[i:i + chunk], cfg.k, cfg,
                                       seed=step_seed(cfg.seed, r, salt=i) + ctx.rank, prompt_suffix=suffix,
                                       prompt=ctx.prompt, sampler=sampler, stop=ctx.stop) if mine[i:i + chunk] else []
            tokens += sum(len(x.completion.token_ids) for x in part)
            rollouts += part
        sample_s = time.time() - t0
        ctx.phases.count("sample_tokens", tokens)
        rollouts = ctx.gather(rollouts)  # every process holds every rollout: the same D_i everywhere
        rollouts = with_rewards(rollouts, sparse)  # logged, not trained on
        ctx.samples_seen += len(rollouts)
        ctx.log_rollouts(r, rollouts)

        # 2) filter + deduplicate, 3) D_i = R_i ∪ D_{i-1}
        before = len(dataset)
        for key, prompt, completion in select(ctx, rollouts):
            dataset.setdefault(key, (prompt, completion))
        solved = {x.problem.id for x in rollouts if x.score.correct}

        # 4) fine-tune on D_i
        steps, loss = run.fit(r, 0.5)
        if ctx.stop_requested():
            return
        # summary: reward, train/accuracy and entropy of every process's rollouts (the same on each)
        ctx.log(r, {**summary(rollouts), "train/solved": len(solved) / len(problems),  # pass@K on this round's problems
                    "ei/new_solutions": len(dataset) - before, "ei/dataset": len(dataset),
                    "ei/sft_steps": steps if dataset else 0, "sft/loss": loss,
                    "tokens_per_s": tokens / max(sample_s, 1e-9)})

        # 5) checkpoint + evaluate
        run.save(r)
