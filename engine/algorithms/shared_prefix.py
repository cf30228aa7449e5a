"""The policy's forward pass over rollouts, each prompt computed once for all its samples.

PPO and GRPO sample n solutions per problem, and on the built-in task a prompt is 60% of a
rollout's tokens. The plain forward pass (`model(input_ids=...)` over prompt + completion rows)
computes every prompt n times, in the update (forward and backward) and in the log-probabilities
before it. Here, for Llama-family models (the sampler's fast path: Llama, Mistral, Qwen2/3):

  1) the distinct prompts of a minibatch run through each layer once, causally;
  2) each row's completion attends to its prompt's keys and values (gathered per row, so the
     gradient of every sample flows back into the one prompt computation) and to its own;
  3) the log-probabilities of each completion token (the first from the prompt's last position),
     written back in the plain pass's (B, L-1) layout, zero elsewhere, so callers do not change.

Outside the attention, the tokens are packed: the norms, projections and MLP run on one (N, H)
matrix of the real prompt and completion tokens, never on padding (completions of one minibatch
differ in length: a fifth of its padded positions on the built-in task, and PPO's update was 1.24x
faster without them, bench/learning.py).

The result equals the plain pass up to float rounding (tests/test_shared_prefix.py checks the
log-probabilities, hidden states and gradients). Anything else (other architectures, a model
wrapped for multi-process training, whose gradient sync needs its own forward) takes the plain pass.

`causal_lm_loss` is the same packed pass for supervised fine-tuning (SFT's base build and expert
iteration's rounds): the model's own loss, without padding, and the vocabulary head only where a
label is predicted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from engine.algorithms.losses import entropy_from_logprobs
from engine.sampling.torch_sampler import FAST_MODEL_TYPES

if TYPE_CHECKING:
    from engine.algorithms.rollout import TokenBatch


def inner(model):
    """The transformers causal LM to run (inside a peft model), or None when this pass cannot run it."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return None
    if hasattr(model, "_original_forward"):  # accelerate wrapped its forward (mixed-precision autocast)
        return None
    if hasattr(model, "get_base_model"):  # peft: its wrapped (LoRA) linear layers are called as they are
        model = model.get_base_model()
    cfg = getattr(model, "config", None)
    if cfg is None or cfg.model_type not in FAST_MODEL_TYPES or not hasattr(model, "model"):
        return None
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True) is not False:
        return None  # a window shorter than the rows would mask what the plain pass masks; not modelled here
    return model


