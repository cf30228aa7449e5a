"""An evaluation's sampling, as it was and as it is: the greedy completions and the K samples in two
sampler calls, against one call that decodes each prompt's greedy row in its samples' batch
(base.sample_with_greedy). Same checkpoint, problems and seed; the two alternate, `--repeats`
times each, in one run. It checks that the samples and greedy completions are the same tokens.

Usage: python bench/evaluation.py [CHECKPOINT] [--problems 300] [--k 16] [--repeats 3]
Last line: {"two_calls_s": .., "one_call_s": .., "ratio": .., "same_completions": true, ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import base_checkpoint  # noqa: E402
from engine.model.checkpoint import load_checkpoint  # noqa: E402
from engine.sampling.base import sample_with_greedy  # noqa: E402
from engine.sampling.torch_sampler import TorchSampler  # noqa: E402
from engine.tasks import get_task  # noqa: E402


def two_calls(sampler, prompts, k, max_new_tokens):
    greedy = sampler.sample(prompts, n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    sampled = sampler.sample(prompts, n=k, temperature=1.0, max_new_tokens=max_new_tokens, seed=0)
    return [(g[0], s) for g, s in zip(greedy, sampled)]


def one_call(sampler, prompts, k, max_new_tokens):
    return sample_with_greedy(sampler, prompts, n=k, temperature=1.0, max_new_tokens=max_new_tokens, seed=0)


def tokens(out) -> list:
    return [(g.token_ids, [c.token_ids for c in s]) for g, s in out]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--problems", type=int, default=300)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    model, tokenizer = load_checkpoint(base_checkpoint(args.checkpoint))
    task = get_task("multistep")
    prompts = [task.prompt(p) for p in task.problems("test", args.problems)]
    sampler = TorchSampler(model, tokenizer)
    one_call(sampler, prompts[:2], 2, 8)  # warm-up
    seconds: dict[str, list[float]] = {"two_calls": [], "one_call": []}
    outputs = {}
    for _ in range(args.repeats):
        for name, fn in (("two_calls", two_calls), ("one_call", one_call)):
            start = time.perf_counter()
            outputs[name] = fn(sampler, prompts, args.k, args.max_new_tokens)
            seconds[name].append(time.perf_counter() - start)
    two, one = (statistics.median(seconds[n]) for n in ("two_calls", "one_call"))
    result = {"problems": len(prompts), "k": args.k, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "two_calls_s": round(two, 2), "one_call_s": round(one, 2), "ratio": round(two / one, 2),
              "all_s": {n: [round(x, 2) for x in v] for n, v in seconds.items()},
              "same_completions": tokens(outputs["two_calls"]) == tokens(outputs["one_call"])}
    print(f"greedy and samples in two calls {two:.2f} s, in one {one:.2f} s (median of {args.repeats}): "
          f"{two / one:.2f}x; the same completions: {result['same_completions']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
