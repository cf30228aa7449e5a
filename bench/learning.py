"""Expert iteration, PPO and GRPO from the same weak base, for the same sample budget.

Each algorithm trains as a real run (through engine.jobs, in a temporary workspace) and is
evaluated the same way before and after: greedy maj@1 and pass@16 on the same test problems.
Target: EI raises maj@1 by at least 0.20 within 5 minutes on 2 CPU cores.
Last line: {"ei": {"before": {...}, "after": {...}, "samples": .., "wall_s": ..}, "ppo": ..., "grpo": ...}
Usage: python bench/learning.py [--base CKPT] [--algos ei,ppo,grpo] [--budget SAMPLES]
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

EVAL = ["eval_limit=300", "eval_k=16"]


def settings(algo: str, budget: int) -> list[str]:
    """Each algorithm's shape for a budget of sampled solutions (the paper's x-axis)."""
    if algo == "ei":  # the quickstart's recipe: 3 rounds of 1024 problems x K
        from engine.quickstart import QUICKSTART_EI

        k = max(1, budget // (3 * 1024))
        return [*[s for s in QUICKSTART_EI if not s.startswith("k=")], f"k={k}"]
    if algo == "ppo":  # 64 problems x 4 samples per iteration
        return [f"steps={max(1, budget // 256)}", "prompts_per_step=64", "n=4", f"checkpoint_every={max(1, budget // 256)}"]
    if algo == "grpo":  # 32 problems x 8 samples per iteration
        return [f"steps={max(1, budget // 256)}", "prompts_per_step=32", "n=8", f"checkpoint_every={max(1, budget // 256)}"]
    raise SystemExit(f"unknown algorithm {algo}")


def run(algo: str, base: Path, budget: int, home: Path, extra: list[str]) -> dict:
    os.environ["REASONLAB_HOME"] = str(home / algo)
    from engine import jobs
    from engine.config import make_config
    from engine.store import Store

    cfg = make_config(algo, base=base, sets=[*EVAL, *settings(algo, budget), *extra])
    with Store() as store:
        run_id = jobs.submit(store, cfg, foreground=True)
        start = time.time()
        status = jobs.execute(store, store.claim_run(run_id, os.getpid()))
        wall = time.time() - start
        ck = store.checkpoints(run_id)
        seen = store.metrics(run_id)["samples_seen"].max()
        error = store.get_run(run_id)["error"]

    def pick(m):
        return {"maj@1": round(m["maj@1"], 3), "pass@1": round(m["pass@1"], 3), "pass@16": round(m["pass@16"], 3)}

    out = {"before": pick(ck.iloc[0]["metrics"]), "after": pick(ck.iloc[-1]["metrics"]),
           "samples": int(seen), "wall_s": round(wall, 1), "status": status, "config": [*settings(algo, budget), *extra]}
    out["maj@1_gain"] = round(out["after"]["maj@1"] - out["before"]["maj@1"], 3)
    if error:
        out["error"] = error
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--base")
    p.add_argument("--algos", default="ei,ppo,grpo")
    p.add_argument("--budget", type=int, default=24576, help="sampled solutions per algorithm")
    p.add_argument("--set", action="append", default=[], metavar="ALGO:FIELD=VALUE",
                   help="extra config for one algorithm, e.g. ei:restart=false")
    args = p.parse_args()
    base = base_checkpoint(args.base)
    results = {}
    with tempfile.TemporaryDirectory() as home:
        for algo in args.algos.split(","):
            extra = [s.split(":", 1)[1] for s in args.set if s.startswith(algo + ":")]
            results[algo] = run(algo, base, args.budget, Path(home), extra)
            print(f"{algo}: {results[algo]}", file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
