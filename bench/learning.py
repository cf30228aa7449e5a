"""Expert iteration, PPO and GRPO from the same weak base, for the same sample budget.

Each algorithm trains as a real run (through engine.jobs, in a temporary workspace) and is
evaluated the same way before and after: greedy maj@1 and pass@16 on the same test problems.
Target: EI raises maj@1 by at least 0.20 within 5 minutes on 2 CPU cores; PPO and GRPO at least
0.6x EI's samples a second.

For each run it prints where the time went (engine/profiling.py: sampling, scoring, the
no-gradient log-probabilities, the update, evaluation, checkpoints, store writes), the share spent
evaluating, and the FLOP utilisation of sampling (2 x params x sampled tokens a second) and of the
update (6 x params x trained tokens a second, a row's prompt counted in each of its rows as the
plain pass computes it: computing each prompt once, shared_prefix.py, can lift it above 1), over
the matmul FLOP/s measured in the same run.
Last line: {"ei": {"before": {...}, "after": {...}, "samples": .., "wall_s": .., "samples_per_s": ..,
"phases": {...}, "eval_share": .., "sample_mfu": .., "update_mfu": ..}, "ppo": ..., "grpo": ...,
"ratios": {"ppo_vs_ei": .., "grpo_vs_ei": ..}, "matmul_gflops": ..}
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
from bench.common import base_checkpoint, matmul_flops  # noqa: E402

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


def params_of(path: Path) -> int:
    """The checkpoint's parameters (as stored: tied weights once, as model.parameters() counts them)."""
    from safetensors.torch import load_file

    return sum(t.numel() for f in sorted(Path(path).glob("*.safetensors")) for t in load_file(str(f)).values())


def run(algo: str, base: Path, budget: int, home: Path, extra: list[str], flops: float) -> dict:
    os.environ["REASONLAB_HOME"] = str(home / algo)
    from engine import jobs, profiling
    from engine.config import make_config
    from engine.store import Store

    cfg = make_config(algo, base=base, sets=[*EVAL, *settings(algo, budget), *extra])
    with Store() as store:
        run_id = jobs.submit(store, cfg, foreground=True)
        start = time.time()
        status = jobs.execute(store, store.claim_run(run_id, os.getpid()))
        wall = time.time() - start
        phases = profiling.current.report(wall)
        ck = store.checkpoints(run_id)
        seen = store.metrics(run_id)["samples_seen"].max()
        error = store.get_run(run_id)["error"]

    def pick(m):
        return {"maj@1": round(m["maj@1"], 3), "pass@1": round(m["pass@1"], 3), "pass@16": round(m["pass@16"], 3)}

    out = {"before": pick(ck.iloc[0]["metrics"]), "after": pick(ck.iloc[-1]["metrics"]),
           "samples": int(seen), "wall_s": round(wall, 1), "status": status, "config": [*settings(algo, budget), *extra]}
    out["maj@1_gain"] = round(out["after"]["maj@1"] - out["before"]["maj@1"], 3)
    out["samples_per_s"] = round(float(seen) / wall, 1)
    out["phases"] = phases["seconds"]
    out["eval_share"] = phases["share"].get("evaluate", 0.0)
    params, secs, counts = params_of(base), phases["seconds"], phases["counts"]
    if secs.get("sample"):
        out["sample_mfu"] = round(2 * params * counts.get("sample_tokens", 0) / secs["sample"] / flops, 4)
    if secs.get("update") and counts.get("update_tokens"):
        out["update_mfu"] = round(6 * params * counts["update_tokens"] / secs["update"] / flops, 4)
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
    flops = matmul_flops()
    results: dict = {}
    with tempfile.TemporaryDirectory() as home:
        for algo in args.algos.split(","):
            extra = [s.split(":", 1)[1] for s in args.set if s.startswith(algo + ":")]
            results[algo] = run(algo, base, args.budget, Path(home), extra, flops)
            r = results[algo]
            print(f"{algo}: {r}", file=sys.stderr, flush=True)
            print(f"{algo}: {r['samples_per_s']} samples/s; " + ", ".join(
                f"{p} {s:.1f} s ({100 * s / r['wall_s']:.0f}%)" for p, s in r["phases"].items()), file=sys.stderr)
    if "ei" in results:
        results["ratios"] = {f"{a}_vs_ei": round(results[a]["samples_per_s"] / results["ei"]["samples_per_s"], 2)
                             for a in results if a != "ei"}
    results["matmul_gflops"] = round(flops / 1e9, 1)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
