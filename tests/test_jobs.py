"""The job layer in-process: queue claims, dead-process detection, crash records, cancel/resume rules."""

import os
import time

import pytest

from engine import jobs
from engine.config import make_config
from engine.errors import ReasonlabError
from engine.store import Store
from tests.helpers import dead_pid


@pytest.fixture
def store(workspace):
    with Store() as s:
        yield s


def queue(store, n, foreground_pid=None):
    ids = [store.create_run("grpo", {"base": "x"}) for _ in range(n)]
    if foreground_pid is not None:
        store.update_run(ids[-1], pid=foreground_pid)
    return ids


def test_claims_take_the_oldest_queued_run_one_at_a_time(store):
    a, b, c = queue(store, 3)
    assert store.claim_run(None, pid=111)["id"] == a
    assert store.claim_run(None, pid=222) is None  # one running already
    assert store.claim_run(None, pid=222, max_running=2)["id"] == b
    store.update_run(a, status="finished")
    store.update_run(b, status="finished")
    claimed = store.claim_run(None, pid=333)
    assert claimed["id"] == c and claimed["status"] == "running" and claimed["pid"] == 333


def test_a_foreground_run_is_claimed_only_by_its_owner_and_only_in_turn(store):
    a, b = queue(store, 2, foreground_pid=4242)  # b belongs to a waiting `reasonlab train`
    assert store.claim_run(b, pid=4242) is None  # a is older
    assert store.claim_run(None, pid=1)["id"] == a
    store.update_run(a, status="finished")
    assert store.claim_run(None, pid=1) is None  # a worker never takes a foreground run
    assert store.claim_run(b, pid=4242)["id"] == b


def test_dead_or_silent_processes_are_marked_interrupted(store):
    gone = dead_pid()
    a, b, c, d = queue(store, 4)
    store.update_run(a, status="running", pid=gone, heartbeat_at=time.time())
    store.update_run(b, status="running", pid=os.getpid(), heartbeat_at=time.time() - jobs.STALE_S - 5)
    store.update_run(c, status="running", pid=os.getpid(), heartbeat_at=time.time())
    store.update_run(d, pid=gone)  # a foreground run whose terminal was closed while it waited
    jobs.reconcile(store, spawn=False)
    assert store.get_run(a)["status"] == "interrupted" and f"process {gone} died" in store.get_run(a)["error"]
    assert store.get_run(b)["status"] == "interrupted" and "heartbeat stale" in store.get_run(b)["error"]
    assert store.get_run(c)["status"] == "running"
    assert store.get_run(d)["status"] == "interrupted"


def test_a_launch_killed_after_another_process_crashed_is_marked_failed_with_that_error(store, monkeypatch):
    """The launcher may kill rank 0 before it records anything: the next reconcile finds the
    traceback the crashed process left, and a new launch of the run clears it."""
    gone = dead_pid()
    (a,) = queue(store, 1)
    store.update_run(a, status="running", pid=gone, heartbeat_at=time.time())
    jobs.run_dir(a).mkdir(parents=True)
    (jobs.run_dir(a) / "process-3.error").write_text("Traceback (most recent call last):\n  ...\nOSError: disk full\n")
    (jobs.run_dir(a) / "process-1.error").write_text("Traceback (most recent call last):\n  ...\nKeyError: 'x'\n")
    jobs.reconcile(store, spawn=False)
    run = store.get_run(a)
    assert run["status"] == "failed" and run["error"] == "process 1 of the launch failed: KeyError: 'x'"
    assert run["traceback"].endswith("KeyError: 'x'\n")

    store.update_run(a, status="queued", pid=os.getpid())  # resumed in the foreground
    seen = []
    monkeypatch.setattr(jobs, "execute", lambda store, run, on_progress=None: seen.append(jobs.process_errors(run["id"])))
    jobs.run_foreground(store, a)
    assert seen == [[]]  # the earlier launch's tracebacks are gone before the new one starts


def test_a_crash_records_its_error_and_traceback(store, tiny_checkpoint, monkeypatch):
    from engine.algorithms import grpo

    def boom(ctx, cfg):
        raise RuntimeError("boom at step 3")

    monkeypatch.setattr(grpo, "train", boom)
    run_id = jobs.submit(store, make_config("grpo", base=tiny_checkpoint))
    assert jobs.execute(store, store.claim_run(None, os.getpid())) == "failed"
    run = store.get_run(run_id)
    assert run["error"] == "RuntimeError: boom at step 3"
    assert "Traceback" in run["traceback"] and "boom" in run["traceback"]
    assert run["finished_at"] is not None


def test_cancel_and_resume_rules(store, tiny_checkpoint):
    run_id = jobs.submit(store, make_config("ei", base=tiny_checkpoint))
    assert "cancelled" in jobs.cancel(store, run_id)  # queued: cancelled at once
    assert store.get_run(run_id)["status"] == "cancelled"
    with pytest.raises(ReasonlabError, match="only queued or running"):
        jobs.cancel(store, run_id)
    jobs.resume(store, run_id)
    run = store.get_run(run_id)
    assert run["status"] == "queued" and run["cancel_requested"] == 0 and run["pid"] is None
    with pytest.raises(ReasonlabError, match="only interrupted, cancelled, failed"):
        jobs.resume(store, run_id)
    with pytest.raises(ReasonlabError, match="no run 404"):
        jobs.cancel(store, 404)


