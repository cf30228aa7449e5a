"""Training runs through the CLI as a user starts them: a tiny-budget run of every algorithm,
configs refused before any process starts, cancel, SIGKILL then resume, and queue order."""

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from engine.store import Store
from tests.helpers import BUDGETS, SMALL, assert_one_line_error, reasonlab, sets, wait_for


def train(algo, base, *extra, detach=False):
    args = ["train", "--algo", algo, "--base", base, "--quiet", *sets(*SMALL, *BUDGETS[algo]), *sets(*extra)]
    return reasonlab(*args, *(["--detach"] if detach else []))


def run_row(run_id):
    with Store() as s:
        return s.get_run(run_id)


@pytest.mark.parametrize("algo, extra", [
    ("ei", []), ("rcrl", []), ("ppo", []), ("grpo", ["kl_coef=0.05"]), ("sft", []),
    ("ppo", ["reward=dense", "kl_target=1.0", "reward_scale=true", "reward_clip=3"]),
    ("ppo", ["reward=orm", "orm_steps=3"]),
])
def test_tiny_run_of_each_algorithm(algo, extra, tiny_checkpoint):
    result = train(algo, tiny_checkpoint, *extra)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "run 1"  # the contract: the first stdout line names the run
    summary = json.loads(lines[-1])
    assert summary["status"] == "finished" and summary["algo"] == algo

    with Store() as s:
        steps = s.checkpoints(1)["step"].tolist()
        total = summary["total"]
        assert steps == list(range(total + 1))  # the base (step 0), then every round / step
        for _, ck in s.checkpoints(1).iterrows():
            assert 0 <= ck["metrics"]["maj@1"] <= 1 and 0 <= ck["metrics"]["pass@2"] <= 1
        metrics = s.metrics(1)
        names = set(metrics["name"])
        evals = s.samples(run_id=1, kind="eval")
        assert len(evals) == (total + 1) * 3 * (2 + 1)  # every checkpoint: 3 problems x (greedy + k)
        if algo == "sft":  # nothing sampled: the reference solutions trained on are the samples seen
            assert {"loss", "data/solutions", "sft/steps", "time/elapsed_s", "eval/maj@1"} <= names
            assert not {"reward", "train/accuracy"} & names and s.samples(run_id=1, kind="rollout").empty
            seen = metrics[metrics["name"] == "loss"].sort_values("step")["samples_seen"].tolist()
            assert seen[0] == 4 and 4 < seen[1] <= 8  # 4 problems a round; one drawn again adds nothing
            assert metrics[metrics["name"] == "data/solutions"]["value"].tolist() == seen
            from transformers import AutoModelForCausalLM

            AutoModelForCausalLM.from_pretrained(summary["checkpoints"][-1]["path"], local_files_only=True)
            return
        assert {"reward", "train/accuracy", "tokens_per_s", "time/elapsed_s", "eval/maj@1", "eval/pass@2"} <= names
        # every step or round: its rollouts' accuracy and entropy in nats per token (accuracy against
        # entropy is what the entropy-collapse finding fits), between 0 and log(vocabulary size)
        for name in ("train/accuracy", "entropy"):
            assert sorted(metrics[metrics["name"] == name]["step"]) == list(range(1, total + 1)), name
        entropy = metrics[metrics["name"] == "entropy"]["value"]
        vocab = json.loads((tiny_checkpoint / "config.json").read_text())["vocab_size"]
        assert entropy.notna().all() and (entropy >= 0).all() and (entropy <= math.log(vocab)).all()
        if algo == "ppo":
            assert {"policy_loss", "value_loss", "approx_kl", "clip_frac", "update_entropy", "reward_mean"} <= names
        if "kl_target=1.0" in extra:  # the adaptive controller moved the coefficient
            assert len(set(metrics[metrics["name"] == "kl_coef"]["value"].round(8))) == 2
        rollouts = s.samples(run_id=1, kind="rollout")
        if "reward=orm" in extra:  # the ORM was trained on the base's labelled samples (step 0)
            assert (rollouts["step"] == 0).sum() > 0
            rewards = rollouts[rollouts["step"] > 0]["reward"]
            assert ((rewards > 0) & (rewards < 1)).all()  # probabilities, not 0/1 labels
            rollouts = rollouts[rollouts["step"] > 0]
        seen = metrics[metrics["name"] == "reward"].sort_values("step")["samples_seen"].tolist()
        per_step = 4 * 3 if algo in ("ei", "rcrl") else 3 * 2
        assert seen == [per_step * (i + 1) for i in range(total)]  # the sample-complexity axis
        assert len(rollouts) == per_step * total and set(rollouts["step"]) == set(range(1, total + 1))
    last = summary["checkpoints"][-1]["path"]
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(last, local_files_only=True)  # a plain HF checkpoint
    if algo == "rcrl":
        assert json.load(open(os.path.join(last, "reasonlab.json")))["prompt_suffix"] == "<|good|>"


