"""A realistic workspace to test and time the dashboard on, fabricated without a model (bench/dashboard.py
and bench/delete.py time it at a million samples; the page tests use a few dozen).

`fabricate_store(home)` writes an EI run (evaluated checkpoints, rollouts), a PPO run (losses and KL
logged) and a failed GRPO run. Texts come from the built-in task: valid solutions in several orders,
arithmetic slips carried through, solutions cut before the answer; later checkpoints slip less and
vary less, as training does.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import numpy as np

from engine.model.presets import untrained_checkpoint
from engine.store import Store
from engine.tasks.multistep import MultiStep, format_solution, integer_answers, parse_steps

# the samples table's columns, in the order the fabricated rows carry them
COLUMNS = ("run_id", "checkpoint_id", "step", "kind", "task", "split", "problem_id", "sample_idx", "text",
           "answer", "correct", "reward", "n_tokens", "logprob", "created_at")
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a // b}


def with_slip(text: str, rng: random.Random) -> str:
    """One step's result off by a small amount, carried through the later steps that use it."""
    steps, _ = parse_steps(text)
    j, delta = rng.randrange(len(steps)), rng.choice([-10, -2, -1, 1, 2, 3])
    changed: dict[int, int] = {}  # old value -> new value
    out = []
    for i, (a, op, b, c) in enumerate(steps):
        a, b = changed.get(a, a), changed.get(b, b)
        new_c = OPS[op](a, b) if op != "/" or b else c
        new_c += delta if i == j else 0
        if new_c != c:
            changed[c] = new_c
        out.append((a, op, b, new_c))
    return format_solution(out)


class Pool:
    """One problem's candidate solutions: valid orders, slipped ones, and one cut short."""

    def __init__(self, task: MultiStep, problem, rng: random.Random):
        orders = list(dict.fromkeys([problem.reference] + [task.sample_solution(problem, rng) for _ in range(10)]))
        slips = list(dict.fromkeys(with_slip(rng.choice(orders), rng) for _ in range(6)))
        self.texts = orders + slips + [problem.reference.rsplit("\n", 1)[0]]
        self.n_orders, self.n_slips = len(orders), len(slips)
        self.answers = [integer_answers(t)[0] for t in self.texts]
        self.correct = [int(a == problem.answer) for a in self.answers]
        # from always solved to never solved (a tenth of the problems are out of reach)
        self.difficulty = 1.0 if rng.random() < 0.1 else rng.uniform(0.05, 0.98)

    def draw(self, rng: np.random.Generator, n: int, progress: float) -> np.ndarray:
        """Indices of n samples at a point of training (progress 0..1): fewer slips and a
        sharper preference among the valid orders as training goes on."""
        slip = self.difficulty ** (1 + 2 * progress)
        kind = rng.choice(3, size=n, p=[(1 - slip) * 0.97, slip * 0.97, 0.03])
        weights = np.arange(1, self.n_orders + 1, dtype=float) ** -(0.5 + 2.5 * progress)
        orders = rng.choice(self.n_orders, size=n, p=weights / weights.sum())
        slips = self.n_orders + rng.integers(0, self.n_slips, size=n)
        return np.select([kind == 0, kind == 1], [orders, slips], len(self.texts) - 1)


def _rows(run_id, checkpoint_id, step, kind, split, problem_id, pool: Pool, picks, greedy: bool, rng, now):
    for j, i in enumerate(picks):
        text, correct = pool.texts[i], pool.correct[i]
        n_tokens = len(text) // 2
        yield (run_id, checkpoint_id, step, kind, "multistep", split, problem_id, j - 1 if greedy else j, text,
               pool.answers[i], correct, float(correct), n_tokens,
               -n_tokens * (0.08 if correct else 0.2) * float(rng.uniform(0.6, 1.4)), now)


def _metrics(picks_by_problem: list[tuple[Pool, np.ndarray]]) -> dict:
    greedy = [p.correct[picks[0]] for p, picks in picks_by_problem]
    drawn = [np.array([p.correct[i] for i in picks[1:]]) for p, picks in picks_by_problem]
    k = len(drawn[0])
    maj = []
    for (p, picks) in picks_by_problem:
        answers = [p.answers[i] for i in picks[1:] if p.answers[i] is not None]
        top = max(set(answers), key=answers.count) if answers else None
        maj.append(int(top is not None and p.correct[p.answers.index(top)] == 1))
    return {"maj@1": float(np.mean(greedy)), "pass@1": float(np.mean([d.mean() for d in drawn])),
            f"pass@{k}": float(np.mean([d.any() for d in drawn])), f"maj@{k}": float(np.mean(maj)),
            "split": "test", "problems": len(drawn)}


