"""The `reasonlab` command as a user runs it: a tiny sft then eval, and one-line errors."""

import json
import os
import subprocess
import sys
import time

import pytest

from engine.evaluation import ks_up_to


def reasonlab(*args, env=None):
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          input="", env={**os.environ, **(env or {})}, timeout=600)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reasonlab: error:"), result.stderr
    for f in fragments:
        assert f in lines[0]


def test_sft_then_eval(tmp_path):
    out = tmp_path / "base"
    sft = reasonlab("sft", "--preset", "tiny", "--out", out, "--steps", "30", "--quiet")
    assert sft.returncode == 0, sft.stderr
    assert json.loads(sft.stdout.strip().splitlines()[-1])["checkpoint"] == str(out)
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()

    ev = reasonlab("eval", out, "--task", "multistep", "--split", "test", "-k", "6", "--limit", "5", "--json")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    for k in ks_up_to(6):
        assert 0.0 <= metrics[f"pass@{k}"] <= 1.0 and 0.0 <= metrics[f"maj@{k}"] <= 1.0
    assert 0.0 <= metrics["maj@1"] <= 1.0
    passes = [metrics[f"pass@{k}"] for k in ks_up_to(6)]
    assert passes == sorted(passes)  # pass@k never falls as k grows
    assert metrics["problems"] == 5 and metrics["k"] == 6


def test_sft_default_out_is_in_the_workspace(workspace):
    sft = reasonlab("sft", "--steps", "2", "--quiet")
    assert sft.returncode == 0, sft.stderr
    assert (workspace / "checkpoints" / "base-tiny" / "model.safetensors").is_file()


@pytest.mark.parametrize("args,fragments", [
    (["sft", "--preset", "huge"], ["unknown preset 'huge'", "tiny"]),
    (["sft", "--steps", "0"], ["steps must be >= 1"]),
    (["sft", "--task", "nope"], ["unknown task 'nope'"]),
    (["eval", "/no/such/ckpt"], ["/no/such/ckpt does not exist"]),
    (["eval", "/tmp", "-k", "0"], ["k must be >= 1"]),
    (["eval", "/tmp", "--split", "dev"], ["unknown split 'dev'"]),
    (["eval", "/tmp", "--temperature", "0"], ["temperature must be > 0"]),
])
def test_bad_input_is_one_line(args, fragments):
    assert_one_line_error(reasonlab(*args), *fragments)


def test_corrupt_and_non_model_checkpoints(tmp_path):
    (tmp_path / "notamodel").mkdir()
    assert_one_line_error(reasonlab("eval", tmp_path / "notamodel"), "has no config.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{"model_type": "llama"}')
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    assert_one_line_error(reasonlab("eval", bad), f"cannot load checkpoint {bad}")


def test_unwritable_workspace(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = reasonlab("sft", "--steps", "1", "--quiet", env={"REASONLAB_HOME": str(blocker / "home")})
    assert_one_line_error(result, "workspace", "not writable")
    result = reasonlab("sft", "--steps", "1", "--quiet", "--out", blocker / "ck")
    assert_one_line_error(result, "cannot write checkpoint")


def test_delete_asks_unless_told_yes_and_names_what_it_removed(workspace):
    from engine import jobs
    from engine.store import Store

    with Store() as store:
        run_id = store.create_run("ei", {"base": "b"}, status="finished")
        store.add_checkpoint(run_id, 1, jobs.run_dir(run_id) / "step-00001")
        running = store.create_run("ei", {"base": "b"}, status="running")
        store.update_run(running, pid=os.getpid(), heartbeat_at=time.time())
    (jobs.run_dir(run_id) / "step-00001").mkdir(parents=True)
    assert_one_line_error(reasonlab("delete", run_id), "pass --yes")  # no terminal to ask on
    assert jobs.run_dir(run_id).is_dir()
    result = reasonlab("delete", run_id, "--yes")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"run {run_id} deleted: 1 checkpoint, 0 samples")
    assert not jobs.run_dir(run_id).exists()
    assert_one_line_error(reasonlab("delete", run_id, "--yes"), f"no run {run_id}")
    assert_one_line_error(reasonlab("delete", running, "--yes"), f"run {running} is running; cancel it first")
