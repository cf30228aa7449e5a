"""reasonlab's sampler against `model.generate`: same checkpoint, prompts, n=96, one run.

Prints tokens/s of both, their ratio (target >= 3) and model FLOP utilisation
(2 x params x tokens/s over the matmul FLOP/s measured in the same run); last line is JSON.
With --vllm (a CUDA GPU and `reasonlab[gpu]`, or vLLM's CPU build: `.venv-vllm/bin/python`), vLLM's
sampler is timed on the same prompts too.
Usage: python bench/sampler.py [CHECKPOINT] [--prompts 8] [--n 96] [--device cuda] [--vllm]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import base_checkpoint, matmul_flops  # noqa: E402
from engine.model.checkpoint import load_checkpoint  # noqa: E402
from engine.sampling.torch_sampler import TorchSampler  # noqa: E402
from engine.tasks import get_task  # noqa: E402


def generated_tokens(rows: list[list[int]], eos: int) -> int:
    return sum(row.index(eos) + 1 if eos in row else len(row) for row in rows)


def time_generate(model, tokenizer, prompts, n, max_new_tokens, per_call) -> tuple[float, int]:
    tokens, start = 0, time.perf_counter()
    for i in range(0, len(prompts), per_call):
        enc = tokenizer(prompts[i:i + per_call], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=n,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        tokens += generated_tokens(out[:, enc["input_ids"].shape[1]:].tolist(), tokenizer.eos_token_id)
    return time.perf_counter() - start, tokens


def time_sampler(sampler, prompts, n, max_new_tokens) -> tuple[float, int]:
    start = time.perf_counter()
    out = sampler.sample(prompts, n=n, temperature=1.0, max_new_tokens=max_new_tokens, seed=0)
    return time.perf_counter() - start, sum(len(c.token_ids) for cs in out for c in cs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vllm", action="store_true", help="also time the vLLM backend (CUDA GPU, or vLLM's CPU build)")
    args = ap.parse_args()

    checkpoint = base_checkpoint(args.checkpoint)
    model, tokenizer = load_checkpoint(checkpoint, device=args.device)
    task = get_task("multistep")
    prompts = [task.prompt(p) for p in task.problems("test", args.prompts)]
    sampler = TorchSampler(model, tokenizer, batch_size=args.batch_size)
    per_call = max(1, args.batch_size // args.n)  # generate gets the same prompts per batch

    time_sampler(sampler, prompts[:1], 4, 8)  # warm-up both paths
    time_generate(model, tokenizer, prompts[:1], 4, 8, 1)
    flops = matmul_flops(device=args.device)
    s_time, s_tokens = time_sampler(sampler, prompts, args.n, args.max_new_tokens)
    g_time, g_tokens = time_generate(model, tokenizer, prompts, args.n, args.max_new_tokens, per_call)
    params = sum(p.numel() for p in model.parameters())
    ours, theirs = s_tokens / s_time, g_tokens / g_time
    result = {
        "params": params, "prompts": len(prompts), "n": args.n, "threads": torch.get_num_threads(),
        "sampler_tokens_per_s": round(ours, 1), "generate_tokens_per_s": round(theirs, 1),
        "ratio": round(ours / theirs, 2), "matmul_gflops": round(flops / 1e9, 1),
        "sampler_mfu": round(2 * params * ours / flops, 4), "generate_mfu": round(2 * params * theirs / flops, 4),
        "sampler_tokens": s_tokens, "generate_tokens": g_tokens,
    }
    print(f"sampler  {ours:10.0f} tok/s   ({s_tokens} tokens in {s_time:.1f}s)")
    print(f"generate {theirs:10.0f} tok/s   ({g_tokens} tokens in {g_time:.1f}s)")
    print(f"ratio {ours / theirs:.2f}x   MFU sampler {result['sampler_mfu']:.2%}  generate {result['generate_mfu']:.2%}")
    if args.vllm:
        from engine.sampling.vllm_sampler import VLLMSampler

        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        vllm = VLLMSampler(str(checkpoint), tokenizer, dtype=dtype, gpu_memory=0.5)
        time_sampler(vllm, prompts[:1], 4, 8)  # warm-up
        v_time, v_tokens = time_sampler(vllm, prompts, args.n, args.max_new_tokens)
        result.update(vllm_tokens_per_s=round(v_tokens / v_time, 1), vllm_vs_sampler=round(v_tokens / v_time / ours, 2))
        print(f"vllm     {v_tokens / v_time:10.0f} tok/s   ({v_tokens} tokens in {v_time:.1f}s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