def layout(batch: TokenBatch):
    """From a right-padded prompt + completion batch (rollout.TokenBatch, its `prompt_len` and
    `group`): (group (B,) index of each row's prompt among the batch's distinct ones, prompts
    (G, Lp) ids, prompt_len (G,), completions (B, Lc) ids, completion_len (B,)). Past a prompt's or
    a completion's length the ids are whatever the rows hold there: forward_logprobs reads only
    the real positions."""
    ids, total, plen = batch.input_ids, batch.attention_mask.sum(1), batch.prompt_len
    _, group = torch.unique(batch.group, return_inverse=True)
    first = torch.zeros(int(group.max()) + 1, dtype=torch.long, device=ids.device)
    first.scatter_(0, group, torch.arange(len(group), device=ids.device))  # a row of each prompt
    prompt_len = plen[first]
    lp = int(prompt_len.max())
    prompts = ids[first, :lp]
    clen = total - plen
    lc = max(1, int(clen.max()))
    j = torch.arange(lc, device=ids.device)
    cols = (plen[:, None] + j).clamp(max=ids.shape[1] - 1)
    completions = ids.gather(1, cols)
    return group, prompts, prompt_len, completions, clen


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of (N, heads, D) queries or keys, as transformers' apply_rotary_pos_emb
    computes it (x * cos + rotate_half(x) * sin), with the halves split rather than sliced: the
    backward of a split is one cat, where each slice's fills a zero tensor the size of x."""
    x1, x2 = x.split(x.shape[-1] // 2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def _padded(t: torch.Tensor, at: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """Packed (N', heads, D) -> (n, heads, length, D), zero at the padding; `at` is where each
    packed row lies in the flattened (n, length) layout."""
    out = t.new_zeros(n * length, *t.shape[1:]).index_copy(0, at, t)
    return out.view(n, length, *t.shape[1:]).transpose(1, 2)


def _packed(o: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """Attention output (n, heads, length, D) -> (N', heads * D) at the real positions `at`."""
    return o.transpose(1, 2).reshape(-1, o.shape[1] * o.shape[3])[at]


def _layers(lm, ids: torch.Tensor, pos: torch.Tensor, attend) -> torch.Tensor:
    """The decoder over packed tokens: ids and positions (N,) -> the final norm's (N, H). The
    norms, projections and MLP run on the (N, H) matrix; `attend(qkv, attn)` takes each layer's
    (N, heads + 2 kv heads, D) queries, keys and values (rotated) and returns the packed (N, heads * D)."""
    body, cfg = lm.model, lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    x = body.embed_tokens(ids)  # (N, H)
    cos, sin = (t[0, :, None] for t in body.rotary_emb(x[None], pos[None]))  # (N, 1, D)
    for layer in body.layers:
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(-1, nh, head_dim)
        k = attn.k_proj(h).view(-1, nkv, head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises queries and keys per head
            q, k = attn.q_norm(q), attn.k_norm(k)
        qkv = torch.cat([rope(q, cos, sin), rope(k, cos, sin), attn.v_proj(h).view(-1, nkv, head_dim)], dim=1)
        x = x + attn.o_proj(attend(qkv, attn))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return body.norm(x)


def _attention(attn, q, k, v, **kw) -> torch.Tensor:
    """The layer's attention as transformers runs it: its scale, its dropout in training, GQA."""
    cfg = attn.config
    dropout = getattr(attn, "attention_dropout", 0.0) if attn.training else 0.0
    return F.scaled_dot_product_attention(q, k, v, scale=attn.scaling, dropout_p=dropout,
                                          enable_gqa=cfg.num_attention_heads != cfg.num_key_value_heads, **kw)


def forward_logprobs(model, batch: TokenBatch, with_hidden: bool = False, with_entropy: bool = False):
    """As rollout.forward_logprobs: (B, L-1) log-probabilities and optionally the (B, L-1)
    entropies and (B, L-1, H) last hidden states, at the completion's target positions (zero
    elsewhere). Every position-wise part of a layer (norms, projections, MLP) runs on the real
    tokens only, packed as one (N, H) matrix: a prompt's once, then each completion's; only the
    attention lays them out padded, (G, Lp) prompts and (B, Lc) completions. Nothing is computed,
    copied or differentiated at a prompt's positions past the attention, or at padding (a fifth
    of a minibatch's positions on the built-in task, where completions differ in length)."""
    lm = inner(model)
    group, prompts, prompt_len, comps, clen = layout(batch)
    cfg = lm.config
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    G, Lp = prompts.shape
    B, Lc = comps.shape
    dev = prompts.device
    # where the packed rows lie in the padded layouts: prompt tokens first, then completion tokens
    p_at = (torch.arange(Lp, device=dev) < prompt_len[:, None]).flatten().nonzero()[:, 0]  # (Np,)
    rows, j = (torch.arange(Lc, device=dev) < clen[:, None]).nonzero(as_tuple=True)  # (Nc,) each, row-major
    c_at = rows * Lc + j
    Np = len(p_at)
    ids = torch.cat([prompts.flatten()[p_at], comps[rows, j]])
    pos = torch.cat([p_at % Lp, batch.prompt_len[rows] + j])
    # a completion position sees its prompt's real positions and the completion up to itself
    prompt_keys = torch.arange(Lp, device=dev) < prompt_len[group][:, None]  # (B, Lp)
    own = torch.ones(Lc, Lc, dtype=torch.bool, device=dev).tril()
    mask = torch.cat([prompt_keys[:, None, :].expand(B, Lc, Lp), own.expand(B, Lc, Lc)], dim=-1)[:, None]

    def attend(qkv, attn):
        # split, not sliced: the backward of a split is one cat; each slice's would fill a zero qkv
        prompt_qkv, completion_qkv = qkv.split([Np, len(qkv) - Np])
        # 1) the prompts, causally (right-padded: a real position never sees padding)
        qp, kp, vp = _padded(prompt_qkv, p_at, G, Lp).split([nh, nkv, nkv], dim=1)
        op = _attention(attn, qp, kp, vp, is_causal=True)
        # 2) the completions, over their prompt's keys and their own
        qc, kc, vc = _padded(completion_qkv, c_at, B, Lc).split([nh, nkv, nkv], dim=1)
        keys, values = torch.cat([kp[group], kc], dim=2), torch.cat([vp[group], vc], dim=2)
        oc = _attention(attn, qc, keys, values, attn_mask=mask)
        return torch.cat([_packed(op, p_at), _packed(oc, c_at)])

    h = _layers(lm, ids, pos, attend)
    # 3) the hidden state that predicts each completion token: its prompt's last for the first,
    # else the completion's previous token (packed rows: prompt g's last is its start + length - 1)
    prompt_last = prompt_len.cumsum(0) - 1
    first = clen.cumsum(0) - clen  # each row's first completion token among the completion tokens
    hidden = h[torch.where(j == 0, prompt_last[group[rows]], Np + first[rows] + j - 1)]  # (Nc, H)
    logp = F.log_softmax(lm.lm_head(hidden).float(), dim=-1)  # (Nc, V)
    lp = logp.gather(1, ids[Np:, None])[:, 0]
    # back in the plain layout: completion token j of row b is target column prompt_len[b] - 1 + j
    cols = batch.prompt_len[rows] - 1 + j
    width = batch.input_ids.shape[1] - 1

    def plain_layout(t):  # (Nc, ...) -> (B, L-1, ...), zero outside the completions
        return t.new_zeros(B, width, *t.shape[1:]).index_put((rows, cols), t)

    entropy = plain_layout(entropy_from_logprobs(logp)) if with_entropy else None
    return plain_layout(lp), entropy, plain_layout(hidden) if with_hidden else None


def causal_lm_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`model(input_ids=..., attention_mask=..., labels=...).loss` (the mean cross-entropy of the
    labelled tokens, -100 unlabelled, each predicted from the position before it) for right-padded
    rows, computed without padding: the norms, projections and MLP on the real tokens packed as one
    (N, H) matrix, one causal attention over the rows laid out padded (right padding: a real
    position never sees it), and the vocabulary head only where a label is predicted (the
    prompts' positions and padding never reach it). Equal to the model's own loss to float
    rounding (tests/test_shared_prefix.py); a model this pass cannot run (see `inner`) computes
    its own. SFT and expert iteration's fine-tuning train through it."""
    lm = inner(model)
    real = attention_mask.bool()
    if lm is None or (real[:, 1:] & ~real[:, :-1]).any():  # padding before a token: not right-padded
        return model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    cfg = lm.config
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    B, L = input_ids.shape
    at = real.flatten().nonzero()[:, 0]  # (N,) where each real token lies in the (B, L) layout
    ids, pos = input_ids.flatten()[at], at % L

    def attend(qkv, attn):
        q, k, v = _padded(qkv, at, B, L).split([nh, nkv, nkv], dim=1)
        return _packed(_attention(attn, q, k, v, is_causal=True), at)

    h = _layers(lm, ids, pos, attend)
    # the real token at (b, i) predicts labels[b, i + 1]; packed rows are in (b, i) order
    targets = torch.cat([labels[:, 1:], labels.new_full((B, 1), -100)], dim=1).flatten()[at]
    predicts = (targets != -100).nonzero()[:, 0]
    logits = lm.lm_head(h[predicts]).float()
    return F.cross_entropy(logits, targets[predicts])
