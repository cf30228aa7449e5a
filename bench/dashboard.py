"""Dashboard speed and memory on a store of about 1,000,000 samples.

Fabricates a realistic workspace (in a child process, so its memory is not counted): an EI run
(5 evaluated checkpoints), a PPO run (5 checkpoints, losses and KL logged), a failed GRPO run,
1,000 test problems x (greedy + 96 samples) per checkpoint, plus training rollouts. Texts come
from the built-in task: valid solutions in several orders, arithmetic slips carried through,
solutions cut before the answer; later checkpoints slip less and vary less, as training does.

Then renders every page with Streamlit's AppTest in this process, once cold (caches empty) and
once warm, and prints per-page times; then times the full-text index's build and typical searches
(a word, a number, an expression, filters only; over one run and over all runs). Last line: JSON
{"slowest_page_s": (warm), "rss_mb": (peak resident memory of the rendering process),
"slowest_search_s", "search": {...}, ...}.
Usage: python bench/dashboard.py [--problems 1000] [--k 96] [--search-only]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from engine.model.presets import untrained_checkpoint  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.tasks.multistep import MultiStep, integer_answers  # noqa: E402

# (page, query parameters): each page as it opens, and Runs on the PPO run (losses, 80 logged steps)
PAGES = [("pages/home.py", {}), ("pages/launch.py", {}), ("pages/runs.py", {}), ("pages/runs.py", {"run": "2"}),
         ("pages/solutions.py", {}), ("pages/search.py", {"q": "12 + 5"}), ("pages/pass_at_k.py", {}),
         ("pages/diversity.py", {}), ("pages/compare.py", {})]
COLUMNS = ("run_id", "checkpoint_id", "step", "kind", "task", "split", "problem_id", "sample_idx", "text",
           "answer", "correct", "reward", "n_tokens", "logprob", "created_at")


class Pool:
    """One problem's candidate solutions: valid orders, slipped ones, and one cut short."""

    def __init__(self, task: MultiStep, problem, rng: random.Random):
        from bench.analysis import with_slip

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


def render(pages: list[tuple[str, dict]]) -> dict:
    """Seconds per page: its first render (cold: the caches it needs are empty), then a rerun in
    the same session (warm: what every click and every live refresh costs)."""
    from streamlit.testing.v1 import AppTest

    def timed(at) -> float:
        start = time.perf_counter()
        at.run()
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].message}")
        return round(time.perf_counter() - start, 3)

    times = {}
    for page, query in pages:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        opening = timed(at)  # the app opens on Home
        if page != "pages/home.py":
            at.switch_page(page)
            at.query_params.update(query)
        row = {"cold": opening if page == "pages/home.py" else timed(at), "warm": timed(at)}
        name = Path(page).stem + "".join(f"?{k}={v}" for k, v in query.items())
        times[name] = row
        print(f"{name:16s} cold {row['cold']:6.2f}s  warm {row['warm']:6.3f}s", flush=True)
    return times


# Searches as a person types them (engine/search.py): name -> search() arguments, each timed over one
# run (the EI run, ~half the samples) and over all runs.
SEARCHES = {"word": {"text": "carry"}, "number": {"text": "17"}, "expression": {"text": "12 + 5"},
            "common number": {"text": "5"}, "symbols only": {"text": "####"},
            "filters only": {"correct": False, "reward_max": 0.5, "step_min": 1}}
WORDS = "I forgot to carry the one"  # the built-in task writes no words; a tenth of the samples get these


def search_figures(home: str | Path, runs: dict) -> dict:
    """Seconds to build the full-text index from scratch (what migration 5 does to an existing
    store), to give a tenth of the samples a line of words, then per search (best of 3)."""
    from engine.search import search

    with Store(Path(home) / "store.sqlite") as s:
        start = time.perf_counter()
        with s._write() as conn:
            conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('rebuild')")
        figures = {"fts_rebuild_s": round(time.perf_counter() - start, 2)}
        start = time.perf_counter()
        with s._write() as conn:  # through the update trigger, as a change of text goes
            conn.execute("UPDATE samples SET text = ? || char(10) || text WHERE id % 10 = 0", (WORDS,))
        figures["words_added_s"] = round(time.perf_counter() - start, 2)
        figures["index_mb"] = round(sum(r[0] for r in s._conn.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'samples_fts%'")) / 2**20, 1) if _has_dbstat(s) else None
        for name, args in SEARCHES.items():
            for scope, run_id in (("one run", runs["ei"]), ("all runs", None)):
                best, found = float("inf"), None
                for _ in range(3):
                    start = time.perf_counter()
                    found = search(s, run_id=run_id, **args)
                    best = min(best, time.perf_counter() - start)
                figures[f"{name}, {scope}"] = {"s": round(best, 3), "matches": found.matches, "groups": found.groups_total}
                print(f"search {name + ', ' + scope:28s} {best:6.3f}s  {found.matches:>9,} samples "
                      f"{found.groups_total:>6,} groups", flush=True)
    return figures


def _has_dbstat(store) -> bool:
    try:
        store._conn.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except sqlite3.OperationalError:  # SQLite built without it
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--k", type=int, default=96)
    ap.add_argument("--search-only", action="store_true", help="time the searches, not the pages")
    ap.add_argument("--build", help=argparse.SUPPRESS)  # internal: fabricate into this directory
    args = ap.parse_args()
    if args.build:
        start = time.perf_counter()
        counts = fabricate_store(args.build, args.problems, args.k)
        print(f"store: {counts['samples']:,} samples in {time.perf_counter() - start:.0f}s "
              f"({os.path.getsize(Path(args.build) / 'store.sqlite') / 2**20:.0f} MB)", flush=True)
        (Path(args.build) / "runs.json").write_text(json.dumps(counts["runs"]))
        return

    with tempfile.TemporaryDirectory() as home:
        subprocess.run([sys.executable, __file__, "--build", home, "--problems", str(args.problems), "--k", str(args.k)],
                       check=True)
        os.environ["REASONLAB_HOME"] = home
        os.chdir(ROOT)
        times = {} if args.search_only else render(PAGES)
        searches = search_figures(home, json.loads((Path(home) / "runs.json").read_text()))
        with Store() as s:
            samples = s._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    timed = {k: v["s"] for k, v in searches.items() if isinstance(v, dict)}
    pages = {}
    if times:
        slowest = max(times, key=lambda p: times[p]["warm"])
        pages = {"slowest_page_s": times[slowest]["warm"], "slowest_page": slowest, "rss_mb": round(rss_mb),
                 "slowest_cold_s": max(t["cold"] for t in times.values())}
    print(json.dumps({**pages, "samples": samples, "slowest_search_s": max(timed.values()),
                      "slowest_search": max(timed, key=timed.get), "pages": times, "search": searches}))


if __name__ == "__main__":
    main()
