"""Each prompt computed once for all its samples (engine/algorithms/shared_prefix.py): the same
log-probabilities, entropies, hidden states and gradients as the plain forward pass, on every batch
shape; and the torch sampler's log-probabilities, which GRPO's update takes as the old ones, equal
to that pass's."""

import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.algorithms import shared_prefix
from engine.algorithms.rollout import forward_logprobs, minibatches, plain_logprobs, rows, token_batch


def rollout(prompt: list[int], completion: list[int]):
    return types.SimpleNamespace(prompt_ids=prompt, completion=types.SimpleNamespace(token_ids=completion))


def make_batch(prompts, assignment, completions, pad_id):
    rolls = [rollout(prompts[g], c) for g, c in zip(assignment, completions)]
    batch = token_batch(rolls, pad_id, "cpu")
    return rows(batch, torch.arange(len(rolls)))[0]  # trimmed to the longest row, as the loops use it


def assert_same(model, mb, atol=2e-5):
    with torch.no_grad():
        plain = plain_logprobs(model, mb, with_hidden=True, with_entropy=True)
        shared = shared_prefix.forward_logprobs(model, mb, with_hidden=True, with_entropy=True)
    m = mb.mask.bool()
    for a, b in zip(plain, shared):
        assert a is not None and a.shape == b.shape
        assert torch.allclose(a[m], b[m], atol=atol, rtol=1e-4)
    assert not shared[0][~m].any() and not shared[1][~m].any()  # nothing outside the completions
    assert shared_prefix.forward_logprobs(model, mb)[1:] == (None, None)  # only what is asked for


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    from engine.model.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(tiny_checkpoint)
    return model.eval(), tokenizer


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_shared_prefix_equals_the_plain_pass_on_any_batch(tiny, data):
    model, tokenizer = tiny
    token = st.integers(5, 200)
    prompts = data.draw(st.lists(st.lists(token, min_size=1, max_size=14), min_size=1, max_size=4))
    n_rows = data.draw(st.integers(1, 12))
    assignment = data.draw(st.lists(st.integers(0, len(prompts) - 1), min_size=n_rows, max_size=n_rows))
    completions = data.draw(st.lists(st.lists(token, max_size=20), min_size=n_rows, max_size=n_rows))  # empty too
    assert shared_prefix.inner(model) is model
    assert_same(model, make_batch(prompts, assignment, completions, tokenizer.pad_token_id))


def test_two_prompts_that_look_alike_are_not_merged(tiny):
    model, tokenizer = tiny
    # the same ids as a prefix of the other, and two identical prompts in different rows
    mb = make_batch([[7, 8, 9], [7, 8, 9, 10], [7, 8, 9]], [0, 1, 2, 1, 0], [[11, 12], [13], [14, 15, 16], [], [17]],
                    tokenizer.pad_token_id)
    assert_same(model, mb)


def gradients(model, fn, mb):
    model.zero_grad(set_to_none=True)
    lp, entropy, _ = fn(model, mb, with_entropy=True)
    weights = torch.linspace(0.5, 1.5, lp.numel()).view_as(lp)  # a loss that weighs every token differently
    ((lp - 0.3 * entropy) * mb.mask * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def random_batch(pad_id, vocab, seed=0, groups=4, n=4):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(5, vocab, (int(k),), generator=g).tolist() for k in torch.randint(2, 12, (groups,), generator=g)]
    completions = [torch.randint(5, vocab, (int(k),), generator=g).tolist()
                   for k in torch.randint(0, 16, (groups * n,), generator=g)]
    return make_batch(prompts, [i // n for i in range(groups * n)], completions, pad_id)


def assert_same_gradients(model, mb):
    plain, shared = gradients(model, plain_logprobs, mb), gradients(model, shared_prefix.forward_logprobs, mb)
    assert plain.keys() == shared.keys() and plain
    for name in plain:
        scale = plain[name].abs().max().clamp(min=1e-8)
        assert ((plain[name] - shared[name]).abs().max() / scale) < 1e-4, name


def test_gradients_equal_the_plain_pass(tiny):
    model, tokenizer = tiny
    assert_same_gradients(model.train(), random_batch(tokenizer.pad_token_id, 200))
    model.eval()


def test_each_layer_computes_the_real_tokens_only(tiny):
    """The norms, projections and MLP see each prompt's real tokens once and each completion's
    real tokens, none of the padding that completions of unequal length leave in a minibatch."""
    model, tokenizer = tiny
    prompts, completions = [[7, 8, 9, 10, 11], [12, 13]], [[20] * 9, [21], [], [22, 23, 24], [25] * 6]
    mb = make_batch(prompts, [0, 0, 0, 1, 1], completions, tokenizer.pad_token_id)
    seen = []
    hook = model.model.layers[0].mlp.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[:-1]))
    try:
        with torch.no_grad():
            shared_prefix.forward_logprobs(model, mb)
    finally:
        hook.remove()
    real = sum(map(len, prompts)) + sum(map(len, completions))
    assert [s.numel() for s in seen] == [real]  # padded, the prompts alone were 2 x 5 and the completions 5 x 9
    assert_same(model, mb)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), heads=st.integers(1, 4), half=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_rope_equals_transformers_rotary_embedding(n, heads, half, seed):
    """shared_prefix.rope on (N, heads, D) is transformers' apply_rotary_pos_emb, values and
    gradients, to the bit."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, heads, 2 * half, generator=g, requires_grad=True)
    angles = torch.randn(n, half, generator=g).repeat(1, 2)  # (N, D): transformers repeats the halves
    cos, sin = angles.cos(), angles.sin()
    ours = shared_prefix.rope(x, cos[:, None], sin[:, None])
    (ours_grad,) = torch.autograd.grad(ours, x, ours.detach() ** 2)
    theirs = apply_rotary_pos_emb(x.transpose(0, 1)[None], x.transpose(0, 1)[None], cos[None], sin[None])[0]
    theirs = theirs[0].transpose(0, 1)
    (theirs_grad,) = torch.autograd.grad(theirs, x, theirs.detach() ** 2)
    assert torch.equal(ours, theirs) and torch.equal(ours_grad, theirs_grad)


def test_the_backward_slices_nothing(tiny):
    """The graph holds splits, never slices: a slice's backward fills a zero tensor the size of
    what it was cut from (q, k and v of every token, twice a layer, before), a split's is one cat."""
    model, tokenizer = tiny
    mb = random_batch(tokenizer.pad_token_id, 200)
    logprobs = shared_prefix.forward_logprobs(model.train(), mb)[0]
    model.eval()
    seen, todo = set(), [logprobs.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_fn for next_fn, _ in node.next_functions)
    names = {type(node).__name__ for node in seen}
    assert "SplitWithSizesBackward0" in names and "SliceBackward0" not in names


def sft_batch(prompts, completions, pad_id):
    """Right-padded rows as sft.completion_batch makes them: labels -100 on the prompt and padding."""
    rows = [p + c for p, c in zip(prompts, completions)]
    width = max(map(len, rows))
    return {"input_ids": torch.tensor([r + [pad_id] * (width - len(r)) for r in rows]),
            "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
            "labels": torch.tensor([[-100] * len(p) + c + [-100] * (width - len(p) - len(c))
                                    for p, c in zip(prompts, completions)])}


def assert_same_loss(model, inputs):
    """causal_lm_loss equals the model's own loss, and so do their gradients."""
    params = [p for p in model.parameters() if p.requires_grad]
    losses, grads = [], []
    for fn in (lambda: model(**inputs).loss, lambda: shared_prefix.causal_lm_loss(model, **inputs)):
        loss = fn()
        losses.append(loss.item())
        grads.append(torch.autograd.grad(loss, params))
    assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[0])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_causal_lm_loss_equals_the_models_own_on_any_batch(tiny, data):
    """SFT's packed loss: rows of any lengths, a label on one token or on all but the first."""
    model, tokenizer = tiny
    token = st.integers(5, 200)
    n = data.draw(st.integers(1, 6))
    prompts = data.draw(st.lists(st.lists(token, min_size=1, max_size=12), min_size=n, max_size=n))
    completions = data.draw(st.lists(st.lists(token, min_size=1, max_size=16), min_size=n, max_size=n))
    inputs = sft_batch(prompts, completions, tokenizer.pad_token_id)
    assert_same_loss(model.train(), inputs)
    # left-padded rows (one causal attention would let a token see the padding before it) take
    # the model's own pass
    shift = (inputs["attention_mask"] == 0).sum(1)
    left = {k: torch.stack([row.roll(int(n)) for row, n in zip(v, shift)]) for k, v in inputs.items()}
    assert_same_loss(model, left)
    model.eval()


def test_a_chat_model_with_grouped_query_heads_and_lora_adapters(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.model.lora import add_lora
    from tests.data_files import build_chat_model

    path = build_chat_model(tmp_path / "chat", ["12 + 30 = 42", "the answer is 7"], heads=4)  # Qwen2, 2 kv heads
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    mb = random_batch(tokenizer.pad_token_id, len(tokenizer), seed=1)
    assert shared_prefix.inner(model) is model
    assert_same_loss(model.train(), sft_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13, 14]], tokenizer.pad_token_id))
    assert_same(model.eval(), mb)
    assert_same_gradients(model.train(), mb)
    lora = add_lora(model, r=4, alpha=8)
    with torch.no_grad():  # adapters that change the output (B starts at 0)
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    assert shared_prefix.inner(lora) is lora.get_base_model()
    assert_same(lora.eval(), mb)
    assert_same_loss(lora.train(), sft_batch([[5, 6, 7], [8]], [[9, 10], [11, 12, 13, 14]], tokenizer.pad_token_id))
    grads = gradients(lora.train(), shared_prefix.forward_logprobs, mb)
    assert grads and all("lora_" in name for name in grads)  # only the adapters train
    plain = gradients(lora, plain_logprobs, mb)
    assert all(torch.allclose(grads[k], plain[k], atol=1e-5, rtol=1e-3) for k in plain)


def test_other_architectures_take_the_plain_pass():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    assert shared_prefix.inner(model) is None
    mb = random_batch(0, 64)
    with torch.no_grad():
        assert torch.equal(forward_logprobs(model, mb)[0], plain_logprobs(model, mb)[0])
    inputs = sft_batch([[5, 6], [7]], [[8, 9, 10], [11]], 0)
    with torch.no_grad():
        assert torch.equal(shared_prefix.causal_lm_loss(model, **inputs), model(**inputs).loss)
    ddp_like = torch.nn.parallel.DistributedDataParallel.__new__(torch.nn.parallel.DistributedDataParallel)
    assert shared_prefix.inner(ddp_like) is None  # its gradient sync needs its own forward


