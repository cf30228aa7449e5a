"""Run by tests/test_distributed.py under `accelerate launch`: EI's fine-tuning (sft.finetune) of a
checkpoint on fixed pairs, then each process writes the weights it ends with.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 tests/ddp_finetune.py CKPT OUT
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.algorithms.sft import finetune
from engine.model.checkpoint import load_checkpoint

# 8 pairs of the same token length: each process's share of a batch has as many target tokens, so
# the mean of the processes' mean losses is the whole batch's mean loss.
PAIRS = [(f"{a} + {b} =", f" {a + b}") for a, b in [(1, 2), (3, 4), (2, 5), (4, 4), (6, 1), (2, 2), (5, 3), (7, 1)]]
STEPS, BATCH, LR = 2, 4, 3e-3


def train(checkpoint) -> dict[str, torch.Tensor]:
    model, tokenizer = load_checkpoint(checkpoint)
    finetune(model, tokenizer, PAIRS, steps=STEPS, batch_size=BATCH, lr=LR, seed=0)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


if __name__ == "__main__":
    from accelerate import PartialState

    checkpoint, out = sys.argv[1], Path(sys.argv[2])
    weights = train(checkpoint)
    save_file(weights, out / f"rank{PartialState().process_index}.safetensors")