@pytest.mark.parametrize("extra, fragments", [
    (["k=0"], ["ei config field k", "must be >= 1"]),
    (["temperature=0"], ["ei config field temperature", "greedy"]),
    (["rounds=two"], ["ei config field rounds must be int", "'two'"]),
    (["no_such=1"], ["ei config has no field 'no_such'"]),
    (["dedup=fuzzy"], ["ei config field dedup"]),
])
def test_bad_configs_are_refused_before_any_process(extra, fragments, tiny_checkpoint):
    assert_one_line_error(train("ei", tiny_checkpoint, *extra, detach=True), *fragments)
    assert json.loads(reasonlab("runs", "--json").stdout) == []  # nothing was queued


def test_bad_reward_and_missing_base_are_refused(tmp_path, tiny_checkpoint):
    assert_one_line_error(train("ppo", tiny_checkpoint, "reward=accuracy"), "ppo config field reward", "sparse")
    assert_one_line_error(train("grpo", tiny_checkpoint, "n=1"), "grpo config field n")
    missing = tmp_path / "nowhere"
    assert_one_line_error(train("ei", missing), "ei config field base", str(missing), "does not exist")
    assert json.loads(reasonlab("runs", "--json").stdout) == []


def test_cancel_stops_a_detached_run_and_keeps_its_work(tiny_checkpoint):
    result = train("grpo", tiny_checkpoint, "steps=200", "checkpoint_every=50", detach=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "run 1"
    # Wait until it has done two steps, then cancel.
    wait_for(lambda: (run_row(1) or {}).get("step", 0) >= 2, what="two training steps")
    cancel = reasonlab("cancel", "1")
    assert cancel.returncode == 0 and "next step" in cancel.stdout
    run = wait_for(lambda: (r := run_row(1))["status"] != "running" and r, what="the run to stop")
    assert run["status"] == "cancelled" and run["step"] < 200
    with Store() as s:
        steps = s.checkpoints(1)["step"].tolist()
        assert steps[0] == 0 and steps[-1] >= 2  # the work up to the cancel was saved
        assert len(s.samples(run_id=1, kind="rollout")) >= 2 * 3 * 2
    listed = json.loads(reasonlab("runs", "--json").stdout)
    assert listed[0]["id"] == 1 and listed[0]["status"] == "cancelled"
    assert_one_line_error(reasonlab("cancel", "1"), "run 1 is cancelled")
    assert_one_line_error(reasonlab("cancel", "99"), "no run 99")


def test_sigkill_is_detected_and_resume_continues_to_the_same_result(tiny_checkpoint, workspace):
    budget = ["steps=5", "checkpoint_every=2"]
    args = [sys.executable, "-m", "engine.cli", "train", "--algo", "grpo", "--base", str(tiny_checkpoint), "--quiet",
            *sets(*SMALL, *BUDGETS["grpo"], *budget)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: run_row(1) and 2 in _checkpoint_steps(1), what="the step-2 checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    listed = json.loads(reasonlab("runs", "--json").stdout)
    assert listed[0]["status"] == "interrupted" and "died" in listed[0]["error"]
    resumed = reasonlab("resume", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["status"] == "finished"

    # The same run, uninterrupted, in another workspace: resume must land on the same place.
    clean = reasonlab(*args[3:], env={"REASONLAB_HOME": str(workspace.parent / "clean")})
    assert clean.returncode == 0, clean.stderr

    with Store() as s:
        reward = s.metrics(1, ["reward"])
        assert reward["step"].tolist() == [1, 2, 3, 4, 5]  # continuing, no duplicates
        assert s.checkpoints(1)["step"].tolist() == [0, 2, 4, 5]
        rollouts = s.samples(run_id=1, kind="rollout")
        assert rollouts.groupby("step").size().tolist() == [6] * 5
    conn = sqlite3.connect(workspace / "store.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with Store(workspace.parent / "clean" / "store.sqlite") as s:
        clean_rollouts = s.samples(run_id=1, kind="rollout")
        assert clean_rollouts["text"].tolist() == rollouts["text"].tolist()


def _checkpoint_steps(run_id):
    with Store() as s:
        return s.checkpoints(run_id)["step"].tolist()


def test_queue_runs_one_at_a_time_in_order(tiny_checkpoint):
    for _ in range(3):
        result = train("grpo", tiny_checkpoint, "steps=1", detach=True)
        assert result.returncode == 0, result.stderr
    wait_for(lambda: all(run_row(i)["status"] == "finished" for i in (1, 2, 3)), what="three queued runs")
    runs = [run_row(i) for i in (1, 2, 3)]
    assert runs[0]["started_at"] < runs[1]["started_at"] < runs[2]["started_at"]
    for earlier, later in zip(runs, runs[1:]):
        assert earlier["finished_at"] <= later["started_at"]  # never two at once


def test_sigterm_stops_a_foreground_run_like_a_cancel(tiny_checkpoint):
    args = [sys.executable, "-m", "engine.cli", "train", "--algo", "grpo", "--base", str(tiny_checkpoint), "--quiet",
            *sets(*SMALL, *BUDGETS["grpo"], "steps=200", "checkpoint_every=100")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run_row(1) or {}).get("step", 0) >= 1, what="a training step")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "cancelled"
    run = run_row(1)
    assert run["status"] == "cancelled" and run["cancel_requested"] == 1
    assert _checkpoint_steps(1)[-1] == run["step"]  # the steps done were saved before stopping


def test_quickstart_starts_from_the_shipped_base_and_runs_expert_iteration(workspace):
    result = reasonlab("quickstart", "--quiet", *sets(*SMALL, "rounds=1", "k=2", "problems_per_round=3",
                                                      "sft_max_steps=2", "batch_size=2"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["algo"] == "ei" and summary["name"] == "quickstart" and summary["status"] == "finished"
    assert summary["checkpoints"][0]["path"] == str(workspace / "checkpoints" / "base-shipped")  # no SFT here


# -- cancel inside a long phase (in-process: the hooks below decide exactly where it lands) -------


@pytest.fixture
def contexts(monkeypatch):
    """Every RunContext the job builds, so a hook can wait on its stop signal."""
    from engine.algorithms.context import RunContext

    made = []
    real = RunContext.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(RunContext, "__init__", init)
    return made


def smoke_run(store, algo, base, **overrides):
    from engine import jobs
    from engine.config import make_config
    from engine.launch import SIZES

    return jobs.submit(store, make_config(algo, base=base, sets={**SIZES["smoke test"][algo], **overrides}))


def cancel_and_wait(store, run_id, ctx):
    """`reasonlab cancel` as the user gives it, then wait for the job's poll to turn it into the
    stop signal the long phases read (a wait on that condition, about a second)."""
    from engine import jobs

    jobs.cancel(store, run_id)
    assert ctx.stop_signal.wait(timeout=60), "the job never read its cancel flag"


def execute_next(store):
    from engine import jobs

    return jobs.execute(store, store.claim_run(None, os.getpid()))


def test_a_cancel_during_sampling_stops_the_step_and_keeps_the_steps_done(tiny_checkpoint, contexts, monkeypatch):
    from engine import jobs
    from engine.algorithms import common
    from engine.sampling.torch_sampler import TorchSampler

    state = {"step": 0, "cancelled": False, "batches_after": 0}
    real_rollouts, real_batch = common.PolicyRun.rollouts, TorchSampler._batch

    def rollouts(self, step):
        state["step"] = step
        return real_rollouts(self, step)

    def batch(self, *args, **kwargs):
        if state["step"] == 2 and not state["cancelled"]:  # inside step 2's sampling
            state["cancelled"] = True
            cancel_and_wait(store, run_id, contexts[-1])
        elif state["cancelled"] and len(contexts) == 1:
            state["batches_after"] += 1
        return real_batch(self, *args, **kwargs)

    monkeypatch.setattr(common.PolicyRun, "rollouts", rollouts)
    monkeypatch.setattr(TorchSampler, "_batch", batch)
    with Store() as store:
        run_id = smoke_run(store, "grpo", tiny_checkpoint, steps=3, checkpoint_every=2)
        assert execute_next(store) == "cancelled"
        run = store.get_run(run_id)
        assert run["status"] == "cancelled" and run["error"] is None and run["status"] in jobs.RESUMABLE
        assert state["batches_after"] == 0  # nothing was decoded once the signal was set
        # step 1 (done, not yet checkpointed) was saved as a cancel between steps saves it
        assert store.checkpoints(run_id)["step"].tolist() == [0, 1]
        assert set(store.samples(run_id=run_id, kind="rollout")["step"]) == {1}

        jobs.resume(store, run_id)
        assert execute_next(store) == "finished"
        assert store.checkpoints(run_id)["step"].tolist() == [0, 1, 2, 3]
        assert store.metrics(run_id, ["reward"])["step"].tolist() == [1, 2, 3]


@pytest.mark.parametrize("algo", ["rcrl", "sft"])
def test_a_cancel_during_fine_tuning_stops_the_round_within_an_optimizer_step(tiny_checkpoint, contexts, monkeypatch,
                                                                              algo):
    from engine import jobs
    from engine.algorithms import common as loop  # Rounds.fit: the fine-tuning of every round-based loop

    steps_seen: list[list[int]] = []  # per fine-tuning call, the optimizer steps it began
    real = loop.finetune

    def finetune(*args, on_step, **kwargs):
        steps_seen.append([])

        def hooked(s):
            if len(contexts) == 1 and len(steps_seen) == 2 and s == 2:  # round 2, two steps in
                cancel_and_wait(store, run_id, contexts[-1])
            if not on_step(s):
                steps_seen[-1].append(s)
                return False
            return True
        return real(*args, on_step=hooked, **kwargs)

    monkeypatch.setattr(loop, "finetune", finetune)
    with Store() as store:  # rcrl keeps every sample (sft every reference): each round has something to fine-tune on
        run_id = smoke_run(store, algo, tiny_checkpoint, rounds=2, sft_max_steps=12, sft_epochs=1000)
        assert execute_next(store) == "cancelled"
        assert steps_seen[0] == list(range(12)) and steps_seen[1] == [0, 1]  # of 12
        assert store.get_run(run_id)["status"] == "cancelled"
        assert store.checkpoints(run_id)["step"].tolist() == [0, 1]

        jobs.resume(store, run_id)
        assert execute_next(store) == "finished"
        assert store.checkpoints(run_id)["step"].tolist() == [0, 1, 2]
        if algo == "sft":  # round 2 grew the dataset round 1 saved (restored from the checkpoint's state)
            solutions = store.metrics(run_id, ["data/solutions"])
            assert solutions["step"].tolist() == [1, 2] and 4 < solutions["value"].iloc[1] <= 8


def test_sigterm_during_a_long_evaluation_stops_the_run_inside_it(tiny_checkpoint):
    """60,000 samples to evaluate the base (minutes of decoding): SIGTERM stops the run there,
    before the evaluation is done, instead of after it."""
    args = [sys.executable, "-m", "engine.cli", "train", "--algo", "grpo", "--base", str(tiny_checkpoint), "--quiet",
            *sets(*SMALL, *BUDGETS["grpo"], "eval_k=20000")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (run_row(1) or {}).get("phase") == "evaluating the base checkpoint", what="the base evaluation")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "cancelled"
    run = run_row(1)
    assert run["status"] == "cancelled" and run["error"] is None
    with Store() as s:
        assert s.samples(run_id=1, kind="eval").empty  # the evaluation was cut short, not finished
        assert not s.metrics(1)["name"].str.startswith("eval/").any()


@pytest.mark.parametrize("checkpoint_every, kept, logged, resumed", [
    (1, [0, 1], [1], [0, 1, 2, 3]),  # step 1 is saved: the update stops before its next minibatch
    (2, [0, 2], [1, 2], [0, 2, 3]),  # stopping would lose step 1: the update finishes and step 2 is saved
])
def test_a_cancel_during_a_policy_update_never_loses_a_finished_step(tiny_checkpoint, contexts, monkeypatch,
                                                                     checkpoint_every, kept, logged, resumed):
    from engine import jobs
    from engine.algorithms import common

    done = []  # steps finished, as after_step sees them
    real_after, real_minibatches = common.PolicyRun.after_step, common.minibatches
    monkeypatch.setattr(common.PolicyRun, "after_step", lambda self, step: (done.append(step), real_after(self, step)))

    def minibatches(*args):
        if len(contexts) == 1 and done == [1] and not contexts[-1].stop_signal.is_set():  # step 2's update
            cancel_and_wait(store, run_id, contexts[-1])
        return real_minibatches(*args)

    monkeypatch.setattr(common, "minibatches", minibatches)
    with Store() as store:
        run_id = smoke_run(store, "grpo", tiny_checkpoint, steps=3, checkpoint_every=checkpoint_every)
        assert execute_next(store) == "cancelled"
        assert store.checkpoints(run_id)["step"].tolist() == kept
        assert store.metrics(run_id, ["policy_loss"])["step"].tolist() == logged
        jobs.resume(store, run_id)
        assert execute_next(store) == "finished"
        assert store.checkpoints(run_id)["step"].tolist() == resumed


def test_orm_training_stops_at_a_set_cancel_and_writes_nothing(tiny_checkpoint, tmp_path):
    import threading

    from engine.algorithms.orm import train_orm
    from engine.config import ORMConfig
    from engine.sampling.base import Cancelled

    cancel = threading.Event()
    cancel.set()
    examples = [("1 + 1 =", " 2", True), ("1 + 1 =", " 3", False)]
    with pytest.raises(Cancelled):
        train_orm(tiny_checkpoint, examples, tmp_path / "orm", ORMConfig(steps=1000, batch_size=2), cancel=cancel)
    assert not (tmp_path / "orm").exists()


def test_a_deep_evaluation_covers_the_base_and_the_last_checkpoint_and_the_bases_is_made_once(tiny_checkpoint):
    deep = {"deep_eval_k": 6, "deep_eval_limit": 3}
    with Store() as store:
        a = smoke_run(store, "grpo", tiny_checkpoint, steps=3, checkpoint_every=1, **deep)
        assert execute_next(store) == "finished"
        b = smoke_run(store, "ei", tiny_checkpoint, rounds=2, **deep)
        assert execute_next(store) == "finished"
        rows = store.sample_rows(["run_id", "step", "problem_id", "sample_idx"], kind="eval_deep")
        for run_id, last in ((a, 3), (b, 2)):
            mine = rows[rows["run_id"] == run_id]
            assert sorted(set(mine["step"])) == [0, last]  # not the checkpoints in between
            for step in (0, last):
                per_problem = mine[mine["step"] == step].groupby("problem_id")["sample_idx"].agg(["min", "max", "size"])
                assert len(per_problem) == 3 and (per_problem["size"] == 7).all()  # 6 samples and the greedy one
            ck = store.checkpoints(run_id).set_index("step")["metrics"]
            assert ck[last]["deep/k"] == 6 and "deep/pass@6" in ck[last] and "deep/pass@6" not in ck[1]
            assert "pass@2" in ck[last] and "pass@6" not in ck[last]  # the evaluation at every checkpoint: eval_k
            evals = store.sample_rows(["problem_id"], run_id=run_id, kind="eval", step=last)
            assert evals.groupby("problem_id").size().eq(3).all()  # eval_k 2 and the greedy one, as before
        base_a = store.checkpoints(a).set_index("step")["id"][0]
        base_b = store.checkpoints(b).set_index("step")["metrics"][0]
        assert base_b["deep/copied_from_checkpoint"] == base_a == base_b["copied_from_checkpoint"]


@pytest.mark.parametrize("algo, extra, phases", [
    ("grpo", {"steps": 2, "reward": "orm", "orm_steps": 2}, {"sample", "score", "logprobs", "update", "evaluate",
                                                            "checkpoint", "store", "orm"}),
    ("ppo", {"steps": 2}, {"sample", "score", "logprobs", "update", "evaluate", "checkpoint", "store"}),
    ("ei", {"rounds": 2}, {"sample", "evaluate", "checkpoint", "store"}),  # (+ update if it kept a solution)
    ("sft", {"rounds": 2}, {"update", "evaluate", "checkpoint", "store"}),
])
def test_a_runs_phases_account_for_its_time_once(algo, extra, phases, tiny_checkpoint, contexts):
    with Store() as store:
        smoke_run(store, algo, tiny_checkpoint, **extra)
        start = time.perf_counter()
        assert execute_next(store) == "finished"
        wall = time.perf_counter() - start
    seconds, report = dict(contexts[-1].phases.seconds), contexts[-1].phases.report()
    assert phases <= set(seconds) <= phases | ({"update"} if algo == "ei" else set())
    assert all(s > 0 for s in seconds.values())
    assert sum(seconds.values()) <= wall  # each second counted at most once
    assert set(report["seconds"]) == set(seconds) | {"other"} and report["seconds"]["other"] >= 0
    assert (report["counts"].get("sample_tokens", 0) > 0) == (algo != "sft")
    assert (report["counts"].get("update_tokens", 0) > 0) == (algo in ("ppo", "grpo"))


@pytest.mark.parametrize("dtype, from_sampler", [("float32", True), ("bfloat16", False)])
def test_grpo_takes_the_samplers_log_probabilities_as_the_old_ones_only_where_they_are_exact(
        dtype, from_sampler, tiny_checkpoint, monkeypatch):
    """float32 with the torch sampler: no forward pass before the update (its log-probabilities
    equal the sampler's, tests/test_shared_prefix.py); bfloat16: the forward pass, as before."""
    from engine.algorithms import common

    calls = {"sampled": 0, "forward": 0}

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(common, "sampled_logprobs", counted("sampled", common.sampled_logprobs))
    monkeypatch.setattr(common, "batch_logprobs", counted("forward", common.batch_logprobs))
    with Store() as store:
        smoke_run(store, "grpo", tiny_checkpoint, steps=2, dtype=dtype)
        assert execute_next(store) == "finished"
    assert calls == ({"sampled": 2, "forward": 0} if from_sampler else {"sampled": 0, "forward": 2})


@pytest.mark.parametrize("dtype, from_sampler", [("float32", True), ("bfloat16", False)])
def test_ppo_takes_the_samplers_log_probabilities_and_hidden_states_only_where_they_are_exact(
        dtype, from_sampler, tiny_checkpoint, monkeypatch):
    """PPO's old log-probabilities and old values (its value head over the last hidden states)
    without a forward pass of the policy where the sampler's are exact; the reference's (its KL
    penalty) is a pass either way."""
    from engine.algorithms import common

    calls = []
    real = common.batch_logprobs

    def forward(model, batch, size, with_hidden=False):
        calls.append("policy" if with_hidden else "reference")
        return real(model, batch, size, with_hidden)

    monkeypatch.setattr(common, "batch_logprobs", forward)
    with Store() as store:
        smoke_run(store, "ppo", tiny_checkpoint, steps=2, dtype=dtype)
        assert execute_next(store) == "finished"
    assert calls == (["reference"] * 2 if from_sampler else ["policy", "reference"] * 2)


def test_grpo_leaves_out_the_rows_without_a_gradient_and_learns_exactly_the_same(tiny_checkpoint, contexts,
                                                                                monkeypatch):
    """A group of equal rewards has advantage 0: without a KL term its rows add nothing to the
    gradient, and the update does not compute them. The weights, losses and gradient norms come
    out as when every row is computed; fewer tokens go through the update."""
    from safetensors.torch import load_file

    from engine.algorithms import common, rewards

    def sparse(rollouts):  # per step, one group learns (its first sample solved it)
        return [float(i == 0) for i in range(len(rollouts))]

    monkeypatch.setattr(rewards, "sparse", sparse)  # the run's reward (sparse), as reward_function picks it
    skipping = common.PolicyRun.update_batches
    results = []
    for update_batches in (skipping, lambda self, step, batch, carries=None: skipping(self, step, batch)):
        monkeypatch.setattr(common.PolicyRun, "update_batches", update_batches)
        with Store() as store:  # 3 groups, minibatches of 2 groups and of 1: some without a learning row
            run_id = smoke_run(store, "grpo", tiny_checkpoint, steps=3, checkpoint_every=3)
            assert execute_next(store) == "finished"
            last = store.checkpoints(run_id).iloc[-1]["path"]
            metrics = store.metrics(run_id, ["policy_loss", "grad_norm"]).pivot(index="step", columns="name",
                                                                                values="value")
        results.append((load_file(f"{last}/model.safetensors"), metrics, contexts[-1].phases.counts["update_tokens"]))
    (skipped, m_skipped, computed), (whole, m_whole, all_tokens) = results
    assert computed < all_tokens
    assert skipped.keys() == whole.keys()
    moved = 0
    for name in whole:
        assert torch.allclose(skipped[name], whole[name], atol=1e-6, rtol=1e-5), name
        moved += not torch.equal(whole[name], load_file(f"{tiny_checkpoint}/model.safetensors")[name])
    assert moved  # it learned
    for key in ("policy_loss", "grad_norm"):
        assert np.allclose(m_skipped[key], m_whole[key], atol=1e-6, rtol=1e-4), key


def test_a_phase_timed_inside_another_is_the_outer_ones():
    from engine.profiling import Phases

    p = Phases()
    with p.time("evaluate"):
        with p.time("store"):
            pass
    with pytest.raises(RuntimeError), p.time("update"):
        raise RuntimeError("a failed update still took its time")
    assert set(p.seconds) == {"evaluate", "update"}
    with pytest.raises(ValueError, match="unknown phase 'sampling'"), p.time("sampling"):
        pass
    report = p.report(wall_s=10.0)
    assert report["seconds"]["other"] == pytest.approx(10.0 - sum(p.seconds.values()), abs=0.01)