def test_resume_revalidates_the_stored_config(store, tmp_path, tiny_checkpoint):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    run_id = jobs.submit(store, make_config("grpo", base=base))
    jobs.cancel(store, run_id)
    shutil.rmtree(base)
    with pytest.raises(ReasonlabError, match=f"grpo config field base.*{base}"):
        jobs.resume(store, run_id)


def test_eta_from_progress():
    now = 1000.0
    run = {"status": "running", "started_at": now - 30, "progress": 0.25}
    assert jobs.eta_s(run, now) == pytest.approx(90.0)
    assert jobs.eta_s({**run, "progress": 0.0}, now) is None
    assert jobs.eta_s({**run, "status": "finished"}, now) is None


# -- delete -------------------------------------------------------------------------------------------


def finished_run(store, base, step_files=("model.safetensors", "config.json")):
    """A finished run from `base` with a checkpoint at step 0 (the base) and one in its directory."""
    run_id = store.create_run("ei", {"base": str(base)}, status="finished")
    store.add_checkpoint(run_id, 0, base)
    ckpt = jobs.run_dir(run_id) / "step-00001"
    ckpt.mkdir(parents=True)
    for name in step_files:
        (ckpt / name).write_bytes(b"x" * 1000)
    checkpoint_id = store.add_checkpoint(run_id, 1, ckpt)
    store.add_samples([{"run_id": run_id, "checkpoint_id": checkpoint_id, "step": 1, "kind": "eval", "task": "t",
                        "split": "test", "problem_id": "p", "sample_idx": i, "text": "1 + 1 = 2"} for i in range(5)])
    return run_id, ckpt


def test_delete_removes_a_runs_rows_and_directory_but_not_the_base_it_started_from(store, tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"weights")
    run_id, ckpt = finished_run(store, base)
    other, _ = finished_run(store, base)
    message = jobs.delete(store, run_id)
    assert message.startswith(f"run {run_id} deleted: 2 checkpoints, 5 samples")
    assert store.get_run(run_id) is None and store.checkpoints(run_id).empty and store.samples(run_id).empty
    assert not jobs.run_dir(run_id).exists()
    assert (base / "model.safetensors").read_bytes() == b"weights"
    assert len(store.samples(other)) == 5 and jobs.run_dir(other).is_dir()
    with pytest.raises(ReasonlabError, match=f"no run {run_id}"):
        jobs.delete(store, run_id)


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_refuses_a_queued_or_running_run_and_says_to_cancel_it(store, tmp_path, status):
    run_id, ckpt = finished_run(store, tmp_path)
    store.update_run(run_id, status=status, pid=os.getpid(), heartbeat_at=time.time())
    with pytest.raises(ReasonlabError, match=rf"run {run_id} is {status}; cancel it first \(reasonlab cancel {run_id}\)"):
        jobs.delete(store, run_id)
    assert ckpt.is_dir() and store.get_run(run_id)["status"] == status


def test_delete_takes_a_run_whose_process_died(store, tmp_path):
    gone = dead_pid()
    run_id, ckpt = finished_run(store, tmp_path)
    store.update_run(run_id, status="running", pid=gone, heartbeat_at=time.time())
    assert jobs.delete(store, run_id).startswith(f"run {run_id} deleted")
    assert not ckpt.exists()


def test_delete_refuses_a_run_whose_checkpoints_other_runs_start_from(store, tmp_path):
    parent, ckpt = finished_run(store, tmp_path)
    child = store.create_run("ppo", {"base": str(ckpt), "orm": None}, status="cancelled")
    reranked = store.create_run("ei", {"base": str(tmp_path), "orm": str(jobs.run_dir(parent) / "orm")},
                                status="finished")
    with pytest.raises(ReasonlabError, match=rf"used by runs {child}, {reranked} .*delete those first"):
        jobs.delete(store, parent)
    assert ckpt.is_dir()
    jobs.delete(store, child)
    jobs.delete(store, reranked)
    assert jobs.delete(store, parent).startswith(f"run {parent} deleted")


def test_a_delete_cut_short_leaves_the_run_deleting_and_a_second_delete_finishes_it(store, tmp_path):
    run_id, ckpt = finished_run(store, tmp_path)
    store.update_run(run_id, status="deleting")  # as a delete leaves it when killed between chunks
    for refused in (lambda: jobs.resume(store, run_id), lambda: jobs.cancel(store, run_id)):
        with pytest.raises(ReasonlabError, match=f"run {run_id} is deleting"):
            refused()
    assert store.claim_run(None, pid=1) is None
    assert jobs.delete(store, run_id).startswith(f"run {run_id} deleted: 2 checkpoints, 5 samples")
    assert store.get_run(run_id) is None and not ckpt.exists()


