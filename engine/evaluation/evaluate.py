"""Evaluate a checkpoint on a task split: greedy maj@1, then K samples per problem for pass@k / maj@k."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from engine.errors import ReasonlabError
from engine.evaluation.metrics import curves, ks_up_to
from engine.limits import MAX_SAMPLES, RANGES, Range, check_number
from engine.model.prompts import Prompter
from engine.sampling.base import sample_with_greedy
from engine.tasks import TaskOptionError, get_task
from engine.tasks.base import score_safely


# The evaluation's sizes take the training configs' ranges; it always samples, so temperature > 0.
EVAL_RANGES = {"k": RANGES["eval_k"], "limit": RANGES["eval_limit"], "temperature": Range(0, 100, lo_open=True),
               "top_p": RANGES["top_p"], "max_new_tokens": RANGES["max_new_tokens"], "seed": RANGES["seed"]}


@dataclass
class EvalConfig:
    task: str = "multistep"
    """Task family."""
    task_options: dict = field(default_factory=dict)
    """The task's options (data, eval_data, gym_name... see engine/tasks/__init__.py)."""
    split: str = "test"
    """Split to evaluate on."""
    k: int = 96
    """Samples per problem; pass@k and maj@k are reported for k = 1, 2, 4, ... up to this."""
    limit: int | None = None
    """Number of problems (None: the split's default size)."""
    temperature: float = 1.0
    """Sampling temperature for the k samples (maj@1 is always greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_new_tokens: int = 96
    """Longest completion."""
    seed: int = 0
    """Sampling seed (also seeds the maj@k subsets)."""
    prompt_suffix: str = ""
    """Appended to every prompt (RCRL checkpoints are sampled conditioned on `<|good|>`)."""
    prompt_format: str = "plain"
    """plain, chat or few_shot (engine/model/prompts.py; resolve `auto` before evaluating)."""

    def validate(self) -> None:
        for name, kind in (("k", int), ("limit", int), ("temperature", float), ("top_p", float),
                           ("max_new_tokens", int), ("seed", int)):
            value = getattr(self, name)
            if value is not None or name != "limit":
                check_number("eval", name, kind, value, EVAL_RANGES[name])
        samples = self.k * (self.limit or 1)
        if samples > MAX_SAMPLES:
            raise ReasonlabError(f"eval: limit x k = {samples} samples, over the limit of {MAX_SAMPLES}")
        task = self.make_task()
        if self.split not in task.splits:
            raise ReasonlabError(f"eval: unknown split {self.split!r} for task {self.task}; "
                                 f"choose one of {', '.join(task.splits)}")
        if not task.problems(self.split, 1):
            raise ReasonlabError(f"eval: split {self.split} of task {self.task} has no problems")

    def make_task(self):
        try:
            return get_task(self.task, **self.task_options)
        except TaskOptionError as e:
            raise ReasonlabError(f"eval: {e.option}: {e}") from None


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
            rows.append({"task": cfg.task, "split": cfg.split, "problem_id": p.id, "sample_idx": idx,
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
    metrics.update({"task": cfg.task, "split": cfg.split, "problems": len(problems), "k": cfg.k,
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
