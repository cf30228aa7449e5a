"""Several processes training one run, through accelerate: `accelerate launch -m engine.cli train ...`
(or torchrun) starts one process per GPU, each runs the same loop on its share of the work.

- Rank 0 (the main process) alone touches the store (run row, metrics, rollouts, progress,
  heartbeat, checkpoints and their evaluation) and writes checkpoint directories; the others
  wait for it at a barrier and learn the run id from it.
- Each process samples its own share of a step's problems (a problem's n samples stay together);
  gradients are averaged by DDP (`accelerator.prepare`), so all ranks hold the same weights.
  Each process scales its token-mean loss by `share_weight`, so that the average is the mean
  over every token of the batch, as one process would take it, however unevenly the shares'
  token counts fall.
- Logged metrics are gathered from every process; a cancel is decided on rank 0 and broadcast so
  all processes stop at the same step.

With one process (plain `reasonlab train`, the dashboard's jobs) the Accelerator builds no process
group: prepare() returns the model as it is and every collective below is the identity.
"""

from __future__ import annotations

import os
from datetime import timedelta

from engine.errors import ReasonlabError

# The other processes wait at a barrier while rank 0 evaluates a checkpoint (minutes to hours for
# a large eval split): far longer than torch's default 10 to 30 minute collective timeout.
TIMEOUT = timedelta(hours=12)


def launched_world_size() -> int:
    """Processes started together by `accelerate launch` or torchrun (their WORLD_SIZE); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def accelerator(device: str):
    """An Accelerator for training on `device` (a run config's device field). Every one shares the
    process's state (process group, rank); make one per training so the models it prepared go with it.

    Models stay where the loops load them (device_placement=False): under a multi-GPU launch
    accelerate makes each process's current CUDA device its own GPU, so "cuda" means that GPU.
    A prepared (DDP) model synchronises on every forward and backward in training, so the loops
    give each process as many minibatches; sampling and evaluation use the unwrapped model.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, InitProcessGroupKwargs

    acc = Accelerator(cpu=device == "cpu", device_placement=False,
                      kwargs_handlers=[InitProcessGroupKwargs(timeout=TIMEOUT)])
    if acc.num_processes > 1:
        if acc.device.type != device.split(":")[0]:
            raise ReasonlabError(f"device={device}, but this {acc.num_processes}-process launch trains on "
                                 f"{acc.device.type}; set device={acc.device.type}")
        if device.startswith("cuda:"):
            raise ReasonlabError(f"device={device} would put all {acc.num_processes} processes on one GPU; "
                                 "use device=cuda under accelerate launch (each process gets its own GPU)")
        if acc.distributed_type not in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
            raise ReasonlabError(f"{acc.distributed_type.value} is not supported: reasonlab trains with DDP "
                                 "(`accelerate launch --multi_gpu`), since every process samples from whole weights")
    return acc


def check_config(cfg, world: int) -> None:
    """What a run config must allow to train on `world` processes: checked before the run is queued,
    and again when it starts (a resumed run may meet a launch of another size)."""
    if world == 1:
        return
    if cfg.sampler == "vllm":  # one in-process engine on one GPU per run
        raise ReasonlabError(f"sampler=vllm needs a single-process run; under a {world}-process launch use "
                             "sampler=torch (each process samples its share on its own GPU)", field="sampler")
    for name in ("prompts_per_step", "minibatch_size"):  # PPO and GRPO split a step's problems equally
        if getattr(cfg, name, world) % world:
            raise ReasonlabError(f"{cfg.algo} config field {name}={getattr(cfg, name)} must be a multiple of "
                                 f"the {world} processes, which share it equally", field=name)


def share_weight(tokens, acc) -> float:
    """What turns this process's mean loss over its `tokens` (a count, or a 0/1 mask) into its
    part of the whole batch's mean over all tokens, given that DDP averages the processes'
    gradients: tokens here x processes / tokens on all processes. 1 on one process.

    (Averaging the processes' own means instead would weigh a token of a short share more than a
    token of a long one.)"""
    import torch

    if acc.num_processes == 1:
        return 1.0
    here = float(tokens.sum()) if torch.is_tensor(tokens) else float(tokens)
    total = float(acc.reduce(torch.tensor([here], device=acc.device), reduction="sum").item())
    return here * acc.num_processes / total if total else 0.0


def broadcast(obj, acc):
    """rank 0's `obj` on every process (pickled)."""
    if acc.num_processes == 1:
        return obj
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([obj], from_process=0)[0]


def gather(items: list, acc) -> list:
    """Every process's list, concatenated in rank order, on every process."""
    if acc.num_processes == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)
