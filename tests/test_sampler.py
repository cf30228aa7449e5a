import copy

import pytest
import torch

from engine.sampling.torch_sampler import TorchSampler
from engine.tasks import get_task

TASK = get_task("multistep")
PROMPTS = [TASK.prompt(p) for p in TASK.problems("test", 12)]


def generate_greedy(model, tokenizer, prompts, max_new_tokens):
    """Reference: transformers' own generate, greedy, cut after the first stop token."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    rows = []
    for row in out[:, enc["input_ids"].shape[1]:].tolist():
        if tokenizer.eos_token_id in row:
            row = row[: row.index(tokenizer.eos_token_id) + 1]
        rows.append(row)
    return rows


@pytest.mark.parametrize("fast", [True, False])
def test_greedy_equals_generate_one_prompt_at_a_time(tiny_model, fast):
    model, tokenizer = tiny_model
    sampler = TorchSampler(model, tokenizer, fast=fast)
    for prompt in PROMPTS:
        ours = sampler.sample([prompt], n=1, temperature=0, max_new_tokens=48)[0][0].token_ids
        assert ours == generate_greedy(model, tokenizer, [prompt], 48)[0]


@pytest.mark.parametrize("fast", [True, False])
def test_greedy_equals_generate_on_a_padded_batch(tiny_model, fast):
    model, tokenizer = tiny_model
    ours = TorchSampler(model, tokenizer, fast=fast).sample(PROMPTS, n=1, temperature=0, max_new_tokens=48)
    assert [c[0].token_ids for c in ours] == generate_greedy(model, tokenizer, PROMPTS, 48)


def test_lengths_vary_and_finish_reasons_are_right(tiny_model):
    model, tokenizer = tiny_model
    out = TorchSampler(model, tokenizer).sample(PROMPTS, n=4, temperature=1.0, max_new_tokens=40, seed=0)
    assert [len(c) for c in out] == [4] * len(PROMPTS)
    flat = [c for cs in out for c in cs]
    assert len({len(c.token_ids) for c in flat}) > 3  # rows really stopped at different steps
    for c in flat:
        assert len(c.logprobs) == len(c.token_ids) and all(lp <= 0 for lp in c.logprobs)
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in c.token_ids[:-1]
        else:
            assert c.finish_reason == "length" and len(c.token_ids) == 40
        assert c.text == tokenizer.decode(c.token_ids, skip_special_tokens=True)


def test_logprobs_match_a_full_forward_pass(tiny_model):
    """The cache is right if each token's logprob equals the one from recomputing the whole text."""
    model, tokenizer = tiny_model
    out = TorchSampler(model, tokenizer).sample(PROMPTS[:3], n=3, temperature=1.0, max_new_tokens=40, seed=1)
    for prompt, comps in zip(PROMPTS[:3], out):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for c in comps:
            ids = torch.tensor([p_ids + c.token_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, len(p_ids) - 1:-1].float(), -1)
            expected = logp.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(c.logprobs), expected, atol=1e-4)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("temperature, top_p, drawn_at", [
    (1.0, 1.0, 1.0),
    (0.7, 0.9, 0.7),  # the distribution at the sampling temperature, before top-p truncation
    (0.0, 1.0, 1.0),  # greedy: the raw distribution's (temperature 1), as logprobs are
])
def test_entropies_match_a_full_forward_pass(tiny_model, fast, temperature, top_p, drawn_at):
    """Each token's entropy, in nats, equals the one of softmax(logits / T) recomputed from the whole text."""
    model, tokenizer = tiny_model
    out = TorchSampler(model, tokenizer, fast=fast).sample(PROMPTS[:3], n=3, temperature=temperature, top_p=top_p,
                                                           max_new_tokens=40, seed=1)
    for prompt, comps in zip(PROMPTS[:3], out):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for c in comps:
            with torch.no_grad():
                logits = model(torch.tensor([p_ids + c.token_ids])).logits[0, len(p_ids) - 1:-1].float()
            expected = torch.distributions.Categorical(logits=logits / drawn_at).entropy()
            assert len(c.entropies) == len(c.token_ids)
            assert torch.allclose(torch.tensor(c.entropies), expected, atol=1e-4)


def test_same_seed_same_samples_other_seed_other_samples(tiny_model):
    model, tokenizer = tiny_model
    sampler = TorchSampler(model, tokenizer)

    def run(seed):
        return [[c.token_ids for c in cs] for cs in sampler.sample(PROMPTS[:4], n=8, max_new_tokens=40, seed=seed)]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_chunking_by_batch_size_keeps_prompt_order(tiny_model):
    model, tokenizer = tiny_model
    greedy = TorchSampler(model, tokenizer, batch_size=512).sample(PROMPTS, n=1, temperature=0, max_new_tokens=40)
    small = TorchSampler(model, tokenizer, batch_size=3).sample(PROMPTS, n=5, temperature=0, max_new_tokens=40)
    for g, s in zip(greedy, small):
        assert len(s) == 5 and all(c.token_ids == g[0].token_ids for c in s)