def fabricate_store(home: str | Path, problems: int = 1000, k: int = 96, ei_rounds: int = 4,
                    ppo_checkpoints: int = 4, rollout_problems: int = 64, seed: int = 0) -> dict:
    """Write a workspace with an EI run, a PPO run and a failed GRPO run to `home`. Returns
    {"samples": n, "runs": {...ids}, "checkpoints": {run_id: [checkpoint ids]}}."""
    home = Path(home)
    task, rng, nrng = MultiStep(), random.Random(seed), np.random.default_rng(seed)
    test = [(p, Pool(task, p, rng)) for p in task.problems("test", problems)]
    train = [(p, Pool(task, p, rng)) for p in task.problems("train", rollout_problems * 2)]
    base = home / "checkpoints" / "base-tiny"
    if not base.is_dir():  # a whole (untrained) base, so launching from it validates
        untrained_checkpoint(base)
    now = time.time()  # samples' created_at; each run's clock starts a second after it was queued
    counts = {"samples": 0, "runs": {}, "checkpoints": {}}
    with Store(home / "store.sqlite") as store:
        conn = sqlite3.connect(store.path)

        def clock(run_id):
            return store.get_run(run_id)["created_at"] + 1

        def insert(rows):  # staged, then one statement, as Store.add_samples does (the full-text index's cost)
            columns = ", ".join(COLUMNS)
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staged ({columns})")
            conn.executemany(f"INSERT INTO temp.staged ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            counts["samples"] += conn.execute(f"INSERT INTO samples ({columns}) SELECT {columns} FROM temp.staged"
                                              " ORDER BY rowid").rowcount
            conn.execute("DELETE FROM temp.staged")

        def evaluate(run_id, step, progress, path, samples_seen):
            checkpoint_id = store.add_checkpoint(run_id, step, path)
            picks = [(pool, np.concatenate([[pool.draw(nrng, 1, min(1.0, progress + 0.3))[0]],
                                            pool.draw(nrng, k, progress)])) for _, pool in test]
            insert(row for (p, _), (pool, idx) in zip(test, picks)
                   for row in _rows(run_id, checkpoint_id, step, "eval", "test", p.id, pool, idx, True, nrng, now))
            conn.commit()
            metrics = _metrics(picks)
            store.update_checkpoint_metrics(checkpoint_id, metrics)
            store.log_metrics(run_id, step, {f"eval/{m}": v for m, v in metrics.items() if "@" in m},
                              samples_seen=samples_seen, wall_time=clock(run_id) + step)
            counts["checkpoints"].setdefault(run_id, []).append(checkpoint_id)

        def rollouts(run_id, step, progress, n_problems, n):
            drawn = rng.sample(train, n_problems)
            picks = [(p, pool, pool.draw(nrng, n, progress)) for p, pool in drawn]
            insert(row for p, pool, idx in picks
                   for row in _rows(run_id, None, step, "rollout", "train", p.id, pool, idx, False, nrng, now))
            conn.commit()
            return float(np.mean([pool.correct[i] for _, pool, idx in picks for i in idx]))

        # 1) expert iteration, finished
        ei = store.create_run("ei", {"base": str(base), "task": "multistep", "rounds": ei_rounds, "k": k},
                              name="quickstart", total=ei_rounds, status="finished", parent_checkpoint=base)
        seen = 0
        evaluate(ei, 0, 0.0, base, 0)
        for r in range(1, ei_rounds + 1):
            accuracy = rollouts(ei, r, (r - 1) / ei_rounds, rollout_problems, k)
            seen += rollout_problems * k
            store.log_metrics(ei, r, {"reward": accuracy, "train/accuracy": accuracy, "train/solved": min(1, 2 * accuracy),
                                      "ei/new_solutions": 50 * r, "ei/dataset": 120 * r, "sft/loss": 0.9 / r,
                                      "tokens_per_s": 900.0}, samples_seen=seen, wall_time=clock(ei) + r)
            evaluate(ei, r, r / ei_rounds, home / "runs" / f"{ei:05d}" / f"step-{r:05d}", seen)
        store.update_run(ei, step=ei_rounds, progress=1.0, phase="done", started_at=clock(ei), finished_at=clock(ei) + 600)

        # 2) PPO, finished, losses and KL at every step
        steps, every = 20 * ppo_checkpoints, 20
        ppo = store.create_run("ppo", {"base": str(base), "task": "multistep", "steps": steps, "n": 4},
                               total=steps, status="finished", parent_checkpoint=base)
        seen = 0
        evaluate(ppo, 0, 0.0, base, 0)
        for s in range(1, steps + 1):
            accuracy = rollouts(ppo, s, s / steps * 0.8, min(8, len(train)), 4)
            seen += 32
            store.log_metrics(ppo, s, {"reward": accuracy, "train/accuracy": accuracy, "policy_loss": -0.02 + 0.01 * rng.random(),
                                       "value_loss": 0.3 / s ** 0.5, "approx_kl": 0.002 * rng.random(), "clip_frac": 0.05 * rng.random(),
                                       "entropy": 1.2 - 0.005 * s, "kl_ref": 0.01 * s, "kl_coef": 0.02,
                                       "tokens_per_s": 800.0}, samples_seen=seen, wall_time=clock(ppo) + s)
            if s % every == 0:
                evaluate(ppo, s, s / steps * 0.8, home / "runs" / f"{ppo:05d}" / f"step-{s:05d}", seen)
        store.update_run(ppo, step=steps, progress=1.0, phase="done", started_at=clock(ppo), finished_at=clock(ppo) + 900)

        # 3) GRPO that crashed at its second step
        grpo = store.create_run("grpo", {"base": str(base), "task": "multistep", "steps": 10, "n": 8}, total=10,
                                status="failed", parent_checkpoint=base)
        store.update_run(grpo, step=1, progress=0.1, phase="step 1/10", started_at=clock(grpo), finished_at=clock(grpo) + 30,
                         error="RuntimeError: fabricated failure for the dashboard",
                         traceback="Traceback (most recent call last):\n  ...\nRuntimeError: fabricated failure")
        conn.close()
    counts["runs"] = {"ei": ei, "ppo": ppo, "grpo": grpo}
    return counts