def test_a_model_whose_forward_accelerate_wrapped_takes_its_own_forward(tiny_checkpoint):
    """Under `accelerate launch --mixed_precision`, prepare wraps the model's forward in autocast:
    the packed pass, which calls the modules, would run outside it. (In a process of its own:
    accelerate's state is one per process, and this one's is set up by other tests.)"""
    import subprocess
    import sys

    code = f"""
from accelerate import Accelerator
from engine.algorithms import shared_prefix
from engine.model.checkpoint import load_checkpoint
model = load_checkpoint({str(tiny_checkpoint)!r})[0]
assert shared_prefix.inner(model) is model
prepared = Accelerator(cpu=True, mixed_precision="bf16", device_placement=False).prepare(model)
assert prepared.forward != prepared._original_forward, "accelerate no longer wraps forward this way"
print(shared_prefix.inner(prepared) is None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True"]


def test_adamw_is_fused_and_steps_as_the_loop_does():
    from engine.algorithms.optim import adamw

    torch.manual_seed(0)
    weights = [torch.randn(7, 5, requires_grad=True), torch.randn(5, requires_grad=True)]
    copies = [w.detach().clone().requires_grad_() for w in weights]
    fused = adamw(weights, lr=1e-2, weight_decay=0.1)
    loop = torch.optim.AdamW(copies, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), foreach=False)
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    for step in range(5):
        for opt, ws in ((fused, weights), (loop, copies)):
            opt.zero_grad()
            (ws[0].sin().sum() * (step + 1) + (ws[1] ** 2).sum()).backward()
            opt.step()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(weights, copies))
    assert not adamw([torch.zeros(2, device="meta", requires_grad=True)], lr=1e-3).defaults["fused"]


@settings(max_examples=150, deadline=None)
@given(groups=st.integers(1, 40), n=st.sampled_from([1, 2, 4, 8]), per=st.integers(1, 8),
       seed=st.integers(0, 2**31 - 1), data=st.data())
def test_minibatches_keep_a_prompts_rows_together(groups, n, per, seed, data):
    rows_ = groups * n
    lengths = torch.tensor(data.draw(st.lists(st.integers(2, 90), min_size=rows_, max_size=rows_)))
    group = torch.arange(groups).repeat_interleave(n)[torch.randperm(rows_, generator=torch.Generator().manual_seed(1))]
    size = n * per  # whole groups fit
    batches = minibatches(rows_, size, torch.Generator().manual_seed(seed), lengths, group)
    assert sorted(torch.cat(batches).tolist()) == list(range(rows_))
    assert all(len(b) <= size for b in batches) and sum(len(b) < size for b in batches) <= 1
    home = {}
    for i, b in enumerate(batches):
        for g in group[b].tolist():
            assert home.setdefault(g, i) == i  # every row of a prompt in one minibatch
    again = minibatches(rows_, size, torch.Generator().manual_seed(seed), lengths, group)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # a resumed step replays them


@pytest.mark.parametrize("temperature, top_p, stop, fast", [(1.0, 1.0, (), True), (0.7, 0.9, ("\n",), True),
                                                             (1.0, 1.0, ("\n",), False)])
def test_the_samplers_log_probabilities_and_hidden_states_equal_the_forward_pass(tiny, temperature, top_p, stop,
                                                                                 fast):
    """PPO's and GRPO's updates take them as the old log-probabilities, and PPO's old values read
    the hidden states (PolicyRun.old_logprobs): they must be the raw distribution's (not the
    tempered or truncated one drawn from) and the pass's last hidden states, token for token, also
    for completions cut at a stop string."""
    from engine.algorithms.rollout import batch_logprobs, sampled_hidden, sampled_logprobs
    from engine.sampling.torch_sampler import TorchSampler

    model, tokenizer = tiny
    prompts = ["Question: 12 + 30 = ?\nAnswer:", "Question: what is 7 * 6?\nAnswer:", "Q: 5 - 9\nA:"]
    out = TorchSampler(model, tokenizer, fast=fast, keep_hidden=True).sample(
        prompts, n=4, temperature=temperature, top_p=top_p, max_new_tokens=24, seed=3, stop=stop)
    rolls = [types.SimpleNamespace(prompt_ids=tokenizer(p, add_special_tokens=False)["input_ids"], completion=c)
             for p, comps in zip(prompts, out) for c in comps]
    batch = token_batch(rolls, tokenizer.pad_token_id, "cpu")
    sampled, computed = sampled_logprobs(rolls, batch), batch_logprobs(model, batch, 5, with_hidden=True)
    m = batch.mask.bool()
    assert m.sum() > 30 and sampled[m].min() < -0.5  # enough tokens, and not all near-certain ones
    assert torch.allclose(sampled[m], computed[0][m], atol=1e-4)
    assert not sampled[~m].any()
    hidden = sampled_hidden(rolls, batch)
    assert hidden.shape == computed[1].shape
    assert torch.allclose(hidden[m], computed[1][m], atol=1e-4) and not hidden[~m].any()
    assert TorchSampler(model, tokenizer).sample(prompts[:1], max_new_tokens=4)[0][0].hidden is None  # unasked