def assert_same_completions(a, b):
    """The same tokens, text and ending; log-probabilities and entropies to float rounding (a
    row's logits can round differently in a batch of another size)."""
    assert [(c.token_ids, c.text, c.finish_reason) for c in a] == [(c.token_ids, c.text, c.finish_reason) for c in b]
    for x, y in zip(a, b):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-5) and x.entropies == pytest.approx(y.entropies, abs=1e-5)


@pytest.mark.parametrize("fast, batch_size, n, temperature, top_p, stop", [
    (True, 512, 8, 1.0, 1.0, ()),
    (True, 10, 4, 0.7, 0.9, ()),  # several batches, a sampled temperature
    (True, 3, 5, 1.0, 1.0, ("\n",)),  # n split over chunks; a stop string
    (True, 512, 3, 0.0, 1.0, ()),  # greedy samples
    (False, 16, 4, 1.0, 0.95, ()),  # the general engine
])
def test_the_greedy_row_in_the_samples_batch_changes_no_sample(tiny_model, fast, batch_size, n, temperature, top_p,
                                                                stop):
    """Evaluation decodes the greedy completion with the samples (sample_with_greedy): the
    samples must be exactly those of a call without it, and the greedy one that of a greedy call.
    The model runs in float64 here. In float32 a row's logits round differently in a batch of
    another size (by 2e-6 on a model trained on 2026-12-05), and a uniform that fell between two
    tokens' cumulative probabilities 6e-8 apart took the other token. In float64 they differ by
    about 1e-15 and round to the same float32 logits, so a token that differs can only be a draw
    out of step, which is what this checks."""
    from engine.sampling.base import sample_with_greedy

    model, tokenizer = tiny_model
    model = copy.deepcopy(model).double()
    sampler = TorchSampler(model, tokenizer, batch_size=batch_size, fast=fast)
    args = dict(temperature=temperature, top_p=top_p, max_new_tokens=48, seed=11, stop=stop)
    samples = sampler.sample(PROMPTS, n=n, **args)
    greedy = sampler.sample(PROMPTS, n=1, temperature=0, max_new_tokens=48, stop=stop)
    both = sampler.sample(PROMPTS, n=n, greedy=True, **args)
    assert [len(c) for c in both] == [n + 1] * len(PROMPTS)
    for s, g, b in zip(samples, greedy, both):
        assert_same_completions(b[1:], s)
        assert_same_completions(b[:1], g)
    assert [(g, s) for g, s in sample_with_greedy(sampler, PROMPTS, n, **args)] == [(b[0], b[1:]) for b in both]


def test_tiny_top_p_is_greedy(tiny_model):
    model, tokenizer = tiny_model
    sampler = TorchSampler(model, tokenizer)
    greedy = sampler.sample(PROMPTS[:4], n=1, temperature=0, max_new_tokens=40)
    nucleus = sampler.sample(PROMPTS[:4], n=3, temperature=1.0, top_p=1e-6, max_new_tokens=40, seed=3)
    for g, cs in zip(greedy, nucleus):
        assert all(c.token_ids == g[0].token_ids for c in cs)


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(temperature=-1), dict(top_p=0), dict(max_new_tokens=0)])
def test_bad_arguments(tiny_model, kwargs):
    model, tokenizer = tiny_model
    with pytest.raises(ValueError):
        TorchSampler(model, tokenizer).sample(PROMPTS[:1], **kwargs)


# -- stop strings -------------------------------------------------------------------------------


def test_cut_at_the_first_of_several_stop_strings():
    from engine.sampling.base import cut_at_stop

    assert cut_at_stop("a = 1\nQuestion: b", ["Question:", "\n"]) == ("a = 1", True)
    assert cut_at_stop("a = 1", ["Question:"]) == ("a = 1", False)
    assert cut_at_stop("a = 1", []) == ("a = 1", False)


@pytest.mark.parametrize("stop", [["="], ["\n", "#"]])
def test_a_stop_string_ends_a_completion_where_it_first_appears(tiny_model, stop):
    """Greedy decoding with a stop string gives the same completion as without it, cut: the text
    before the stop string, the fewest tokens whose text holds it, their logprobs."""
    model, tokenizer = tiny_model
    sampler = TorchSampler(model, tokenizer)
    full = sampler.sample(PROMPTS, n=1, temperature=0, max_new_tokens=48)
    cut = sampler.sample(PROMPTS, n=1, temperature=0, max_new_tokens=48, stop=stop)
    stopped = 0
    for [f], [c] in zip(full, cut):
        hit = [f.text.find(s) for s in stop if s in f.text]
        # (logprobs within float noise: rows that stop early change the batch the others decode in)
        if not hit:  # the stop string never comes: nothing changes
            assert (c.token_ids, c.text, c.finish_reason) == (f.token_ids, f.text, f.finish_reason)
            assert torch.allclose(torch.tensor(c.logprobs), torch.tensor(f.logprobs), atol=1e-5)
            continue
        stopped += 1
        assert c.text == f.text[:min(hit)] and c.finish_reason == "stop"
        assert c.token_ids == f.token_ids[:len(c.token_ids)]
        assert torch.allclose(torch.tensor(c.logprobs), torch.tensor(f.logprobs[:len(c.token_ids)]), atol=1e-5)
        assert torch.allclose(torch.tensor(c.entropies), torch.tensor(f.entropies[:len(c.token_ids)]), atol=1e-5)
        decoded = tokenizer.decode(c.token_ids, skip_special_tokens=True)
        shorter = tokenizer.decode(c.token_ids[:-1], skip_special_tokens=True)
        assert any(s in decoded for s in stop) and not any(s in shorter for s in stop)
    assert stopped >= len(PROMPTS) // 2  # the strings are common in solutions: the cut really ran


