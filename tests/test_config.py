"""Algorithm configs: every field documented, `--set` values coerced to the field's type."""

import math
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import limits
from engine.config import CONFIGS, ORMConfig, SFTConfig, check_limits, make_config
from engine.launch import describe
from engine.errors import ReasonlabError
from engine.limits import MAX_BATCH_TOKENS, MAX_SAMPLES, ORM_RANGES, RANGES, SFT_RANGES


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_every_field_has_a_docstring(algo):
    undocumented = [name for name, doc, _ in describe(algo) if not doc]
    assert undocumented == []


def test_set_values_take_the_field_type(tiny_checkpoint):
    cfg = make_config("ppo", base=tiny_checkpoint, sets=["n=3", "lr=1e-4", "reward_scale=false", "reward=dense"])
    assert (cfg.n, cfg.lr, cfg.reward_scale, cfg.reward) == (3, 1e-4, False, "dense")
    assert cfg.algo == "ppo" and cfg.base == str(tiny_checkpoint)
    with pytest.raises(ReasonlabError, match="ppo config field reward_scale must be bool, got 'maybe'"):
        make_config("ppo", base=tiny_checkpoint, sets=["reward_scale=maybe"])
    with pytest.raises(ReasonlabError, match="--set expects field=value"):
        make_config("ppo", base=tiny_checkpoint, sets=["lr"])
    with pytest.raises(ReasonlabError, match="unknown algorithm 'dpo'"):
        make_config("dpo", base=tiny_checkpoint)


def test_sft_carry_slips_are_checked():
    with pytest.raises(ReasonlabError, match="carry_slips"):
        SFTConfig(carry_slips=1.5).validate()
    SFTConfig(carry_slips=0.0).validate()


# --- Every numeric field in a documented range, refused before anything is queued (issue 14, item 4) ---


@pytest.mark.parametrize("cls, ranges", [(SFTConfig, SFT_RANGES), (ORMConfig, ORM_RANGES)])
def test_the_base_and_reward_model_configs_have_a_range_for_every_number(cls, ranges):
    assert {n for n, h in typing.get_type_hints(cls).items() if h in (int, float)} == set(ranges)
    cls().validate()  # the defaults are in range


@pytest.mark.parametrize("cls, field, value, fragment", [
    (SFTConfig, "steps", 99999999999, "sft config field steps must be <= 10000000"),
    (SFTConfig, "lr", math.inf, "sft config field lr must be a finite number"),
    (SFTConfig, "batch_size", 0, "sft config field batch_size must be >= 1"),
    (SFTConfig, "seed", -1, "sft config field seed must be >= 0"),
    (SFTConfig, "canonical", math.nan, "sft config field canonical must be a finite number"),
    (SFTConfig, "warmup", 2.5, "sft config field warmup must be int"),
    (ORMConfig, "steps", 2**70, "orm config field steps must be <= 10000000"),
    (ORMConfig, "weight_decay", -math.inf, "orm config field weight_decay must be a finite number"),
    (ORMConfig, "lr", 0.0, "orm config field lr must be > 0"),
])
def test_the_base_and_reward_model_configs_refuse_numbers_out_of_range(cls, field, value, fragment):
    with pytest.raises(ReasonlabError, match=fragment.replace("(", r"\(")):
        cls(**{field: value}).validate()



def numeric_fields(algo):
    return {name: hint for name, hint in typing.get_type_hints(CONFIGS[algo]).items() if hint in (int, float)}


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_every_numeric_field_has_a_range_stated_in_its_help(algo):
    fields = numeric_fields(algo)
    assert set(fields) - set(RANGES) == set()
    docs = {name: doc for name, doc, _ in describe(algo)}
    assert all(f"Range: {RANGES[name]}." in docs[name] for name in fields)


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_the_defaults_and_the_launch_presets_are_within_every_limit(algo):
    from engine.launch import SIZES

    for preset in SIZES.values():
        check_limits(make_config(algo, sets=dict(preset[algo]), validate=False))


