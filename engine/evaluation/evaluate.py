"""Evaluate a checkpoint on a task split: greedy maj@1, then K samples per problem for pass@k / maj@k."""

from __future__ import annotations

import time
from engine.config import EvalConfig
from engine.evaluation.metrics import curves, ks_up_to
from engine.model.prompts import Prompter
from engine.sampling.base import sample_with_greedy
from engine.tasks.base import score_safely


def evaluate(sampler, cfg: EvalConfig, orm=None) -> tuple[dict, list[dict]]:
    """(metrics, sample rows). Metrics: `maj@1` is greedy accuracy; `pass@k`, `maj@k` for each k
    from the K samples (`maj@1` from samples would equal `pass@1`, so the greedy one takes the key);
    with an outcome reward model (`.score(prompts, completions)`), `rerank@k` too: the answer of
    the sample it scores highest among k (curves.rerank_at_ks), and `orm_s`, its scoring time.
    Each sample row is ready for `Store.add_samples` (sample_idx -1 is the greedy completion)."""
    cfg.validate()
    task = cfg.make_task()
    problems = task.problems(cfg.split, cfg.limit)
    prompter = Prompter(task, getattr(sampler, "tokenizer", None), cfg.prompt_format, cfg.prompt_suffix)
    prompts = [prompter(p) for p in problems]
    start = time.time()
    both = sample_with_greedy(sampler, prompts, n=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, stop=prompter.stop)
    wall = time.time() - start

    rows, answers, greedy_correct, lenient_correct, unjudged = [], [], [], [], 0
    for p, (g, samples) in zip(problems, both):
        problem_answers = []
        for idx, c in [(-1, g)] + list(enumerate(samples)):
            score = score_safely(task, p, c.text)
            unjudged += score.unjudged
            rows.append({"task": cfg.task.name, "split": cfg.split, "problem_id": p.id, "sample_idx": idx,
                         "text": c.text, "answer": score.answer, "correct": int(score.correct),
                         "reward": float(score.correct), "n_tokens": len(c.token_ids), "logprob": c.logprob})
            if idx == -1:
                greedy_correct.append(score.correct)
                lenient_correct.append(score.correct_lenient)
            else:
                problem_answers.append(score.answer)
        answers.append(problem_answers)

    metrics = curves(answers, [p.answer for p in problems], ks_up_to(cfg.k), seed=cfg.seed)
    if orm is not None:
        metrics.update(_orm_rerank(orm, rows, problems, prompts, cfg))
    metrics["maj@1"] = sum(greedy_correct) / len(problems)
    metrics["maj@1_lenient"] = sum(lenient_correct) / len(problems)
    n_tokens = sum(r["n_tokens"] for r in rows)
    metrics.update({"task": cfg.task.name, "split": cfg.split, "problems": len(problems), "k": cfg.k,
                    "prompt_format": cfg.prompt_format, "skipped_lines": len(getattr(task, "skipped", [])),
                    "unjudged": unjudged,  # completions whose scoring raised, counted incorrect
                    "temperature": cfg.temperature, "wall_s": round(wall, 2),
                    "tokens_per_s": round(n_tokens / max(wall, 1e-9), 1)})
    return metrics, rows


def _orm_rerank(orm, rows: list[dict], problems, prompts: list[str], cfg: EvalConfig) -> dict:
    """rerank@k for k = 1, 2, 4, ... K by the ORM's probability of each sampled row (greedy rows
    are not scored). The ORM reads the prompt without RCRL's return token, as it was trained."""
    import pandas as pd

    from engine.evaluation.curves import orm_scorer, rerank_at_ks

    start = time.time()
    plain = {p.id: prompt.removesuffix(cfg.prompt_suffix) for p, prompt in zip(problems, prompts)}
    reranked = rerank_at_ks(pd.DataFrame(rows), orm_scorer(orm, plain), ks_up_to(cfg.k))
    return {**{f"rerank@{k}": v for k, v in reranked.items()}, "orm_s": round(time.time() - start, 2)}