def test_sampling_with_a_stop_string_stops_early_and_keeps_samples_apart(tiny_model):
    model, tokenizer = tiny_model
    out = TorchSampler(model, tokenizer).sample(PROMPTS[:4], n=6, max_new_tokens=64, seed=2, stop=["\n"])
    for comps in out:
        assert len(comps) == 6
        for c in comps:
            assert "\n" not in c.text and len(c.logprobs) == len(c.token_ids)
            assert c.finish_reason == "stop" or len(c.token_ids) == 64
    # a first line is a few tokens: far fewer than the 64 allowed
    assert max(len(c.token_ids) for cs in out for c in cs) < 32


# -- cancel -------------------------------------------------------------------------------------


def test_a_cancel_set_after_the_first_batch_stops_sampling_before_the_next(tiny_model, monkeypatch):
    """A run's stop signal reaches the sampler between batches: the rest are never decoded."""
    import threading

    from engine.sampling.base import Cancelled

    model, tokenizer = tiny_model
    cancel = threading.Event()
    sampler = TorchSampler(model, tokenizer, batch_size=4, cancel=cancel)  # 12 prompts x n=2: 6 batches
    batches = []
    real = sampler._batch

    def one_batch(*args, **kwargs):
        batches.append(args[0])
        out = real(*args, **kwargs)
        cancel.set()  # e.g. SIGTERM, or the job's poll of `reasonlab cancel`, while this batch decoded
        return out

    monkeypatch.setattr(sampler, "_batch", one_batch)
    with pytest.raises(Cancelled):
        sampler.sample(PROMPTS, n=2, max_new_tokens=24, seed=0)
    assert len(batches) == 1


def test_a_cancel_stops_a_batch_within_a_decode_step(tiny_model, monkeypatch):
    import threading

    from engine.sampling.base import Cancelled

    model, tokenizer = tiny_model
    cancel = threading.Event()
    sampler = TorchSampler(model, tokenizer, cancel=cancel)
    steps = []
    real = TorchSampler._choose

    def choose(*args):
        steps.append(1)
        if len(steps) == 3:
            cancel.set()
        return real(*args)

    monkeypatch.setattr(sampler, "_choose", choose)
    with pytest.raises(Cancelled):  # of up to 200 decode steps, the third is the last
        sampler.sample(PROMPTS[:2], n=4, max_new_tokens=200, seed=0, stop=["never appears"])
    assert len(steps) == 3


def test_an_unset_cancel_changes_no_sample(tiny_model):
    import threading

    model, tokenizer = tiny_model
    plain = TorchSampler(model, tokenizer, batch_size=4).sample(PROMPTS, n=2, max_new_tokens=24, seed=5)
    watched = TorchSampler(model, tokenizer, batch_size=4, cancel=threading.Event()).sample(
        PROMPTS, n=2, max_new_tokens=24, seed=5)
    assert [[c.token_ids for c in cs] for cs in plain] == [[c.token_ids for c in cs] for cs in watched]


def test_a_decode_step_reads_the_prompt_cache_without_copying_it(tiny_model):
    """The prompts' keys and values are read at every decode step, by each layer. Kept as the
    rotary embedding leaves them (a transposed view), each read made a copy of them: 15% of the
    sampling time at 64 prompts x 4. They are made contiguous once, at prefill: a sample() call
    copies them 2 x layers times, however many steps it decodes."""
    from torch.profiler import ProfilerActivity, profile

    model, tokenizer = tiny_model
    cfg = model.config
    prompts, n, steps = PROMPTS[:4], 4, 12
    lp = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)["input_ids"].shape[1]
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    cache = [len(prompts), cfg.num_key_value_heads, lp, head_dim]
    transposed = [*cache[:2], head_dim, lp]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        out = TorchSampler(model, tokenizer).sample(prompts, n=n, max_new_tokens=steps, seed=0, stop=["never"])
    assert max(len(c.token_ids) for cs in out for c in cs) == steps  # it decoded every step
    copies = [e for e in prof.events() if e.name == "aten::copy_" and e.input_shapes
              and list(e.input_shapes[0]) in (cache, transposed)]
    assert len(copies) <= 2 * cfg.num_hidden_layers
