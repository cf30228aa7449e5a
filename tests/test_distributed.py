"""Training on several processes through accelerate, on CPU (gloo): `accelerate launch --multi_gpu
--num_processes 2 -m engine.cli train ...` as a user starts it, and DDP's gradient averaging
checked against one process training on the whole batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine.store import Store
from tests.helpers import SMALL, sets

ROOT = Path(__file__).resolve().parent.parent


def launch(*args, processes=2):
    """`accelerate launch` of `args` (a script, or `-m module ...`) on `processes` CPU processes."""
    with socket.socket() as s:  # a free port for the process group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={processes}",
           "--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no", f"--main_process_port={port}",
           *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def train(algo, base, *items):
    return launch("-m", "engine.cli", "train", "--algo", algo, "--base", base, "--quiet", *sets(*SMALL, *items))


def assert_one_run_finished_and_evaluated(result, total):
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "run 1" and lines.count("run 1") == 1  # only rank 0 speaks
    assert json.loads(lines[-1])["status"] == "finished"
    with Store() as s:
        runs = s.runs()
        assert len(runs) == 1 and runs.iloc[0]["status"] == "finished"
        checkpoints = s.checkpoints(1)
        assert checkpoints["step"].tolist() == list(range(total + 1))
        assert all("maj@1" in m for m in checkpoints["metrics"])
        metrics = s.metrics(1)
        # one row per step and metric, not one per process (elapsed time also goes with each evaluation)
        counts = metrics[metrics["name"] != "time/elapsed_s"].groupby(["step", "name"]).size()
        assert counts.max() == 1, counts[counts > 1]
        return metrics, s.samples(run_id=1, kind="rollout")


@pytest.mark.slow
def test_grpo_on_two_processes_is_one_run_with_both_shares(tiny_checkpoint):
    result = train("grpo", tiny_checkpoint, "steps=2", "prompts_per_step=4", "n=2", "minibatch_size=4",
                   "checkpoint_every=1")
    metrics, rollouts = assert_one_run_finished_and_evaluated(result, total=2)
    # each process sampled 2 of the 4 problems x 2; both shares are stored and counted
    assert rollouts.groupby("step").size().tolist() == [8, 8]
    assert rollouts.groupby("step")["problem_id"].nunique().tolist() == [4, 4]
    reward = metrics[metrics["name"] == "reward"].sort_values("step")
    assert reward["samples_seen"].tolist() == [8, 16]
    assert {"policy_loss", "grad_norm", "tokens_per_s", "eval/maj@1"} <= set(metrics["name"])


@pytest.mark.slow
def test_expert_iteration_on_two_processes(tiny_checkpoint):
    result = train("ei", tiny_checkpoint, "rounds=2", "k=3", "problems_per_round=5", "sft_max_steps=3",
                   "batch_size=4")
    metrics, rollouts = assert_one_run_finished_and_evaluated(result, total=2)
    # 5 problems shared 3 / 2 between the processes, all K=3 samples of each stored once
    assert rollouts.groupby("step").size().tolist() == [15, 15]
    assert metrics[metrics["name"] == "reward"].sort_values("step")["samples_seen"].tolist() == [15, 30]
    dataset = metrics[metrics["name"] == "ei/dataset"]["value"]
    assert len(dataset) == 2  # the same D_i on both processes: logged once, as their (equal) mean


@pytest.mark.slow
def test_two_process_updates_equal_one_process_on_the_whole_batch(tiny_checkpoint, tmp_path):
    from engine.model.checkpoint import load_checkpoint
    from tests.ddp_finetune import PAIRS, token_mean_grad
    from tests.ddp_finetune import train as finetune_alone

    _, tokenizer = load_checkpoint(tiny_checkpoint)
    lengths = {len(tokenizer(p + c)["input_ids"]) for p, c in PAIRS}
    assert len(lengths) > 2  # the premise: the processes' shares hold different numbers of tokens

    result = launch(ROOT / "tests" / "ddp_finetune.py", tiny_checkpoint, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    alone = finetune_alone(tiny_checkpoint)
    start = {k: v for k, v in load_checkpoint(tiny_checkpoint)[0].state_dict().items()}

    def norm(weights):
        return sum(float((w**2).sum()) for w in weights) ** 0.5

    moved = norm(alone[k] - start[k] for k in alone)
    assert moved > 1e-2  # the steps did change the weights
    for k in alone:
        assert torch.equal(rank0[k], rank1[k]), k  # DDP keeps the processes' weights identical
    # averaged = whole batch, up to float noise (the shares are padded to other widths; Adam
    # amplifies noise on near-zero gradients). Averaging the processes' mean losses instead of
    # weighting them by tokens missed by 9% of the update.
    assert norm(rank0[k] - alone[k] for k in alone) < 1e-3 * moved
    # PPO's and GRPO's token means: rows of 1 + 2 tokens on one process, 6 + 5 on the other
    grad = token_mean_grad()
    assert torch.allclose(rank0["token_mean_grad"], grad, atol=1e-6)
    assert torch.equal(rank0["token_mean_grad"], rank1["token_mean_grad"])


@pytest.mark.slow
def test_a_crash_on_another_process_fails_the_run_with_that_processs_error(tiny_checkpoint):
    from engine import jobs
    from tests.ddp_crash import CRASH

    result = launch(ROOT / "tests" / "ddp_crash.py", "train", "--algo", "grpo", "--base", tiny_checkpoint, "--quiet",
                    *sets(*SMALL, "steps=2", "prompts_per_step=4", "n=2", "minibatch_size=4"))
    assert result.returncode != 0
    with Store() as s:
        jobs.reconcile(s, spawn=False)  # if the launcher killed rank 0 before it could record the end
        (run,) = jobs.run_rows(s)
    assert run["status"] == "failed"  # not "interrupted": resuming would only crash again
    assert run["error"] == f"process 1 of the launch failed: ValueError: {CRASH}"
    assert "ddp_crash.py" in run["traceback"] and CRASH in run["traceback"]
    assert jobs.process_errors(1)  # kept until the run is launched again


def test_one_process_builds_no_process_group(monkeypatch):
    from engine import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    acc = distributed.accelerator("cpu")
    model = torch.nn.Linear(2, 2)
    prepared, _ = acc.prepare(model, torch.optim.AdamW(model.parameters()))
    assert acc.num_processes == 1 and not torch.distributed.is_initialized()
    assert prepared is model  # no DDP wrapper: the single-process update is unchanged
    assert distributed.gather([1, 2], acc) == [1, 2] and distributed.broadcast("x", acc) == "x"


def test_detach_is_refused_under_a_multi_process_launch(tiny_checkpoint):
    from tests.helpers import assert_one_line_error, reasonlab

    result = reasonlab("train", "--algo", "grpo", "--base", tiny_checkpoint, "--detach",
                       env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert_one_line_error(result, "--detach", "multi-process launch")
    with Store() as s:
        assert s.runs().empty


def test_configs_a_multi_process_run_cannot_train_are_refused_before_queueing(tiny_checkpoint):
    """vLLM (one in-process engine per run) and a step that does not split equally over the processes."""
    from engine import distributed
    from engine.config import make_config
    from engine.errors import ReasonlabError
    from tests.helpers import assert_one_line_error, reasonlab

    vllm = make_config("grpo", base=tiny_checkpoint, validate=False, sets=["sampler=vllm"])
    with pytest.raises(ReasonlabError, match="sampler=vllm needs a single-process run.*sampler=torch"):
        distributed.check_config(vllm, 2)
    distributed.check_config(vllm, 1)
    distributed.check_config(make_config("ei", base=tiny_checkpoint, validate=False), 3)  # EI shards any count

    result = reasonlab("train", "--algo", "grpo", "--base", tiny_checkpoint, "--set", "prompts_per_step=3",
                       env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert_one_line_error(result, "prompts_per_step=3 must be a multiple of the 2 processes")
    with Store() as s:
        assert s.runs().empty  # refused before anything was queued
