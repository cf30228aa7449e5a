"""One TaskSpec, nested as `task` in every config (issue 18, point 2), and errors that carry their
field (point 5)."""

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import launch
from engine.cli import parser
from engine.cli.models import EVAL_FLAGS, SFT_FLAGS
from engine.config import (CONFIGS, TASK_FIELDS, EvalConfig, RunConfig, SFTConfig, TaskSpec, config_from_dict,
                           make_config)
from engine.errors import ReasonlabError
from engine.tasks import TaskOptionError, option_names
from engine.tasks.flags import eval_task, task_spec


def test_every_config_that_reads_problems_nests_one_task_spec():
    for cls in (*CONFIGS.values(), SFTConfig, EvalConfig):
        task = {f.name: f for f in dataclasses.fields(cls)}["task"]
        assert task.default_factory is TaskSpec, cls
        assert not set(TASK_FIELDS) & {f.name for f in dataclasses.fields(cls)}, cls  # no flat copies left


def test_a_family_takes_only_its_own_options():
    spec = TaskSpec("gsm8k", data="/d.jsonl", gym_name="chain_sum")
    assert spec.options() == {"data": "/d.jsonl", "eval_data": "", "skip_bad": False}
    assert TaskSpec().options() == {} and set(TaskSpec("gym").options()) == set(option_names("gym"))
    with pytest.raises(ReasonlabError, match="ei config field gym_name is not an option of task gsm8k") as e:
        spec.check("ei")
    assert e.value.field == "gym_name"


# Each shape a version of reasonlab stored: nested (now), flat options beside the task's name (runs
# before TaskSpec), and a task_options dict (sft checkpoints and evaluations before TaskSpec).
@pytest.mark.parametrize("stored", [
    {"task": {"name": "gsm8k", "data": "/d.jsonl", "skip_bad": True}},
    {"task": "gsm8k", "data": "/d.jsonl", "skip_bad": True, "gym_size": 1000, "question_field": "question"},
    {"task": "gsm8k", "task_options": {"data": "/d.jsonl", "skip_bad": True}},
])
def test_a_stored_task_reads_the_same_in_every_shape_a_version_stored(stored):
    assert TaskSpec.from_stored(stored) == TaskSpec("gsm8k", data="/d.jsonl", skip_bad=True)


def test_a_config_stored_without_a_task_is_the_built_in_task():
    assert TaskSpec.from_stored({}) == TaskSpec.from_stored(None) == TaskSpec.from_stored({"task": None}) == TaskSpec()


# a usable path: no NUL byte, no lone surrogate, and no `~user` of a user who may not exist (each is
# refused, naming its field: test_a_path_that_cannot_be_a_path_names_its_field)
PATHS = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8).filter(
    lambda p: not p.strip().startswith("~") or p.strip() == "~" or p.strip().startswith("~/"))
OPTIONS = st.fixed_dictionaries({}, optional={
    "data": PATHS, "eval_data": PATHS, "skip_bad": st.booleans(),
    "gym_name": st.text(max_size=8), "gym_size": st.integers(1, 10_000), "gym_seed": st.integers(0, 99)})


@given(name=st.sampled_from(["multistep", "gsm8k", "svamp", "jsonl", "gym"]), options=OPTIONS)
def test_an_old_flat_run_config_resumes_as_the_nested_one(name, options):
    new = make_config("ei", sets={"task": name, **options}, validate=False)
    stored = dataclasses.asdict(new)
    flat = stored | stored.pop("task") | {"task": name}  # every option beside the rest, as runs were stored
    del flat["name"]
    assert config_from_dict("ei", flat) == new == config_from_dict("ei", dataclasses.asdict(new))
    assert new.task == TaskSpec(name, **{k: new.task.data if k == "data" else new.task.eval_data if k == "eval_data"
                                         else v for k, v in options.items()})


@pytest.mark.parametrize("value", ["runs/\x00x", "\ud800", "~0", "~no-such-user/x"])  # NUL; lone surrogate; ~user
@pytest.mark.parametrize("name", ["base", "orm", "data", "eval_data", "task.data"])
def test_a_path_that_cannot_be_a_path_names_its_field(name, value):
    with pytest.raises(ReasonlabError, match="config field .* is not a usable path") as e:
        make_config("ppo", sets={name: value}, validate=False)
    assert e.value.field == name.removeprefix("task.")


def test_a_task_option_is_set_by_its_name_or_under_task():
    short = make_config("grpo", sets=["task=gym", "gym_name=chain_sum", "gym_size=7"], validate=False)
    dotted = make_config("grpo", sets=["task=gym", "task.gym_name=chain_sum", "task.gym_size=7"], validate=False)
    assert short.task == dotted.task == TaskSpec("gym", gym_name="chain_sum", gym_size=7)
    whole = make_config("grpo", sets={"task": TaskSpec("gym", gym_name="chain_sum", gym_size=7)}, validate=False)
    assert whole.task == short.task
    with pytest.raises(ReasonlabError, match="grpo config field gym_size must be int") as e:
        make_config("grpo", sets=["task.gym_size=many"], validate=False)
    assert e.value.field == "gym_size"


