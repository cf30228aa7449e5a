"""Any local Hugging Face causal LM as the base, on a tiny Qwen2 chat model built here (nothing is
downloaded): its chat template in the prompts, few-shot prompts without one, sampling, evaluation,
expert iteration with LoRA (adapters only; saved merged), GRPO, bf16 by default only on CUDA, and
trust_remote_code only on explicit opt-in."""

import json
import os

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.algorithms.sft import finetune
from engine.config import EvalConfig, RunConfig, TaskSpec, make_config
from engine.errors import ReasonlabError
from engine.evaluation.evaluate import evaluate
from engine.model.checkpoint import load_checkpoint, read_meta, save_checkpoint, torch_dtype
from engine.model.lora import add_lora, is_lora
from engine.model.prompts import SHOTS, Prompter, resolve_format
from engine.sampling.torch_sampler import TorchSampler
from engine.store import Store
from engine.tasks import get_task
from tests.data_files import train_chat_model, write_gsm8k
from tests.helpers import reasonlab

pytest.importorskip("peft", reason="LoRA is the optional extra `lora` (part of `dev`)")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_gsm8k(tmp_path_factory.mktemp("data") / "gsm8k.jsonl", n=40)


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory, data):
    """A tiny chat model that has seen the file's solutions in its chat format."""
    out = train_chat_model(tmp_path_factory.mktemp("models") / "chat", data)
    assert not (out / "reasonlab.json").exists()  # to reasonlab, a model from elsewhere
    return out


@pytest.fixture
def task(data):
    return get_task("gsm8k", data=str(data))


# -- prompts ----------------------------------------------------------------------------------------


def test_the_chat_template_is_applied_when_present(chat_base, task):
    model, tok = load_checkpoint(chat_base)
    assert resolve_format("auto", tok, read_meta(chat_base)) == "chat"
    p = task.problems("test")[0]
    text = Prompter(task, tok, "chat")(p)
    assert text == f"<|im_start|>user\n{task.instruction}\n\n{p.question}<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>")  # a special token, not its characters
    assert tok.eos_token == "<|im_end|>"


def test_evaluation_sends_chat_prompts_and_the_model_answers_in_format(chat_base, task, data):
    model, tok = load_checkpoint(chat_base)
    sampler = TorchSampler(model, tok)
    seen = []
    real_sample = sampler.sample
    sampler.sample = lambda prompts, **kw: seen.append(prompts) or real_sample(prompts, **kw)
    cfg = EvalConfig(task=TaskSpec("gsm8k", data=str(data)), split="train", limit=6, k=4, max_new_tokens=24,
                     prompt_format="chat")
    metrics, rows = evaluate(sampler, cfg)
    assert seen[0] == [Prompter(task, tok, "chat")(p) for p in task.problems("train", 6)]
    assert metrics["prompt_format"] == "chat" and 0 <= metrics["maj@1"] <= 1
    greedy = [r["text"] for r in rows if r["sample_idx"] == -1]
    assert sum("####" in t for t in greedy) >= 5  # it learned this format: the prompts match its training


def test_few_shot_without_a_chat_template_and_plain_for_reasonlab_models(chat_base, task):
    _, tok = load_checkpoint(chat_base)
    tok.chat_template = None
    assert resolve_format("auto", tok, {}) == "few_shot"
    assert resolve_format("auto", tok, {"made_by": "reasonlab sft"}) == "plain"
    assert resolve_format("auto", tok, {"made_by": "reasonlab ei", "prompt_format": "few_shot"}) == "few_shot"
    first = task.problems("train")[0]
    text = Prompter(task, tok, "few_shot")(first)
    shots = [p for p in task.problems("train", SHOTS + 1) if p is not first][:SHOTS]
    assert text == "".join(f"{task.prompt(p)}{p.reference}\n\n" for p in shots) + task.prompt(first)
    assert text.count(first.question) == 1  # never its own worked answer
    assert Prompter(task, tok, "few_shot").stop == ("Question:",)
    assert Prompter(task, tok, "plain").stop == () and Prompter(task, tok, "chat").stop == ()
    with pytest.raises(ReasonlabError, match="prompt format chat needs a tokenizer with a chat template"):
        resolve_format("chat", tok, {})


# -- dtype and trust_remote_code ----------------------------------------------------------------------


@pytest.mark.parametrize("name, device, cuda, bf16, expected", [
    ("auto", "cpu", True, True, torch.float32),
    ("auto", "cuda", True, True, torch.bfloat16),
    ("auto", "cuda", True, False, torch.float32),  # a GPU without bf16
    ("auto", "cuda:1", False, False, torch.float32),
    ("float32", "cuda", True, True, torch.float32),
    ("bfloat16", "cpu", False, False, torch.bfloat16),
])
def test_bf16_only_where_supported(monkeypatch, name, device, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert torch_dtype(name, device) == expected


def test_cpu_loads_float32_and_bfloat16_on_request(chat_base):
    assert next(load_checkpoint(chat_base)[0].parameters()).dtype == torch.float32
    assert next(load_checkpoint(chat_base, dtype="bfloat16")[0].parameters()).dtype == torch.bfloat16


def test_trust_remote_code_defaults_to_false_everywhere(chat_base, monkeypatch):
    assert RunConfig().trust_remote_code is False
    calls = []
    for cls in (AutoModelForCausalLM, AutoTokenizer):
        real = cls.from_pretrained.__func__
        monkeypatch.setattr(cls, "from_pretrained", classmethod(
            lambda c, *a, _real=real, **k: calls.append(k["trust_remote_code"]) or _real(c, *a, **k)))
    load_checkpoint(chat_base)
    assert calls == [False, False]
    load_checkpoint(chat_base, trust_remote_code=True)
    assert calls[2:] == [True, True]


@pytest.fixture
def remote_code_model(tmp_path, chat_base):
    """A checkpoint whose config points at its own modeling file; importing it leaves a marker."""
    out = tmp_path / "custom"
    model, tok = AutoModelForCausalLM.from_pretrained(chat_base), AutoTokenizer.from_pretrained(chat_base)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    marker = tmp_path / "remote-code-ran"
    (out / "modeling_custom.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import Qwen2Config, Qwen2ForCausalLM\n"
        "class CustomConfig(Qwen2Config):\n    model_type = 'custom-qwen'\n"
        "class CustomForCausalLM(Qwen2ForCausalLM):\n    config_class = CustomConfig\n")
    config = json.loads((out / "config.json").read_text())
    config.update(model_type="custom-qwen", architectures=["CustomForCausalLM"],
                  auto_map={"AutoConfig": "modeling_custom.CustomConfig",
                            "AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"})
    (out / "config.json").write_text(json.dumps(config))
    return out, marker


def test_remote_code_runs_only_with_the_flag(remote_code_model, data, tmp_path):
    out, marker = remote_code_model
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}  # where transformers copies the module
    args = ["eval", out, "--task", "gsm8k", "--data", data, "--split", "test", "-k", "1", "--limit", "1",
            "--max-new-tokens", "4", "--json"]
    refused = reasonlab(*args, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    error = refused.stderr.strip().splitlines()[-1]  # (after a warning transformers prints)
    assert error.startswith(f"reasonlab: error: cannot load checkpoint {out}: ") and "--trust-remote-code" in error
    assert not marker.exists()  # its code never ran
    trusted = reasonlab(*args, "--trust-remote-code", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert marker.read_text() == "ran" and json.loads(trusted.stdout)["problems"] == 1


# -- LoRA ---------------------------------------------------------------------------------------------


def test_lora_trains_only_the_adapters_and_saves_a_plain_merged_checkpoint(chat_base, task, tmp_path):
    base, tok = load_checkpoint(chat_base)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = add_lora(base, r=4, alpha=8)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    prompter = Prompter(task, tok, "chat")
    finetune(model, tok, [(prompter(p), p.reference) for p in task.problems("train", 8)], steps=5,
             batch_size=4, lr=1e-2, seed=0)
    state = model.get_base_model().state_dict()
    original = {k.replace(".base_layer", ""): v for k, v in state.items() if "lora_" not in k}
    assert original.keys() == before.keys()
    assert all(torch.equal(original[k], before[k]) for k in before)  # every original weight is untouched...
    assert any(state[n].abs().sum() > 0 for n in state if "lora_B" in n)  # ...the adapters learned (B starts at 0)

    out = save_checkpoint(model, tok, tmp_path / "merged", {"made_by": "test"})
    files = {f.name for f in out.iterdir()}
    assert {"config.json", "model.safetensors"} <= files and not any(f.startswith("adapter") for f in files)
    assert is_lora(model)  # a merged copy was saved; training can go on with the adapters
    plain = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    ids = tok(prompter(task.problems("test")[0]), return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        assert torch.allclose(plain(ids).logits, model(input_ids=ids).logits, atol=1e-4)
    changed = {k for k, v in plain.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                "down_proj")) for k in changed)  # linear layers only


def test_lora_needs_peft_and_a_sane_rank(chat_base, data, monkeypatch):
    from engine.model import lora

    with pytest.raises(ReasonlabError, match="config field lora_alpha must be > 0"):
        make_config("ei", base=chat_base, sets=["task=gsm8k", f"data={data}", "lora_r=4", "lora_alpha=0"])
    monkeypatch.setattr(lora, "peft_available", lambda: False)
    with pytest.raises(ReasonlabError, match=r"config field lora_r needs peft: pip install 'reasonlab\[lora\]'"):
        make_config("ei", base=chat_base, sets=["task=gsm8k", f"data={data}", "lora_r=4"])


# -- training runs on the chat model -------------------------------------------------------------------


SMALL = ["max_new_tokens=24", "eval_limit=3", "eval_k=2", "sample_batch_size=64"]


def train(*args):
    return reasonlab("train", "--quiet", *[x for a in map(str, args) for x in (("--set", a) if "=" in a else (a,))])


@pytest.mark.slow
def test_expert_iteration_with_lora_on_a_chat_model(chat_base, data):
    result = train("--algo", "ei", "--base", chat_base, "--task", "gsm8k", "--data", data, *SMALL, "rounds=1",
                   "k=8", "problems_per_round=8", "sft_max_steps=4", "batch_size=4", "lr=1e-2", "lora_r=4")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished"
    with Store() as s:
        metrics = s.metrics(1).set_index("name")["value"]
        assert metrics["ei/dataset"] > 0 and metrics["ei/sft_steps"] > 0  # correct samples, fine-tuned on
        assert s.get_run(1)["config"]["task"]["data"] == str(data)  # the task spec, stored for resume
    ckpt = summary["checkpoints"][-1]["path"]
    files = set(os.listdir(ckpt))
    assert "model.safetensors" in files and not any(f.startswith("adapter") for f in files)
    assert read_meta(ckpt)["prompt_format"] == "chat"  # later evaluations use the format it trained with
    trained = AutoModelForCausalLM.from_pretrained(ckpt, local_files_only=True).state_dict()
    base = AutoModelForCausalLM.from_pretrained(chat_base, local_files_only=True).state_dict()
    changed = {k for k in base if not torch.equal(base[k], trained[k])}
    assert changed and not any("embed_tokens" in k or "norm" in k for k in changed)  # adapters only, merged

    # Resume from the stored config alone: as if the run had been stopped after round 1 of 2.
    with Store() as s:
        s.update_run(1, status="interrupted", total=2, config={**s.get_run(1)["config"], "rounds": 2})
    resumed = reasonlab("resume", "1", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    with Store() as s:
        assert s.get_run(1)["status"] == "finished" and s.checkpoints(1)["step"].tolist() == [0, 1, 2]
        round2 = s.samples(run_id=1, kind="rollout", step=2)
        task = get_task("gsm8k", data=str(data))
        assert len(round2) == 64 and set(round2["problem_id"]) <= {p.id for p in task.problems("train")}
    assert read_meta(ckpt.replace("step-00001", "step-00002"))["prompt_format"] == "chat"


@pytest.mark.slow
def test_grpo_on_a_chat_model_with_a_reasoning_gym_task(chat_base):
    pytest.importorskip("reasoning_gym")
    result = train("--algo", "grpo", "--base", chat_base, "--task", "gym", "--gym-name", "chain_sum", *SMALL,
                   "steps=1", "prompts_per_step=2", "n=2", "minibatch_size=4", "checkpoint_every=1")
    assert result.returncode == 0, result.stderr
    with Store() as s:
        assert s.get_run(1)["status"] == "finished"
        rollouts = s.samples(run_id=1, kind="rollout")
        assert len(rollouts) == 4 and set(rollouts["task"]) == {"gym"}
        assert s.checkpoints(1)["step"].tolist() == [0, 1]