# The values issue 14 lists, each refused with an error that names its field (no base needed: the
# limits are checked first, before the base, the task or anything slow).
BAD_VALUES = [
    ("ei", "device=tpu", "device", "must be cpu, cuda or cuda:N"),
    ("ei", "device=", "device", "must be cpu, cuda or cuda:N"),
    ("ei", "device=cuda:x", "device", "must be cpu, cuda or cuda:N"),
    ("ei", "seed=1e23", "seed", "must be int"),
    ("ei", "seed=100000000000000000000000", "seed", "must be <= 4294967295"),
    ("ei", "seed=-1", "seed", "must be >= 0"),
    ("ei", "temperature=inf", "temperature", "must be a finite number"),
    ("ei", "temperature=nan", "temperature", "must be a finite number"),
    ("ei", "temperature=-1", "temperature", "must be >= 0"),
    ("ei", "lr=inf", "lr", "must be a finite number"),
    ("ei", "lr=1e999", "lr", "must be a finite number"),
    ("ppo", "kl_coef=inf", "kl_coef", "must be a finite number"),
    ("grpo", "kl_coef=-1", "kl_coef", "must be >= 0"),
    ("ppo", "gamma=1.5", "gamma", "must be in [0, 1]"),
    ("ei", "rounds=99999999999999999999", "rounds", "must be <= 10000"),
    ("ppo", "steps=99999999999999999999", "steps", "must be <= 10000000"),
    ("ei", "k=1000000000", "k", "must be <= 100000"),
    ("ei", "k=0", "k", "must be >= 1"),
    ("grpo", "n=1000000000", "n", "must be <= 100000"),
    ("ei", "gym_size=1e9", "gym_size", "must be int"),
    ("ei", "gym_size=1000000000", "gym_size", "must be <= 10000"),
    ("ei", "top_p=0", "top_p", "must be in (0, 1]"),
    ("ei", "vllm_memory=1", "vllm_memory", "must be in (0, 1)"),
    ("ei", "max_new_tokens=0", "max_new_tokens", "must be >= 1"),
    ("ei", "sample_batch_size=-3", "sample_batch_size", "must be >= 1"),
]


@pytest.mark.parametrize("algo, item, field, fragment", BAD_VALUES)
def test_bad_values_are_refused_naming_the_field(algo, item, field, fragment):
    with pytest.raises(ReasonlabError, match=f"^{algo} config field {field} ") as e:
        make_config(algo, base="no-base-needed", sets=[item])
    assert fragment in str(e.value)


def test_values_of_the_wrong_type_from_the_launch_form_are_refused():
    for values, field in [({"k": 3.0}, "k"), ({"k": True}, "k"), ({"lr": float("nan")}, "lr"),
                          ({"lr": "fast"}, "lr"), ({"seed": 2**70}, "seed")]:
        with pytest.raises(ReasonlabError, match=f"ei config field {field} "):
            make_config("ei", base="b", sets=values)


@pytest.mark.parametrize("algo, sets, field, fragment", [
    ("ei", ["problems_per_round=100000", "k=100"], "k", f"problems_per_round x k = 10000000 samples per round, "
                                                        f"over the limit of {MAX_SAMPLES}"),
    ("ppo", ["prompts_per_step=1000000", "n=8"], "n", "prompts_per_step x n = 8000000 samples per step"),
    ("grpo", ["eval_limit=1000000", "eval_k=64"], "eval_k", "eval_limit x eval_k = 64000000 samples per evaluation"),
    ("ei", ["sample_batch_size=65536", "max_new_tokens=1024"], "sample_batch_size",
     f"67108864 tokens decoded together, over the limit of {MAX_BATCH_TOKENS}"),
    ("ppo", ["minibatch_size=8192", "max_new_tokens=1024"], "minibatch_size", "tokens per optimizer step"),
])
def test_sizes_that_multiply_are_bounded_with_the_limit_in_the_message(algo, sets, field, fragment):
    with pytest.raises(ReasonlabError, match=f"{algo} config field {field} ") as e:
        make_config(algo, base="b", sets=sets)
    assert fragment in str(e.value)


def test_sampled_tokens_are_bounded_by_the_machines_memory(monkeypatch):
    monkeypatch.setattr(limits, "machine_memory", lambda: 2**30)  # 1 GiB: 4,194,304 tokens at 64 bytes in a quarter
    with pytest.raises(ReasonlabError, match=r"field k gives problems_per_round x k x max_new_tokens = 12582912 "
                                             r"sampled tokens held at once, over the 4194304 this machine's memory "
                                             r"\(1.0 GiB\) holds"):
        make_config("ei", base="b", sets=["problems_per_round=1024", "k=128", "max_new_tokens=96"])


