import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from engine.errors import ReasonlabError
from engine.model.checkpoint import load_checkpoint, read_meta, save_checkpoint
from engine.model.presets import new_model
from engine.model.tokenizer import EOS, PAD, build_tokenizer, corpus
from engine.tasks import get_task

TASK = get_task("multistep")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(corpus(TASK, n=1000))


def test_tokenizer_round_trips_every_split(tokenizer):
    for text in corpus(TASK, n=800, seed=3):
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_digits_are_single_tokens(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("12 * 345 = 4140")["input_ids"])
    digits = [t for t in tokens if any(ch.isdigit() for ch in t)]
    assert digits == list("123454140")


def test_tokenizer_is_deterministic_and_has_special_tokens(tokenizer):
    again = build_tokenizer(corpus(TASK, n=1000))
    assert again.get_vocab() == tokenizer.get_vocab()
    assert tokenizer.eos_token == EOS and tokenizer.pad_token == PAD
    assert tokenizer.eos_token_id != tokenizer.pad_token_id


@pytest.mark.parametrize("preset,low,high", [("tiny", 0.5e6, 2e6), ("small", 5e6, 15e6)])
def test_preset_sizes(tokenizer, preset, low, high):
    model = new_model(preset, tokenizer)
    assert model.config.model_type == "llama"
    assert low < sum(p.numel() for p in model.parameters()) < high


def test_unknown_preset(tokenizer):
    with pytest.raises(ReasonlabError, match="unknown preset 'huge'"):
        new_model("huge", tokenizer)


def test_checkpoint_round_trip_through_auto_classes(tmp_path, tokenizer):
    model = new_model("tiny", tokenizer, seed=1)
    save_checkpoint(model, tokenizer, tmp_path / "ck", {"note": "x"})
    files = {f.name for f in (tmp_path / "ck").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not any(f.endswith(".bin") for f in files)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ck", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(tmp_path / "ck", local_files_only=True)
    text = TASK.prompt(TASK.problems("test", 1)[0])
    ids = tok(text, return_tensors="pt")["input_ids"]
    assert ids.tolist() == tokenizer(text, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert read_meta(tmp_path / "ck") == {"note": "x"}


def test_load_checkpoint_never_asks_for_hub_kernels(tmp_path, tokenizer, monkeypatch):
    """transformers 5.25 kernelizes a model by default when the `kernels` package is installed
    (TRL brings it): on a GPU it then fetched `kernels-community/rotary` from the Hub, remote code,
    and failed offline (seen on an H200, 2026-12-04). Every reasonlab load asks for none."""
    from engine.model.checkpoint import load_checkpoint

    save_checkpoint(new_model("tiny", tokenizer, seed=1), tokenizer, tmp_path / "ck", {})
    asked = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        asked.append(kwargs.get("use_kernels"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    model, _ = load_checkpoint(tmp_path / "ck")
    assert asked == [False] and not model.use_kernels


def test_load_checkpoint_errors_name_the_path(tmp_path, tokenizer):
    with pytest.raises(ReasonlabError, match=f"{tmp_path / 'nope'} does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReasonlabError, match="has no config.json"):
        load_checkpoint(tmp_path / "empty")
    ck = save_checkpoint(new_model("tiny", tokenizer), tokenizer, tmp_path / "ck")
    weights = ck / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated download / disk full
    with pytest.raises(ReasonlabError, match=f"cannot load checkpoint {ck}"):
        load_checkpoint(ck)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(ReasonlabError, match=f"cannot load checkpoint {ck}"):
        load_checkpoint(ck)
    json.loads((ck / "tokenizer_config.json").read_text())  # the rest is untouched


@settings(max_examples=60, deadline=None)
@given(pairs=st.lists(st.tuples(st.text(st.sampled_from("0123456789+-*= \nQA:."), max_size=40),
                                st.text(st.sampled_from("0123456789+-*= \nans."), max_size=40)), min_size=1, max_size=6))
def test_completion_batch_tokenizes_each_row_as_alone(tokenizer, pairs):
    """SFT's batches (tokenized a list at a time): each row is its prompt's tokens and its
    completion's, then EOS, as each tokenized alone; labels only on the completion and EOS."""
    from engine.algorithms.sft import completion_batch

    batch = completion_batch(tokenizer, *zip(*pairs))
    for i, (prompt, completion) in enumerate(pairs):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        n = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, :n].tolist() == p + c and n == len(p) + len(c)
        assert batch["labels"][i].tolist() == [-100] * len(p) + c + [-100] * (batch["labels"].shape[1] - n)


def test_sft_can_be_watched_as_it_learns_without_changing_what_it_learns(tmp_path):
    from engine.algorithms.sft import train_sft
    from engine.config import SFTConfig

    seen = []
    cfg = SFTConfig(steps=6, batch_size=4, train_problems=50)
    train_sft(cfg, tmp_path / "watched", progress=False, watch_every=3,
              on_step=lambda done, total, info: seen.append((done, total, info)))
    train_sft(cfg, tmp_path / "plain", progress=False)
    assert [(d, t) for d, t, _ in seen] == [(d, 6) for d in range(1, 7)]
    assert all(info["loss"] > 0 for _, _, info in seen)
    probes = [info["probe"] for _, _, info in seen if "probe" in info]
    assert [p["step"] for p in probes] == [3, 6]
    problem = TASK.problems("test", 1)[0]
    for p in probes:
        assert p["question"] == problem.question
        score = TASK.score(problem, p["completion"])
        assert (p["answer"], p["correct"]) == (score.answer, score.correct)
    watched, _ = load_checkpoint(tmp_path / "watched")
    plain, _ = load_checkpoint(tmp_path / "plain")
    for (name, a), (_, b) in zip(watched.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name  # decoding in between leaves training exactly as it was
