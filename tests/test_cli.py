"""The `reasonlab` command as a user runs it: a tiny sft then eval, and one-line errors."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.evaluation import ks_up_to
from tests.helpers import assert_one_line_error, reasonlab


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
    assert_one_line_error(reasonlab("eval", bad), f"checkpoint {bad} has a truncated or corrupt model.safetensors")


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


# --- Bad values: exit 2 with one line naming the field, before anything is queued (issue 14, item 4) ---

def run_main(capsys, *args):
    from engine.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr()


@pytest.mark.parametrize("item, fragment", [
    ("device=tpu", "ei config field device must be cpu, cuda or cuda:N"),
    ("device=", "ei config field device must be cpu, cuda or cuda:N"),
    ("seed=1e23", "ei config field seed must be int"),
    ("temperature=inf", "ei config field temperature must be a finite number"),
    ("lr=inf", "ei config field lr must be a finite number"),
    ("rounds=99999999999999999999", "ei config field rounds must be <= 10000"),
    ("k=1000000000", "ei config field k must be <= 100000"),
    ("gym_size=1e9", "ei config field gym_size must be int"),
])
def test_train_refuses_the_issues_bad_values_in_one_line(capsys, item, fragment):
    code, out = run_main(capsys, "train", "--algo", "ei", "--base", "b", "--set", item, "--detach")
    assert code == 2 and out.err.startswith("reasonlab: error: ") and fragment in out.err
    assert len(out.err.strip().splitlines()) == 1 and out.out == ""  # no "run N": nothing was queued


def test_train_refuses_cuda_on_a_machine_without_it(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, out = run_main(capsys, "train", "--algo", "ppo", "--base", "b", "--set", "device=cuda", "--detach")
    assert code == 2 and "ppo config field device is a CUDA device, but torch finds no CUDA GPU" in out.err


@pytest.mark.parametrize("args, fragment", [
    (["--temperature", "nan"], "eval: temperature must be a finite number"),
    (["--temperature", "inf"], "eval: temperature must be a finite number"),
    (["--top-p", "nan"], "eval: top_p must be a finite number"),
    (["--batch-size", "0"], "eval: --batch-size must be >= 1"),
    (["--batch-size", "-3"], "eval: --batch-size must be >= 1"),
    (["--batch-size", "65536", "--max-new-tokens", "1024"], "tokens decoded together, over the limit of 4194304"),
    (["-k", "1000000000"], "eval: k must be <= 100000"),
    (["-k", "100000", "--limit", "100"], "eval: limit x k = 10000000 samples, over the limit of 1000000"),
    (["--limit", "0"], "eval: limit must be >= 1"),
    (["--seed", "-1"], "eval: seed must be >= 0"),
    (["--max-new-tokens", "0"], "eval: --max-new-tokens must be >= 1"),
    (["--vllm-memory", "2"], "eval: --vllm-memory must be in (0, 1)"),
    (["--device", "tpu"], "eval: --device must be cpu, cuda or cuda:N"),
])
def test_eval_refuses_bad_values_in_one_line(capsys, tmp_path, args, fragment):
    code, out = run_main(capsys, "eval", tmp_path, *args)
    assert code == 2 and out.err.startswith("reasonlab: error: ") and fragment in out.err, out.err
    assert len(out.err.strip().splitlines()) == 1


def test_eval_names_a_corrupt_reasonlab_json(capsys, tmp_path):
    (tmp_path / "reasonlab.json").write_text("{half")
    code, out = run_main(capsys, "eval", tmp_path)
    assert code == 2 and f"checkpoint metadata {tmp_path / 'reasonlab.json'} is not valid JSON" in out.err


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_max_running_is_one_line_naming_the_variable_and_queues_nothing(capsys, monkeypatch, value,
                                                                              tiny_checkpoint):
    monkeypatch.setenv("REASONLAB_MAX_RUNNING", value)
    from engine.launch import SIZES

    smoke = [x for k, v in SIZES["smoke test"]["grpo"].items() for x in ("--set", f"{k}={v}")]
    code, out = run_main(capsys, "train", "--algo", "grpo", "--base", tiny_checkpoint, *smoke)
    assert code == 2 and f"REASONLAB_MAX_RUNNING must be an integer from 1 to 1000 (runs trained at once), " \
                          f"got {value!r}" in out.err
    assert out.out == ""
    monkeypatch.delenv("REASONLAB_MAX_RUNNING")
    assert run_main(capsys, "runs", "--json") == (0, ("[]\n", ""))


# --- Paths: resolved at the boundary, so a background worker finds them (issue 14, item 2) ---

def test_a_relative_base_and_home_work_for_a_detached_run_with_one_store(tiny_checkpoint, tmp_path):
    import shutil

    from engine.launch import SIZES
    from engine.store import Store
    from tests.helpers import wait_for

    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    shutil.copytree(tiny_checkpoint, cwd / "mybase")
    home = f"home-{tmp_path.name}"  # relative, and a name no other test uses
    sets = [x for k, v in SIZES["smoke test"]["ei"].items() for x in ("--set", f"{k}={v}")]
    result = subprocess.run([sys.executable, "-m", "engine.cli", "train", "--algo", "ei", "--base", "mybase",
                             "--quiet", "--detach", *sets], capture_output=True, text=True, input="", cwd=cwd,
                            env={**os.environ, "REASONLAB_HOME": home}, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "run 1"
    store_file = cwd / home / "store.sqlite"

    def run():
        with Store(store_file) as s:
            return s.get_run(1)

    done = wait_for(lambda: (r := run())["status"] not in ("queued", "running") and r, what="the detached run")
    assert done["status"] == "finished", done["error"]
    assert done["config"]["base"] == str((cwd / "mybase").resolve()) == done["parent_checkpoint"]
    repo = Path(__file__).resolve().parent.parent
    assert not (repo / home).exists()  # the worker (in the repo's directory) used the same store
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("store.sqlite")) == [Path("elsewhere") / home / "store.sqlite"]


def test_sft_out_is_stored_absolute(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out = run_main(capsys, "sft", "--steps", "1", "--quiet", "--out", "rel/base")
    assert code == 0, out.err
    assert json.loads(out.out.strip().splitlines()[-1])["checkpoint"] == str(tmp_path.resolve() / "rel" / "base")


@pytest.fixture(scope="module")
def orm_dir(tiny_checkpoint, tmp_path_factory):
    """A whole outcome reward model (its head untrained: eval --orm needs its directory, not its skill)."""
    from engine.algorithms.orm import OutcomeRewardModel

    return OutcomeRewardModel.from_base(tiny_checkpoint).save(tmp_path_factory.mktemp("orm") / "orm")


def test_eval_with_an_orm_reports_rerank_at_every_k_and_names_the_orm(tiny_checkpoint, orm_dir, monkeypatch, capsys):
    monkeypatch.chdir(orm_dir.parent)
    ev = reasonlab("eval", tiny_checkpoint, "-k", "4", "--limit", "4", "--max-new-tokens", "48", "--orm", "orm", "--json")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    assert metrics["orm"] == str(orm_dir)  # given relative, reported absolute
    for k in ks_up_to(4):  # the ORM's pick is right only when some sample is
        assert 0.0 <= metrics[f"rerank@{k}"] <= metrics[f"pass@{k}"] + 1e-9
    assert metrics["rerank@1"] == pytest.approx(metrics["pass@1"])  # one sample: nothing to choose among

    code, out = run_main(capsys, "eval", tiny_checkpoint, "-k", "2", "--limit", "2", "--max-new-tokens", "16",
                         "--orm", orm_dir)
    assert code == 0, out.err
    lines = [line.split() for line in out.out.splitlines()]
    assert ["orm", str(orm_dir)] in lines and {"rerank@1", "rerank@2"} <= {line[0] for line in lines}


def test_eval_refuses_a_bad_orm_in_one_line_before_loading_a_model(untrained_checkpoint, tmp_path):
    missing = tmp_path / "no-orm"
    assert_one_line_error(reasonlab("eval", untrained_checkpoint, "--orm", missing),
                          f"eval: --orm {missing}: checkpoint {missing} does not exist")
    assert_one_line_error(reasonlab("eval", untrained_checkpoint, "--orm", untrained_checkpoint),  # no head
                          f"--orm {untrained_checkpoint}: ", "is not an outcome reward model")
    probe = ("import sys; from engine.cli import main; code = main(sys.argv[1:]); "
             "print(code, 'torch' in sys.modules, 'transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe, "eval", str(untrained_checkpoint), "--orm", str(missing)],
                            capture_output=True, text=True, timeout=600)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr
