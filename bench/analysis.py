"""Analysis speed on a realistic store: 1,000 problems x 96 samples of one checkpoint.

Fabricates the samples from the built-in task (valid solutions in random orders, some with an
arithmetic slip carried through to a wrong answer, a few with no final answer), writes them to a
store in a temporary REASONLAB_HOME, then times what the dashboard does:
- one problem's solution tree and pass@k / maj@k / rerank@k curves (every k, bootstrap bands),
  store query included (target < 2 s);
- a whole checkpoint's diversity without embeddings, store query included (target < 30 s).
Also a whole checkpoint's curves (every k) and the tree and icicle of 1,000 samples of one 8-step
problem. Last line: JSON.
Usage: python bench/analysis.py [--problems 1000] [--k 96]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.evaluation import checkpoint_diversity, curve_table, solution_tree  # noqa: E402
from engine.store import Store  # noqa: E402
from engine.tasks.multistep import MultiStep, integer_answers, parse_steps  # noqa: E402
from engine.viz import fig_curves, fig_tree  # noqa: E402
from tests.dashboard_store import with_slip  # noqa: E402


def fabricate(task: MultiStep, problems: list, k: int, seed: int = 0) -> list[dict]:
    """Sample rows for Store.add_samples, less the run and checkpoint ids."""
    rng = random.Random(seed)
    rows = []
    for p in problems:
        slip = rng.uniform(0.0, 0.9)  # problems range from always solved to rarely solved
        for idx in range(-1, k):
            text = task.sample_solution(p, rng)
            if rng.random() < (slip / 2 if idx < 0 else slip):
                text = with_slip(text, rng)
            if rng.random() < 0.03:
                text = text.rsplit("\n", 1)[0]  # stopped before the final answer
            answer = integer_answers(text)[0]
            n_tokens = len(text.split())
            rows.append({"kind": "eval", "task": task.name, "split": "test", "problem_id": p.id,
                         "sample_idx": idx, "text": text, "answer": answer, "correct": int(answer == p.answer),
                         "n_tokens": n_tokens, "logprob": -n_tokens * rng.uniform(0.05, 0.4)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--k", type=int, default=96)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["REASONLAB_HOME"] = home
        task = MultiStep()
        start = time.perf_counter()
        problems = task.problems("test", args.problems)
        rows = fabricate(task, problems, args.k)
        with Store() as store:
            run_id = store.create_run("ei", {}, status="finished")
            checkpoint_id = store.add_checkpoint(run_id, 0, Path(home) / "checkpoints" / "step0")
            store.add_samples([{**r, "run_id": run_id, "checkpoint_id": checkpoint_id, "step": 0} for r in rows])
            build_s = time.perf_counter() - start
            print(f"store: {len(rows)} samples of {len(problems)} problems in {build_s:.1f}s")

            problem_id = max(problems, key=lambda p: len(parse_steps(p.reference)[0])).id  # a 5-step one
            start = time.perf_counter()
            one = store.samples(checkpoint_id=checkpoint_id, problem_id=problem_id)
            tree = solution_tree(one)
            table = curve_table(one, scores="logprob")
            tree_and_curves_s = time.perf_counter() - start
            fig_tree(tree), fig_curves(table)
            figures_s = time.perf_counter() - start - tree_and_curves_s
            print(f"one problem: {len(tree)} tree nodes, {len(table)} curve points in {tree_and_curves_s:.2f}s "
                  f"(+{figures_s:.2f}s for the two figures)")

            start = time.perf_counter()
            diversity = checkpoint_diversity(store.samples(checkpoint_id=checkpoint_id))
            checkpoint_diversity_s = time.perf_counter() - start
            means = ", ".join(f"{m} {v:.3g}" for m, v in diversity.means.items())
            print(f"checkpoint diversity of {len(diversity.per_problem)} problems in {checkpoint_diversity_s:.1f}s: {means}")

            start = time.perf_counter()
            table = curve_table(store.samples(checkpoint_id=checkpoint_id), scores="logprob")
            checkpoint_curves_s = time.perf_counter() - start
            at_k = table[table["k"] == args.k].set_index("metric")["value"]
            print(f"checkpoint curves (every k, 3 metrics, bands) in {checkpoint_curves_s:.1f}s: "
                  + ", ".join(f"{m}@{args.k} {v:.3f}" for m, v in at_k.items()))

        # one 8-step problem with 1,000 samples: the tree and its icicle
        longest = max(task.problems("ood", 50), key=lambda p: len(parse_steps(p.reference)[0]))
        big = fabricate(task, [longest], 1000, seed=1)
        start = time.perf_counter()
        big_tree = solution_tree(pd.DataFrame(big))
        fig_tree(big_tree)
        tree_1000_s = time.perf_counter() - start
        print(f"1,000-sample tree: {len(big_tree)} nodes, built and drawn in {tree_1000_s:.2f}s")

    print(json.dumps({"tree_and_curves_s": round(tree_and_curves_s, 3),
                      "checkpoint_diversity_s": round(checkpoint_diversity_s, 2),
                      "checkpoint_curves_s": round(checkpoint_curves_s, 2), "tree_1000_samples_s": round(tree_1000_s, 3), "problems": len(problems), "k": args.k,
                      "samples": len(rows)}))


if __name__ == "__main__":
    main()
