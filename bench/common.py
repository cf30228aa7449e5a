"""Shared by the benchmarks: a checkpoint to measure, and the machine's matmul throughput."""

from __future__ import annotations

import time
from pathlib import Path

import torch


def base_checkpoint(path: str | None) -> Path:
    """The given checkpoint, else the base that ships with reasonlab (its copy in the workspace)."""
    if path:
        return Path(path)
    from engine.assets import shipped_base

    return shipped_base()


def matmul_flops(size: int = 1024, seconds: float = 1.0, device: str = "cpu") -> float:
    """Dense float32 matmul FLOP/s on `device`, now (the denominator of FLOP utilisation)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    sync()
    return 2 * size**3 * done / (time.perf_counter() - start)