def test_a_task_option_out_of_range_names_its_field(tiny_checkpoint):
    with pytest.raises(ReasonlabError, match="ei config field gym_size must be <= 10000") as e:
        make_config("ei", base=tiny_checkpoint, sets=["task=gym", "gym_name=chain_sum", "gym_size=10001"])
    assert e.value.field == "gym_size"


# -- errors carry their field (point 5): the Launch form marks it without reading the message --------


@pytest.mark.parametrize("sets, field", [
    (["data=x.jsonl"], "data"),
    (["task=nope"], "task"),
    (["k=0"], "k"),
    (["lr=abc"], "lr"),
    (["lr=nan"], "lr"),
    (["nope=1"], "nope"),
    (["dedup=words"], "dedup"),
    (["temperature=0", "k=4"], "temperature"),
    (["dtype=float16"], "dtype"),
])
def test_every_config_error_carries_the_field_its_message_names(tiny_checkpoint, sets, field):
    with pytest.raises(ReasonlabError) as e:
        make_config("ei", base=tiny_checkpoint, sets=sets)
    assert e.value.field == field
    assert f"field {field} " in str(e.value) or f"has no field {field!r}" in str(e.value)
    assert launch.check("ei", str(tiny_checkpoint), dict(s.split("=", 1) for s in sets)).field == field


def test_an_error_keeps_its_field_across_processes():
    for error in (ReasonlabError("ei config field k must be >= 1", field="k"), TaskOptionError("data", "missing")):
        again = pickle.loads(pickle.dumps(error))
        assert (type(again), str(again), again.field) == (type(error), str(error), error.field)


def test_a_message_naming_no_field_marks_none():
    assert ReasonlabError("the store is locked").field is None
    assert launch.check("ei", "", {}).field == "base"


# -- the CLI's sft and eval flags are the configs' fields --------------------------------------------


def test_eval_flags_default_to_the_eval_config():
    args = parser().parse_args(["eval", "ckpt"])
    defaults = EvalConfig()
    assert {name: getattr(args, name) for name in EVAL_FLAGS} == {name: getattr(defaults, name) for name in EVAL_FLAGS}


def test_sft_flags_are_the_sft_config_fields_and_leave_unset_ones_to_it():
    args = parser().parse_args(["sft", "--steps", "7", "--carry-slips", "0.25"])
    assert (args.steps, args.carry_slips, args.lr, args.seed) == (7, 0.25, None, SFTConfig.seed)
    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    assert set(SFT_FLAGS) <= fields and set(EVAL_FLAGS) <= {f.name for f in dataclasses.fields(EvalConfig)}


def test_every_task_option_is_a_flag_of_sft_eval_and_train():
    for command in (["sft"], ["eval", "ckpt"], ["train", "--algo", "ei", "--base", "b"]):
        args = parser().parse_args(command)
        assert all(hasattr(args, name) and getattr(args, name) is None for name in TASK_FIELDS), command


def test_eval_reads_the_checkpoints_task_and_the_flags_override_its_options():
    args = parser().parse_args(["eval", "ckpt", "--skip-bad"])
    meta = {"config": {"task": "gsm8k", "task_options": {"data": "/d.jsonl"}}}  # an sft checkpoint before TaskSpec
    assert eval_task(args, meta) == TaskSpec("gsm8k", data="/d.jsonl", skip_bad=True)
    assert eval_task(parser().parse_args(["eval", "ckpt"]), {}) == TaskSpec()
    assert task_spec(parser().parse_args(["sft", "--task", "gym", "--gym-name", "x"])) == TaskSpec("gym", gym_name="x")
    with pytest.raises(ReasonlabError, match="--data is not an option of task gym"):
        task_spec(parser().parse_args(["sft", "--task", "gym", "--data", "x"]))


def test_run_config_documents_its_task_field():
    from engine.config import field_docs

    assert "engine/config/task.py" in field_docs(RunConfig)["task"]
    assert all(field_docs(TaskSpec)[name] for name in TASK_FIELDS)


def test_every_field_of_every_config_is_documented():
    from engine.config import ORMConfig, field_docs

    for cls in (*CONFIGS.values(), SFTConfig, EvalConfig, ORMConfig, TaskSpec):
        docs = field_docs(cls)
        assert [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)] == [], cls


def test_the_task_options_numbers_state_their_ranges_on_the_form():
    from engine.limits import RANGES

    gym = {f.name: f for f in launch.task_fields("gym")}
    assert all(f"Range: {RANGES[name]}." in gym[name].doc for name in ("gym_size", "gym_seed"))


def test_a_config_stored_with_its_task_spec_object_reads_back_whole(workspace):
    from engine.store import Store

    cfg = make_config("ei", sets=["task=gym", "gym_name=chain_sum", "gym_size=9"], validate=False)
    with Store() as store:  # a caller passing the dataclass's own fields, not asdict's copy
        run_id = store.create_run("ei", vars(cfg), total=1)
        stored = store.get_run(run_id)["config"]
    assert stored["task"] == dataclasses.asdict(cfg.task) and config_from_dict("ei", stored) == cfg
