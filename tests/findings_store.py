"""A store holding the findings suite's runs with synthetic results whose verdicts are known.

`fabricate(store, base, plans)` writes, for each suite key in `plans`, a run with the suite's own
config (so suite.match finds it), its evaluated checkpoints and their eval samples, logged metrics
(samples_seen, entropy, train/accuracy) and, for GRPO, rollouts. A Plan gives, per checkpoint, the
probability that each problem's greedy answer is right and each problem's solve rate, so a test
decides which way each verdict must go; CONFIRMING holds plans under which every verdict confirms
the paper.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from engine.findings import suite
from engine.schema import DEEP_EVAL


@dataclass
class Plan:
    greedy: list[float]  # per checkpoint (step 0 = the base first): P(greedy correct)
    solve: list[float]  # per checkpoint: mean per-problem solve rate
    status: str = "finished"
    spread: float = 0.0  # per-problem solve rates spread around the mean (difficulty), 0..0.5
    entropy: list[float] = field(default_factory=list)  # per logged step
    accuracy: list[float] = field(default_factory=list)  # per logged step (train/accuracy)
    n_rollout: int = 8  # GRPO group size of the rollouts written
    deep_share: float = 1.0  # deep evaluation of the last checkpoint: the share of problems it solves at all


# plans under which every finding confirms the paper
CONFIRMING = {
    # a base that solves every problem now and then, against RL that always solves some and never others
    "ei": Plan([0.2, 0.35, 0.45, 0.5], [0.3, 0.4, 0.42, 0.43], spread=0.3),
    "ppo": Plan([0.2, 0.3, 0.38, 0.45], [0.3, 0.38, 0.4, 0.41],
                entropy=[1.2, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.45], accuracy=[0.3, 0.34, 0.37, 0.39, 0.41, 0.42, 0.43, 0.44]),
    "grpo": Plan([0.2, 0.4, 0.45, 0.5], [0.3, 0.45, 0.5, 0.5], spread=0.45,
                 entropy=[1.1, 0.9, 0.8, 0.7, 0.6, 0.55], accuracy=[0.3, 0.36, 0.4, 0.42, 0.44, 0.45]),
    "rcrl": Plan([0.2, 0.3, 0.4, 0.45], [0.3, 0.35, 0.38, 0.4]),
    "sft": Plan([0.2, 0.45, 0.55, 0.6], [0.3, 0.3, 0.25, 0.2], spread=0.3),
    "ppo-dense": Plan([0.2, 0.3, 0.38, 0.45], [0.3, 0.38, 0.4, 0.41]),
    "ppo-orm": Plan([0.2, 0.3, 0.38, 0.44], [0.3, 0.38, 0.4, 0.41]),
}


def fabricate(store, base, plans: dict[str, Plan], size: str = "smoke", problems: int = 120, k: int = 8,
              seed: int = 0, deep_k: int = 0, deep_problems: int = 64) -> dict[str, int]:
    """Returns {key: run_id}. With deep_k, the runs of suite.DEEP_RUNS also get a deep evaluation
    (deep_k samples on each of the first deep_problems problems) of their base and last checkpoint:
    every problem at the checkpoint's solve rate, but at the last one only the first deep_share of
    them (the rest never)."""
    cfgs = suite.configs(base, size, keys=tuple(plans))
    rng = np.random.default_rng(seed)
    ids = [f"test-{i:04d}" for i in range(problems)]
    difficulty = rng.uniform(-1, 1, problems)  # shared across runs: the same problems are hard for all
    out = {}
    for key, plan in plans.items():
        cfg = cfgs[key]
        run_id = store.create_run(cfg.algo, dataclasses.asdict(cfg), name=suite.RUN_NAME.format(key=key),
                                  status=plan.status, total=len(plan.greedy) - 1)
        steps = list(range(len(plan.greedy)))
        per_step_samples = 100
        for step, g, s in zip(steps, plan.greedy, plan.solve):
            seen = step * per_step_samples
            store.log_metrics(run_id, step, {"reward": s}, samples_seen=seen)
            cid = store.add_checkpoint(run_id, step, base if step == 0 else f"/nowhere/{key}/{step}", {"maj@1": g})
            rates = np.clip(s + plan.spread * difficulty, 0, 1)
            rows = []
            for pid, rate in zip(ids, rates):
                rows.append(_row(run_id, cid, step, pid, -1, int(rng.random() < g)))
                rows += [_row(run_id, cid, step, pid, j, int(rng.random() < rate)) for j in range(k)]
            store.add_samples(rows)
            if deep_k and key in suite.DEEP_RUNS and step in (0, steps[-1]):
                share = plan.deep_share if step == steps[-1] else 1.0
                rows = []
                for i, pid in enumerate(ids[:deep_problems]):
                    rate = s if i < share * deep_problems else 0.0
                    rows.append(dict(_row(run_id, cid, step, pid, -1, int(rng.random() < g)), kind=DEEP_EVAL))
                    rows += [dict(_row(run_id, cid, step, pid, j, int(rng.random() < rate)), kind=DEEP_EVAL)
                             for j in range(deep_k)]
                store.add_samples(rows)
        for step, (h, a) in enumerate(zip(plan.entropy, plan.accuracy), start=1):
            store.log_metrics(run_id, step, {"entropy": h, "train/accuracy": a}, samples_seen=step * per_step_samples)
        if key == "grpo":
            rows = []
            for step in range(1, len(plan.greedy)):
                for pid, d in zip(ids[:32], difficulty):
                    rate = float(np.clip(plan.solve[step] + plan.spread * d, 0, 1))
                    rows += [dict(_row(run_id, None, step, pid, j, int(rng.random() < rate)), kind="rollout",
                                  split="train") for j in range(plan.n_rollout)]
            store.add_samples(rows)
        out[key] = run_id
    return out


def _row(run_id, cid, step, pid, idx, correct):
    return {"run_id": run_id, "checkpoint_id": cid, "step": step, "kind": "eval", "task": "multistep", "split": "test",
            "problem_id": pid, "sample_idx": idx, "text": "x", "answer": "1" if correct else "2",
            "correct": correct, "reward": float(correct), "n_tokens": 3, "logprob": -1.0 - (not correct),
            "created_at": time.time()}