def test_cuda_is_refused_where_torch_finds_no_gpu_and_a_gpu_index_past_the_last(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ReasonlabError, match="ei config field device is a CUDA device, but torch finds no CUDA GPU"):
        make_config("ei", base="b", sets=["device=cuda"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ReasonlabError, match=r"device names GPU 2, but this machine has 2 \(cuda:0 to cuda:1\)"):
        make_config("ei", base="b", sets=["device=cuda:2"])
    for device in ("cpu", "cuda", "cuda:1"):  # past the device check: the missing base is next
        with pytest.raises(ReasonlabError, match="field base"):
            make_config("ei", base="b", sets=[f"device={device}"])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_number_outside_a_fields_range_is_refused_and_any_inside_passes_the_limits(data):
    algo = data.draw(st.sampled_from(sorted(CONFIGS)))
    name, hint = data.draw(st.sampled_from(sorted(numeric_fields(algo).items())))
    rng = RANGES[name]
    if hint is int:
        outside = st.one_of(st.integers(max_value=int(rng.lo) - 1), st.integers(min_value=int(rng.hi) + 1))
        inside = st.integers(int(rng.lo) + rng.lo_open, int(rng.hi) - rng.hi_open)
    else:
        outside = st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not math.isfinite(x)),
                            st.floats(max_value=rng.lo, exclude_max=not rng.lo_open, allow_nan=False),
                            st.floats(min_value=rng.hi, exclude_min=not rng.hi_open, allow_nan=False))
        inside = st.floats(rng.lo, rng.hi, exclude_min=rng.lo_open, exclude_max=rng.hi_open)
    cfg = make_config(algo, sets={name: data.draw(outside)}, validate=False)
    with pytest.raises(ReasonlabError, match=f"^{algo} config field {name} "):
        check_limits(cfg)
    assert limits.number_problem(hint, data.draw(inside), rng) is None


# --- Paths are resolved once, at the boundary (issue 14, item 2) ---

def test_a_relative_or_home_relative_path_is_stored_absolute(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_checkpoint.parent)
    cfg = make_config("ei", base=tiny_checkpoint.name)
    assert cfg.base == str(tiny_checkpoint.resolve())
    monkeypatch.setenv("HOME", str(tiny_checkpoint.parent))
    cfg = make_config("ppo", base=f"~/{tiny_checkpoint.name}", sets=["orm=~/an-orm", "data=x.jsonl"], validate=False)
    assert (cfg.base, cfg.orm) == (str(tiny_checkpoint.resolve()), str(tiny_checkpoint.parent.resolve() / "an-orm"))
    assert cfg.task.data == str(tiny_checkpoint.parent.resolve() / "x.jsonl")


def test_a_corrupt_reasonlab_json_in_the_base_is_refused_naming_the_file(tiny_checkpoint, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_checkpoint, base)
    for text in ("{not json", "[1, 2]", "\xff\xfe"):
        (base / "reasonlab.json").write_bytes(text.encode("latin-1"))
        with pytest.raises(ReasonlabError, match=f"ei config field base .*checkpoint metadata {base / 'reasonlab.json'}"):
            make_config("ei", base=base)


# --- Continued SFT trains on the task's reference solutions (issue 15, F4) ---

def test_continued_sft_refuses_a_task_whose_references_are_answers_only_naming_task(tiny_checkpoint, tmp_path):
    from engine import launch
    from tests.data_files import write_gsm8k, write_jsonl

    answers = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"What is {i} + 1?", "answer": i + 1} for i in range(200)])
    with pytest.raises(ReasonlabError, match="sft config field task has no worked reference solution for 64 of"):
        make_config("sft", base=tiny_checkpoint, sets=["task=jsonl", f"data={answers}"])
    assert launch.check("sft", str(tiny_checkpoint), {"task": "jsonl", "data": str(answers)}).field == "task"
    make_config("ei", base=tiny_checkpoint, sets=["task=jsonl", f"data={answers}"])  # sampling needs none
    make_config("sft", base=tiny_checkpoint, sets=["task=gsm8k", f"data={write_gsm8k(tmp_path / 'g.jsonl', n=200)}"])
    assert make_config("sft", base=tiny_checkpoint).rounds == 3  # the built-in task's references are worked
