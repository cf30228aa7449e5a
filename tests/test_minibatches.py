"""Policy-gradient minibatches: rows of similar length together, trimmed to their longest row,
with log-probabilities unchanged by the trimming."""

import types

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.algorithms.rollout import batch_logprobs, forward_logprobs, minibatches, rows, token_batch


@settings(max_examples=200, deadline=None)
@given(lengths=st.lists(st.integers(1, 200), min_size=1, max_size=300), size=st.integers(1, 70),
       seed=st.integers(0, 2**31 - 1))
def test_grouped_minibatches_cover_every_row_once_and_group_by_length(lengths, size, seed):
    lengths = torch.tensor(lengths)
    batches = minibatches(len(lengths), size, torch.Generator().manual_seed(seed), lengths)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(lengths)))
    assert sum(len(b) < size for b in batches) <= 1 and all(len(b) <= size for b in batches)
    # grouped: sorted by their shortest row, no minibatch's rows overlap another's in length
    spans = sorted((int(lengths[b].min()), int(lengths[b].max())) for b in batches)
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:]))
    again = minibatches(len(lengths), size, torch.Generator().manual_seed(seed), lengths)
    assert all(torch.equal(a, b) for a, b in zip(batches, again))  # a resumed step replays them


def test_grouping_by_length_leaves_less_padding_than_random_minibatches():
    lengths = torch.tensor([10] * 48 + [100] * 16)  # a few long samples, as a weak policy rambles
    gen = torch.Generator().manual_seed(0)
    padded = lambda batches: sum(len(b) * int(lengths[b].max()) for b in batches)  # noqa: E731
    assert padded(minibatches(64, 16, gen, lengths)) < 0.5 * padded(minibatches(64, 16, gen))


def rollout(prompt: list[int], completion: list[int]):
    return types.SimpleNamespace(prompt_ids=prompt, completion=types.SimpleNamespace(token_ids=completion))


@pytest.fixture(scope="module")
def model_and_batch(tiny_checkpoint):
    from engine.model.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(tiny_checkpoint)
    model.eval()
    g = torch.Generator().manual_seed(0)
    rolls = [rollout(torch.randint(5, 40, (int(p),), generator=g).tolist(),
                     torch.randint(5, 40, (int(c),), generator=g).tolist())
             for p, c in zip(torch.randint(3, 12, (20,), generator=g), torch.randint(1, 40, (20,), generator=g))]
    return model, token_batch(rolls, tokenizer.pad_token_id, "cpu")


def test_a_trimmed_minibatch_has_the_log_probabilities_of_the_full_width_batch(model_and_batch):
    model, batch = model_and_batch
    idx = torch.tensor([3, 7, 1, 12])
    mb, t = rows(batch, idx)
    assert t == int(batch.attention_mask[idx].sum(1).max()) - 1 < batch.mask.shape[1]
    assert torch.equal(mb.mask, batch.mask[idx, :t])
    with torch.no_grad():
        full = forward_logprobs(model, batch.take(idx))[0]
        trimmed = forward_logprobs(model, mb)[0]
    m = mb.mask.bool()
    assert torch.allclose(trimmed[m], full[:, :t][m], atol=1e-5)
    assert not batch.mask[idx, t:].any()  # what was cut off was padding only


@pytest.mark.parametrize("size", [1, 3, 64])
def test_batch_logprobs_in_length_sorted_chunks_equal_one_full_pass(model_and_batch, size):
    model, batch = model_and_batch
    with torch.no_grad():
        full, _, hidden = forward_logprobs(model, batch, with_hidden=True)
    chunked, chunked_hidden = batch_logprobs(model, batch, size, with_hidden=True)
    m = batch.mask.bool()
    assert chunked.shape == full.shape and chunked_hidden.shape == hidden.shape
    assert torch.allclose(chunked[m], full[m], atol=1e-5)
    assert torch.allclose(chunked_hidden[m], hidden[m], atol=1e-4)
    assert batch_logprobs(model, batch, size)[1] is None
