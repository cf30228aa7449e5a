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

The result equals the plain pass up to float rounding (tests/test_shared_prefix.py checks the
log-probabilities, hidden states and gradients). Anything else (other architectures, a model
wrapped for multi-process training, whose gradient sync needs its own forward) takes the plain pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from engine.algorithms.losses import entropy_from_logprobs
from engine.sampling.torch_sampler import FAST_MODEL_TYPES

if TYPE_CHECKING:
    from engine.algorithms.rollout import TokenBatch


def inner(model):
    """The transformers causal LM to run (inside a peft model), or None when this pass cannot run it."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
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
    (G, Lp) ids right-padded, prompt_len (G,), completions (B, Lc) ids right-padded, completion_len (B,))."""
    ids, total, plen = batch.input_ids, batch.attention_mask.sum(1), batch.prompt_len
    _, group = torch.unique(batch.group, return_inverse=True)
    first = torch.zeros(int(group.max()) + 1, dtype=torch.long, device=ids.device)
    first.scatter_(0, group, torch.arange(len(group), device=ids.device))  # a row of each prompt
    prompt_len = plen[first]
    lp = int(prompt_len.max())
    prompts = ids[first, :lp] * (torch.arange(lp, device=ids.device) < prompt_len[:, None])
    clen = total - plen
    lc = max(1, int(clen.max()))
    j = torch.arange(lc, device=ids.device)
    cols = (plen[:, None] + j).clamp(max=ids.shape[1] - 1)
    completions = ids.gather(1, cols) * (j < clen[:, None])
    return group, prompts, prompt_len, completions, clen


def forward_logprobs(model, batch: TokenBatch, with_hidden: bool = False, with_entropy: bool = False):
    """As rollout.forward_logprobs: (B, L-1) log-probabilities and optionally the (B, L-1)
    entropies and (B, L-1, H) last hidden states, at the completion's target positions (zero
    elsewhere). The logits stay in the completions' own layout (B, Lc, V): nothing is computed,
    copied or differentiated at a prompt's positions."""
    lm = inner(model)
    group, prompts, prompt_len, comps, clen = layout(batch)
    body, cfg = lm.model, lm.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    gqa = cfg.num_key_value_heads != cfg.num_attention_heads
    G, Lp = prompts.shape
    B, Lc = comps.shape
    dev = prompts.device
    xp, xc = body.embed_tokens(prompts), body.embed_tokens(comps)
    pos_p = torch.arange(Lp, device=dev).expand(G, Lp)
    pos_c = batch.prompt_len[:, None] + torch.arange(Lc, device=dev)
    rope_p, rope_c = body.rotary_emb(xp, pos_p), body.rotary_emb(xc, pos_c)
    # a completion position sees its prompt's real positions and the completion up to itself
    prompt_keys = torch.arange(Lp, device=dev) < prompt_len[group][:, None]  # (B, Lp)
    own = torch.ones(Lc, Lc, dtype=torch.bool, device=dev).tril()
    mask = torch.cat([prompt_keys[:, None, :].expand(B, Lc, Lp), own.expand(B, Lc, Lc)], dim=-1)[:, None]

    def qkv(attn, h, rope):
        n, t = h.shape[:2]
        q = attn.q_proj(h).view(n, t, -1, head_dim)
        k = attn.k_proj(h).view(n, t, -1, head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises queries and keys per head
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), *rope)
        return q, k, attn.v_proj(h).view(n, t, -1, head_dim).transpose(1, 2)

    for layer in body.layers:
        attn = layer.self_attn
        # 1) the prompts, causally (right-padded: a real position never sees padding)
        q, kp, vp = qkv(attn, layer.input_layernorm(xp), rope_p)
        o = F.scaled_dot_product_attention(q, kp, vp, is_causal=True, scale=attn.scaling, enable_gqa=gqa)
        xp_next = xp + attn.o_proj(o.transpose(1, 2).reshape(G, Lp, -1))
        # 2) the completions, over their prompt's keys and their own
        q, kc, vc = qkv(attn, layer.input_layernorm(xc), rope_c)
        keys, values = torch.cat([kp[group], kc], dim=2), torch.cat([vp[group], vc], dim=2)
        o = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=attn.scaling, enable_gqa=gqa)
        xc = xc + attn.o_proj(o.transpose(1, 2).reshape(B, Lc, -1))
        xp = xp_next + layer.mlp(layer.post_attention_layernorm(xp_next))
        xc = xc + layer.mlp(layer.post_attention_layernorm(xc))
    # 3) hidden states that predict each completion token: the prompt's last, then the completion's
    hp, hc = body.norm(xp), body.norm(xc)
    last = hp[group, prompt_len[group] - 1]  # (B, H)
    hidden = torch.cat([last[:, None], hc[:, :Lc - 1]], dim=1)  # (B, Lc, H)
    logp = F.log_softmax(lm.lm_head(hidden).float(), dim=-1)  # (B, Lc, V)
    lp = torch.gather(logp, 2, comps.unsqueeze(-1)).squeeze(-1)
    # back in the plain layout: completion token j of row b is target column prompt_len[b] - 1 + j
    rows, j = (torch.arange(Lc, device=dev) < clen[:, None]).nonzero(as_tuple=True)
    cols = batch.prompt_len[rows] - 1 + j
    width = batch.input_ids.shape[1] - 1

    def plain_layout(x):  # (B, Lc, ...) -> (B, L-1, ...), zero outside the completions
        return x.new_zeros(B, width, *x.shape[2:]).index_put((rows, cols), x[rows, j])

    entropy = plain_layout(entropy_from_logprobs(logp)) if with_entropy else None
    return plain_layout(lp), entropy, plain_layout(hidden) if with_hidden else None

