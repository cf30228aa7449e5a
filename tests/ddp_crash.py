"""Run by tests/test_distributed.py under `accelerate launch`: `reasonlab train` (its arguments
follow) in which process 1 crashes as its training starts, while process 0 trains on.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 tests/ddp_crash.py train ...
"""

import importlib
import os
import sys

from engine.cli import main
from engine.algorithms import ALGORITHMS

CRASH = "injected crash on process 1"

if __name__ == "__main__":
    if os.environ.get("RANK") == "1":
        def crash(ctx, cfg):
            raise ValueError(CRASH)
        for module in {a.module for a in ALGORITHMS.values()}:
            importlib.import_module(f"engine.algorithms.{module}").train = crash
    main(sys.argv[1:])