# --- The workspace and REASONLAB_MAX_RUNNING, read where used (issue 14, items 2 and 4) ---

from engine import workspace as workspace_module  # noqa: E402


@pytest.mark.parametrize("value, expected", [("", 1), ("1", 1), (" 3 ", 3), ("1000", 1000)])
def test_max_running_defaults_to_one_and_takes_an_integer(monkeypatch, value, expected):
    monkeypatch.setenv("REASONLAB_MAX_RUNNING", value)
    assert workspace_module.max_running() == expected


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5", "1e3", "1001", "99999999999999999999"])
def test_a_bad_max_running_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("REASONLAB_MAX_RUNNING", value)
    with pytest.raises(ReasonlabError, match=rf"^REASONLAB_MAX_RUNNING must be an integer from 1 to 1000 .*got '{value}'"):
        workspace_module.max_running()


def test_submit_refuses_a_bad_max_running_before_queueing(store, monkeypatch, tiny_checkpoint):
    cfg = make_config("grpo", base=tiny_checkpoint, sets=["steps=1"])
    monkeypatch.setenv("REASONLAB_MAX_RUNNING", "0")  # would make a foreground train wait forever
    with pytest.raises(ReasonlabError, match="REASONLAB_MAX_RUNNING"):
        jobs.submit(store, cfg, foreground=True)
    assert store.runs().empty


def test_a_relative_home_is_resolved_and_passed_absolute_to_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REASONLAB_HOME", "rel/home")
    assert workspace_module.home() == tmp_path.resolve() / "rel" / "home"
    assert workspace_module.child_env()["REASONLAB_HOME"] == str(tmp_path.resolve() / "rel" / "home")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REASONLAB_HOME", "~/h")
    assert workspace_module.home() == tmp_path.resolve() / "h"
    seen = {}

    class Popen:
        def __init__(self, args, **kwargs):
            seen.update(kwargs)
            self.pid = 1

    monkeypatch.setattr(jobs.subprocess, "Popen", Popen)
    jobs.spawn_worker()
    assert seen["env"]["REASONLAB_HOME"] == str(tmp_path.resolve() / "h") and seen["cwd"] != str(tmp_path)


def test_the_heartbeat_thread_has_ended_when_execute_returns(store, tiny_checkpoint, monkeypatch):
    # A heartbeat thread still inside a store read when the interpreter shuts down aborted a
    # finished `reasonlab train` (exit -6) once in CI. execute() must leave no thread behind.
    import threading

    from engine.algorithms import grpo
    from engine.algorithms.context import RunContext

    inside, ended = threading.Event(), threading.Event()
    real_poll = RunContext.poll_cancel

    def slow_poll(ctx):  # a store read that comes back only once execute() joins its thread (a busy database)
        inside.set()
        ended.wait(30)
        real_poll(ctx)

    def train(ctx, cfg):  # ends while the heartbeat is inside its read
        assert inside.wait(30)

    real_join = threading.Thread.join

    def join(thread, timeout=None):  # the read ends when execute() waits for it, not before
        ended.set()
        return real_join(thread, timeout)

    monkeypatch.setattr(threading.Thread, "join", join)
    monkeypatch.setattr(jobs, "CANCEL_POLL_S", 0.01)
    monkeypatch.setattr(RunContext, "poll_cancel", slow_poll)
    monkeypatch.setattr(grpo, "train", train)
    jobs.submit(store, make_config("grpo", base=tiny_checkpoint))
    before = set(threading.enumerate())
    assert jobs.execute(store, store.claim_run(None, os.getpid())) == "finished"
    assert set(threading.enumerate()) - before == set()


def test_runs_that_train_side_by_side_share_the_cores(monkeypatch):
    import torch

    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(workspace_module, "cores", lambda: 4)
        monkeypatch.setenv("REASONLAB_MAX_RUNNING", "2")
        assert jobs.share_cores() == 2 == torch.get_num_threads()
        monkeypatch.setenv("REASONLAB_MAX_RUNNING", "8")
        assert jobs.share_cores() == 1  # never none
        torch.set_num_threads(3)
        monkeypatch.setenv("REASONLAB_MAX_RUNNING", "1")
        assert jobs.share_cores() == 3  # one at a time: torch's own choice stands
    finally:
        torch.set_num_threads(threads)


def test_a_worker_spawned_for_lanes_may_train_that_many_runs_at_once(workspace, monkeypatch):
    seen = []

    class Popen:
        def __init__(self, args, env, **kwargs):
            seen.append(env.get("REASONLAB_MAX_RUNNING"))
            self.pid = 1

    monkeypatch.setattr(jobs.subprocess, "Popen", Popen)
    monkeypatch.delenv("REASONLAB_MAX_RUNNING", raising=False)
    jobs.spawn_worker()
    jobs.spawn_worker(max_running=2)
    assert seen == [None, "2"]
