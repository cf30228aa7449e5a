"""Checkpoints are whole or refused, written atomically, and never written over what a user has:
validation before anything is queued, atomic saves, `sft --out` / `--overwrite`, the quickstart's
base, and resume of a run whose checkpoints were deleted."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import jobs
from engine.cli import main
from engine.config import make_config
from engine.errors import ReasonlabError
from engine.model.checkpoint import check_checkpoint, load_checkpoint, read_meta, recover, save_checkpoint
from engine.model.validity import ORM_HEAD, check_orm
from engine.store import Store
from tests.helpers import dead_pid

WEIGHTS = "model.safetensors"


@pytest.fixture
def ck(tmp_path, tiny_checkpoint):
    """A copy of a real small checkpoint, to damage."""
    return shutil.copytree(tiny_checkpoint, tmp_path / "ck")


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


# -- validation ---------------------------------------------------------------------------------


def truncate(path, n):
    path.write_bytes(path.read_bytes()[:n])


DAMAGE = {
    "truncated weights": (lambda ck: truncate(ck / WEIGHTS, 1000), f"truncated or corrupt {WEIGHTS}"),
    "empty weights": (lambda ck: (ck / WEIGHTS).write_bytes(b""), f"empty {WEIGHTS}"),
    "weights with bytes appended": (lambda ck: (ck / WEIGHTS).write_bytes((ck / WEIGHTS).read_bytes() + b"x" * 10),
                                    f"truncated or corrupt {WEIGHTS}"),
    "zeroed weights": (lambda ck: (ck / WEIGHTS).write_bytes(b"\x00" * 64), f"truncated or corrupt {WEIGHTS}"),
    "no weights": (lambda ck: (ck / WEIGHTS).unlink(), "has no weights"),
    "numeric config.json": (lambda ck: (ck / "config.json").write_text("5"), "config.json that is not a JSON object"),
    "garbage config.json": (lambda ck: (ck / "config.json").write_text("{not json"), "config.json that is not valid JSON"),
    "binary config.json": (lambda ck: (ck / "config.json").write_bytes(b"\xff\xfe\x00"), "not valid JSON"),
    "config.json of no model": (lambda ck: (ck / "config.json").write_text('{"a": 1}'), "neither model_type"),
    "no config.json": (lambda ck: (ck / "config.json").unlink(), "has no config.json"),
    "no tokenizer": (lambda ck: (ck / "tokenizer.json").unlink(), "has no tokenizer"),
    "garbage tokenizer.json": (lambda ck: (ck / "tokenizer.json").write_text("{}"), "tokenizer.json that does not load"),
    "numeric tokenizer_config.json": (lambda ck: (ck / "tokenizer_config.json").write_text("7"),
                                      "tokenizer_config.json that is not a JSON object"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_base_is_refused_before_queueing_naming_its_path_and_problem(ck, damage):
    spoil, problem = DAMAGE[damage]
    spoil(ck)
    with pytest.raises(ReasonlabError) as e:
        make_config("ei", base=ck)
    assert "ei config field base" in str(e.value) and f"checkpoint {ck}" in str(e.value)
    assert problem in str(e.value)


def test_a_whole_checkpoint_is_accepted_and_checking_it_imports_no_transformers(tiny_checkpoint):
    code = (f"import sys; from engine.model.validity import check_checkpoint; check_checkpoint({str(tiny_checkpoint)!r}); "
            "assert 'transformers' not in sys.modules and 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_sharded_and_torch_bin_weights_are_accepted_when_whole(ck):
    shard = "model-00001-of-00001.safetensors"
    (ck / WEIGHTS).rename(ck / shard)
    (ck / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))
    assert check_checkpoint(ck) == ck
    (ck / shard).unlink()
    with pytest.raises(ReasonlabError, match=f"checkpoint {ck} is missing {shard}"):
        check_checkpoint(ck)
    (ck / "model.safetensors.index.json").unlink()
    torch.save({"w": torch.zeros(3)}, ck / "pytorch_model.bin")
    assert check_checkpoint(ck) == ck
    truncate(ck / "pytorch_model.bin", 100)
    with pytest.raises(ReasonlabError, match="truncated or corrupt pytorch_model.bin"):
        check_checkpoint(ck)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0, 1, exclude_max=True))
def test_weights_cut_anywhere_are_refused(ck, cut):
    whole = (ck / WEIGHTS).read_bytes()
    (ck / WEIGHTS).write_bytes(whole[:int(cut * len(whole))])
    try:
        with pytest.raises(ReasonlabError, match=f"checkpoint {ck} has an? (empty|truncated or corrupt) {WEIGHTS}"):
            check_checkpoint(ck)
    finally:
        (ck / WEIGHTS).write_bytes(whole)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.text(max_size=30).map(str.encode), st.binary(max_size=30),
                         st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.integers()))
                         .map(lambda v: json.dumps(v).encode())))
def test_any_config_json_that_is_not_a_model_object_is_refused(ck, content):
    (ck / "config.json").write_bytes(content)
    with pytest.raises(ReasonlabError, match=f"checkpoint {ck} has (a config.json|no config.json)"):
        check_checkpoint(ck)


def test_an_orm_must_be_whole_with_its_head(ck, tiny_checkpoint):
    sets = ["reward=orm", f"orm={ck}"]
    with pytest.raises(ReasonlabError, match=f"ppo config field orm .*checkpoint {ck} is not an outcome reward model"):
        make_config("ppo", base=tiny_checkpoint, sets=sets)
    shutil.copy(ck / WEIGHTS, ck / ORM_HEAD)  # a whole safetensors file stands in for a head here
    assert check_orm(ck) == ck
    truncate(ck / ORM_HEAD, 50)
    with pytest.raises(ReasonlabError, match=f"ppo config field orm .*checkpoint {ck} .*{ORM_HEAD}"):
        make_config("ppo", base=tiny_checkpoint, sets=sets)
    (ck / ORM_HEAD).write_bytes((ck / WEIGHTS).read_bytes())
    truncate(ck / WEIGHTS, 1000)  # the trunk is checked too
    with pytest.raises(ReasonlabError, match=f"ppo config field orm .*truncated or corrupt {WEIGHTS}"):
        make_config("ppo", base=tiny_checkpoint, sets=sets)


def test_eval_refuses_a_truncated_checkpoint_in_one_line(ck, capsys):
    truncate(ck / WEIGHTS, 1000)
    assert main(["eval", str(ck), "-k", "1", "--limit", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reasonlab: error: checkpoint {ck} has a truncated or corrupt {WEIGHTS}")


# -- atomic writes ------------------------------------------------------------------------------


def crash_in_tokenizer_save(monkeypatch, tokenizer):
    def boom(*args, **kwargs):
        raise RuntimeError("power cut")
    monkeypatch.setattr(tokenizer, "save_pretrained", boom)


def test_a_crash_mid_save_leaves_nothing_at_the_target(tmp_path, monkeypatch, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    crash_in_tokenizer_save(monkeypatch, tokenizer)
    with pytest.raises(RuntimeError, match="power cut"):
        save_checkpoint(model, tokenizer, tmp_path / "new")
    assert not (tmp_path / "new").exists()
    assert os.listdir(tmp_path) == []  # and no temporary either


def test_a_crash_while_replacing_keeps_the_old_checkpoint_whole(ck, monkeypatch, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    before = {f.name: f.read_bytes() for f in ck.iterdir()}
    crash_in_tokenizer_save(monkeypatch, tokenizer)
    with pytest.raises(RuntimeError, match="power cut"):
        save_checkpoint(model, tokenizer, ck, {"new": True}, replace=True)
    assert {f.name: f.read_bytes() for f in ck.iterdir()} == before
    assert check_checkpoint(ck) == ck and sorted(os.listdir(ck.parent)) == ["ck"]


def test_a_replacing_save_swaps_the_whole_directory(ck, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    (ck / "stale.txt").write_text("from the old checkpoint")
    save_checkpoint(model, tokenizer, ck, {"new": True}, extra=lambda d: (d / "extra.pt").write_bytes(b"state"),
                    replace=True)
    assert read_meta(ck) == {"new": True} and (ck / "extra.pt").read_bytes() == b"state"
    assert not (ck / "stale.txt").exists() and sorted(os.listdir(ck.parent)) == ["ck"]
    assert check_checkpoint(ck) == ck


def test_a_save_never_writes_into_a_non_empty_directory_unless_replacing_a_model(tmp_path, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    with pytest.raises(ReasonlabError, match=f"checkpoint directory {mine} is not empty"):
        save_checkpoint(model, tokenizer, mine)
    assert os.listdir(mine) == ["config.json"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.tex").write_text("years of work")
    with pytest.raises(ReasonlabError, match=f"{notes} is not a checkpoint directory"):
        save_checkpoint(model, tokenizer, notes, replace=True)
    assert (notes / "thesis.tex").read_text() == "years of work"
    (tmp_path / "empty").mkdir()
    assert check_checkpoint(save_checkpoint(model, tokenizer, tmp_path / "empty"))


def test_what_a_killed_save_left_is_tidied_by_the_next_one(tmp_path, ck, model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    pid = dead_pid()
    half = tmp_path / f".new.tmp-{pid}"
    half.mkdir()
    (half / "config.json").write_text("{}")
    save_checkpoint(model, tokenizer, tmp_path / "new")
    assert not half.exists() and check_checkpoint(tmp_path / "new")
    # killed between moving the old checkpoint aside and renaming the new one in: the old comes back
    aside = tmp_path / f".ck.old-{pid}"
    ck.rename(aside)
    recover(ck)
    assert check_checkpoint(ck) == ck and not aside.exists()


# -- reasonlab sft --out ------------------------------------------------------------------------


def test_sft_refuses_a_non_empty_out_and_leaves_the_users_files_alone(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}')
    assert main(["sft", "--out", str(out), "--steps", "2", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith(f"reasonlab: error: checkpoint directory {out} is not empty")
    assert os.listdir(out) == ["config.json"] and (out / "config.json").read_text() == '{"my": "settings"}'


def test_sft_default_out_never_retrains_an_existing_base(workspace, tiny_checkpoint, capsys):
    base = shutil.copytree(tiny_checkpoint, workspace / "checkpoints" / "base-tiny")
    before = (base / WEIGHTS).read_bytes()
    assert main(["sft", "--steps", "2", "--quiet"]) == 2
    assert f"checkpoint directory {base} is not empty" in capsys.readouterr().err
    assert (base / WEIGHTS).read_bytes() == before


def test_sft_overwrite_replaces_a_checkpoint(ck, capsys):
    assert main(["sft", "--out", str(ck), "--steps", "2", "--batch-size", "4", "--quiet", "--overwrite"]) == 0
    assert read_meta(ck)["config"]["steps"] == 2 and check_checkpoint(ck) == ck
    assert sorted(os.listdir(ck.parent)) == ["ck"]


def test_sft_overwrite_refuses_a_checkpoint_a_run_uses(ck, tiny_checkpoint, capsys):
    with Store() as store:
        run_id = jobs.submit(store, make_config("ei", base=ck))
        rerank = store.create_run("ppo", {"base": str(tiny_checkpoint), "orm": str(ck)}, status="finished")
    before = (ck / WEIGHTS).read_bytes()
    assert main(["sft", "--out", str(ck), "--steps", "2", "--quiet", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reasonlab: error: checkpoint {ck} is used by runs {run_id}, {rerank}")
    assert (ck / WEIGHTS).read_bytes() == before


# -- the quickstart's base ----------------------------------------------------------------------


def test_the_quickstart_rebuilds_a_half_written_base(workspace, tiny_checkpoint, monkeypatch):
    from engine import quickstart

    base = shutil.copytree(tiny_checkpoint, workspace / "checkpoints" / "base-tiny")
    truncate(base / WEIGHTS, 1000)
    (base / "tokenizer.json").unlink()
    monkeypatch.setattr(jobs, "spawn_worker", lambda **_: None)  # the queued EI run is not trained here
    assert quickstart.main(["--build-base", "--sft-steps", "2"]) == 0, quickstart.status()["error"]
    assert check_checkpoint(base) == base and read_meta(base)["config"]["steps"] == 2
    assert quickstart.status()["phase"] == "launched"


def test_the_quickstart_keeps_a_whole_base_and_never_replaces_a_directory_of_something_else(workspace, tiny_checkpoint):
    from engine import quickstart

    base = shutil.copytree(tiny_checkpoint, workspace / "checkpoints" / "base-tiny")
    assert quickstart.base_built(base)
    shutil.rmtree(base)
    base.mkdir()
    (base / "notes.txt").write_text("mine")
    assert not quickstart.base_built(base)
    assert quickstart.main(["--build-base", "--sft-steps", "2"]) == 1
    assert "not a checkpoint directory" in quickstart.status()["error"]
    assert os.listdir(base) == ["notes.txt"]


# -- resume -------------------------------------------------------------------------------------


def test_resume_refuses_a_run_whose_checkpoints_were_deleted_naming_them(tmp_path, tiny_checkpoint):
    with Store() as store:
        run_id = jobs.submit(store, make_config("ei", base=tiny_checkpoint))
        jobs.cancel(store, run_id)
        store.add_checkpoint(run_id, 0, tiny_checkpoint)
        steps = [shutil.copytree(tiny_checkpoint, jobs.run_dir(run_id) / f"step-0000{s}") for s in (1, 2)]
        for s, path in enumerate(steps, 1):
            store.add_checkpoint(run_id, s, path)
        jobs.resume(store, run_id)  # all there: resumes
        jobs.cancel(store, run_id)
        shutil.rmtree(steps[0])
        truncate(steps[1] / WEIGHTS, 1000)
        with pytest.raises(ReasonlabError, match=rf"run {run_id} cannot be resumed: its checkpoints "
                                                 rf"{steps[0]} \(step 1\), {steps[1]} \(step 2\) are missing"):
            jobs.resume(store, run_id)
        assert store.get_run(run_id)["status"] == "cancelled" and len(store.checkpoints(run_id)) == 3


def test_a_run_that_saved_no_checkpoint_yet_resumes_from_its_base(tiny_checkpoint):
    with Store() as store:
        run_id = jobs.submit(store, make_config("ei", base=tiny_checkpoint))
        jobs.cancel(store, run_id)
        store.add_checkpoint(run_id, 0, tiny_checkpoint)  # the base evaluated, nothing trained yet
        jobs.resume(store, run_id)
        assert store.get_run(run_id)["status"] == "queued"


def test_a_save_in_progress_is_not_offered_as_a_base_model(workspace, tiny_checkpoint):
    from engine.dashboard.runs import base_checkpoints

    base = shutil.copytree(tiny_checkpoint, workspace / "checkpoints" / "base-tiny")
    shutil.copytree(tiny_checkpoint, workspace / "checkpoints" / f".base-tiny.tmp-{os.getpid()}")
    assert base_checkpoints() == [base]
