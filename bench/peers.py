"""reasonlab's GRPO against TRL's GRPOTrainer on the same work, one after the other.

Both start from the same base checkpoint and train on the same problems in the same order (the
ones reasonlab's GRPO draws for each step), with the same settings: 32 prompts x 8 samples a
step, 2 passes over minibatches of 64 (8 optimizer updates a step), AdamW at the same learning
rate, temperature 1, at most 96 new tokens, float32 weights and arithmetic (TRL's default would be
bfloat16 mixed precision), no KL term, rewards 1 for a correct answer (the task's
own scorer), advantages normalised by the group's standard deviation, the policy loss averaged over
the minibatch's tokens (TRL's loss_type "bnpo"). After the same number of steps both final models
are evaluated by reasonlab's evaluation on the same test problems: greedy maj@1 and pass@16.

For each it prints seconds a step sampling (with scoring) and updating (old log-probabilities,
forward, backward and optimizer), samples a second, and the evaluation. TRL's sampling is its
`_generate` and `_calculate_rewards`; its update, the rest of its training loop from the first
generation on (its setup before that is left out, as reasonlab's model loading and evaluations are). What differs and stays:
TRL samples with `model.generate` and stops at EOS only (reasonlab also stops at the prompt
format's stop strings); TRL's group standard deviation uses n - 1 (reasonlab's: n); TRL shuffles
nothing here (shuffle_dataset off, to keep the order) and logs per step. Where reasonlab computes
less for the same result: its old log-probabilities are its sampler's (TRL runs a forward pass
for them), and it leaves the rows of advantage 0 (a group whose rewards are all equal; there is no
KL term) out of the update, whose gradient they do not change (TRL computes them; its log shows
their share as frac_reward_zero_std).

Needs TRL: `make bench-peers` builds .venv-peers (trl==1.16.0 with the project's torch and
transformers pins) and runs this there.

Usage: python bench/peers.py [--base CKPT] [--steps 4] [--device cpu]
Last line: {"reasonlab": {"sample_s_per_step": .., "update_s_per_step": .., "samples_per_s": ..,
"maj@1": .., "pass@16": ..}, "trl": {...}, "speedup": {"sample": .., "update": .., "whole": ..}, ...}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import base_checkpoint  # noqa: E402

PROMPTS, N, MINIBATCH, EPOCHS, MAX_NEW = 32, 8, 64, 2, 96
EVAL_LIMIT, EVAL_K = 200, 16


def settings(steps: int, device: str) -> list[str]:
    return [f"steps={steps}", f"prompts_per_step={PROMPTS}", f"n={N}", f"minibatch_size={MINIBATCH}",
            f"epochs={EPOCHS}", "kl_coef=0", "temperature=1.0", f"max_new_tokens={MAX_NEW}", f"device={device}",
            "dtype=float32",
            f"checkpoint_every={steps}", f"eval_limit={EVAL_LIMIT}", f"eval_k={EVAL_K}"]


def run_reasonlab(base: Path, steps: int, device: str, home: Path) -> dict:
    os.environ["REASONLAB_HOME"] = str(home)
    from engine import jobs, profiling
    from engine.config import make_config
    from engine.store import Store

    cfg = make_config("grpo", base=base, sets=settings(steps, device))
    with Store() as store:
        run_id = jobs.submit(store, cfg, foreground=True)
        start = time.perf_counter()
        status = jobs.execute(store, store.claim_run(run_id, os.getpid()))
        wall = time.perf_counter() - start
        assert status == "finished", store.get_run(run_id)["error"]
        final = store.checkpoints(run_id).iloc[-1]["metrics"]
    s = profiling.current.seconds
    train_s = s["sample"] + s.get("score", 0) + s["logprobs"] + s["update"]
    return {"sample_s_per_step": round((s["sample"] + s.get("score", 0)) / steps, 2),
            "update_s_per_step": round((s["logprobs"] + s["update"]) / steps, 2),
            "samples_per_s": round(steps * PROMPTS * N / train_s, 1), "wall_s": round(wall, 1),
            "maj@1": round(final["maj@1"], 3), "pass@16": round(final["pass@16"], 3)}


def run_trl(base: Path, steps: int, device: str, home: Path) -> dict:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from engine.algorithms.rollout import draw_problems
    from engine.config import make_config
    from engine.model.prompts import Prompter
    from engine.tasks.base import score_safely

    cfg = make_config("grpo", base=base, sets=settings(steps, device))
    task = cfg.task.build()
    tokenizer = AutoTokenizer.from_pretrained(base)
    prompter = Prompter(task, tokenizer, "plain")
    drawn = [p for step in range(1, steps + 1) for p in draw_problems(task, cfg, step, PROMPTS)]
    by_id = {p.id: p for p in drawn}
    data = datasets.Dataset.from_list([{"prompt": prompter(p), "problem_id": p.id} for p in drawn])

    def correct(prompts, completions, problem_id, **_):  # TRL's reward signature; reasonlab's sparse reward is this score
        return [float(score_safely(task, by_id[i], c).correct) for i, c in zip(problem_id, completions, strict=True)]

    args = GRPOConfig(output_dir=str(home / "trl"), per_device_train_batch_size=MINIBATCH,
                      steps_per_generation=PROMPTS * N // MINIBATCH, num_generations=N, num_iterations=EPOCHS,
                      max_steps=steps * EPOCHS * PROMPTS * N // MINIBATCH, learning_rate=cfg.lr,
                      lr_scheduler_type="constant", warmup_steps=0, adam_beta2=0.95, weight_decay=0.0,
                      max_grad_norm=1.0, beta=0.0, temperature=1.0, max_completion_length=MAX_NEW,
                      loss_type="bnpo", scale_rewards="group", shuffle_dataset=False, use_cpu=device == "cpu",
                      bf16=False,  # float32, as reasonlab here (TRL's default is bfloat16 mixed precision)
                      report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
                      seed=cfg.seed, dataloader_num_workers=0)
    model = AutoModelForCausalLM.from_pretrained(base, use_kernels=False)  # as reasonlab loads it: no Hub kernels
    trainer = GRPOTrainer(model=model, reward_funcs=correct, args=args, train_dataset=data,
                          processing_class=tokenizer)
    spent = {"generate": 0.0, "rewards": 0.0, "prepare": 0.0}  # seconds in TRL's own methods

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            spent.setdefault("first", t)  # the loop's start: train()'s setup before it is left out, as reasonlab's is
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    trainer._generate = timed("generate", trainer._generate)
    trainer._calculate_rewards = timed("rewards", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed("prepare", trainer._generate_and_score_completions)
    trainer.train()
    train_s = time.perf_counter() - spent["first"]
    out = home / "trl-final"
    trainer.model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    metrics = evaluate_checkpoint(out, cfg)
    sample_s = spent["generate"] + spent["rewards"]
    return {"sample_s_per_step": round(sample_s / steps, 2), "update_s_per_step": round((train_s - sample_s) / steps, 2),
            "samples_per_s": round(steps * PROMPTS * N / train_s, 1), "wall_s": round(train_s, 1),
            "maj@1": round(metrics["maj@1"], 3), "pass@16": round(metrics["pass@16"], 3)}


def evaluate_checkpoint(path: Path, cfg) -> dict:
    """reasonlab's evaluation of a checkpoint with the run's settings (what each run's last checkpoint got)."""
    from engine.config import EvalConfig
    from engine.evaluation.evaluate import evaluate
    from engine.model.checkpoint import load_checkpoint
    from engine.sampling import make_sampler

    model, tokenizer = load_checkpoint(path)
    ecfg = EvalConfig(task=cfg.task, split=cfg.eval_split, k=EVAL_K,
                      limit=EVAL_LIMIT, max_new_tokens=MAX_NEW, seed=cfg.seed, prompt_format="plain")
    return evaluate(make_sampler(model.eval(), tokenizer, cfg), ecfg)[0]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    import torch

    base = base_checkpoint(args.base)
    results: dict = {}
    with tempfile.TemporaryDirectory() as home:
        for name, fn in (("reasonlab", run_reasonlab), ("trl", run_trl)):
            results[name] = fn(base, args.steps, args.device, Path(home) / name)
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    ours, theirs = results["reasonlab"], results["trl"]
    results["speedup"] = {
        "sample": round(theirs["sample_s_per_step"] / ours["sample_s_per_step"], 2),
        "update": round(theirs["update_s_per_step"] / ours["update_s_per_step"], 2),
        "whole": round(ours["samples_per_s"] / theirs["samples_per_s"], 2)}
    import trl

    results.update(steps=args.steps, device=args.device, trl_version=trl.__version__,
                   threads=torch.get_num_threads(), settings=settings(args.steps, args.device))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
