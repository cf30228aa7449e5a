"""Run by tests/test_distributed.py under `accelerate launch`: EI's fine-tuning (sft.finetune) of a
checkpoint on fixed pairs, then each process writes the weights it ends with; and the gradient of a
token-mean loss as PPO and GRPO weight it (distributed.share_weight), each process on its rows.

    python -m accelerate.commands.launch --multi_gpu --num_processes 2 tests/ddp_finetune.py CKPT OUT
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.algorithms.sft import finetune
from engine.model.checkpoint import load_checkpoint

# 8 pairs of different token lengths: the processes' shares of a batch hold different numbers of
# target tokens, so only a mean over every token of the batch (not the mean of the processes'
# means) gives the update one process makes on the whole batch.
PAIRS = [(f"{a} + {b} =", f" {a + b}") for a, b in
         [(1, 2), (3054, 4211), (2, 5), (47, 4), (6, 1), (2291, 2), (5, 3), (718, 1)]]
STEPS, BATCH, LR = 2, 4, 3e-3


def train(checkpoint) -> dict[str, torch.Tensor]:
    model, tokenizer = load_checkpoint(checkpoint)
    finetune(model, tokenizer, PAIRS, steps=STEPS, batch_size=BATCH, lr=LR, seed=0)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def token_mean_grad() -> torch.Tensor:
    """A linear layer's gradient of its outputs' mean over masked tokens (rows of 1 to 6 tokens).
    Alone: the whole batch; under a launch: every world-th row, the loss weighted by share_weight."""
    from engine import distributed
    from engine.algorithms.losses import masked_mean

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 1)
    x = torch.randn(4, 6, 3)
    mask = (torch.arange(6)[None, :] < torch.tensor([1, 6, 2, 5])[:, None]).float()
    acc = distributed.accelerator("cpu")
    trained = acc.prepare(layer)
    rows = slice(acc.process_index, None, acc.num_processes)
    loss = masked_mean(trained(x[rows]).squeeze(-1), mask[rows])
    acc.backward(loss * distributed.share_weight(mask[rows], acc))
    return layer.weight.grad.detach().clone()


if __name__ == "__main__":
    from accelerate import PartialState

    checkpoint, out = sys.argv[1], Path(sys.argv[2])
    weights = train(checkpoint)
    weights["token_mean_grad"] = token_mean_grad()
    save_file(weights, out / f"rank{PartialState().process_index}.safetensors")
