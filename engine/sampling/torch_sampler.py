"""Token-level sampler for transformers models on CPU or GPU, with a KV cache.

For each batch of prompts:
  1) prefill: the prompts, left-padded, run through the model once;
  2) fork: n rows per prompt, sharing its prompt cache (no prefill per sample);
  3) decode: one token per step for every live row (temperature, top-p, logprobs, entropy);
  4) compact: rows that have stopped are dropped from the batch, so short solutions stop costing.

Llama-family models (Llama, Mistral, Qwen2/3) run through `_StaticKV`: a cache preallocated once
per batch and a lean forward pass over the model's own modules, which avoids the per-step Python
cost of the general `model(...)` call. Any other causal LM runs through `_HFCache`, the model's own
forward with a `DynamicCache`. Both are checked against `model.generate` in the tests.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from engine.sampling.base import (Completion, check_cancel, check_sampling_args, cut_at_stop, stop_at_string,
                                  stop_token_ids)

FAST_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3"}
STOP_CHECK_EVERY = 8  # decode steps between looks for stop strings in the live rows' text


class _StaticKV:
    """Prompt keys/values stored once per prompt, generated ones per row, in preallocated buffers.

    The n samples of a prompt never copy its cache: in decode, their queries are stacked into one
    matrix per prompt and attend to the shared prompt keys in a single GEMM (prefix-shared
    attention), and to their own generated keys per row. Reading a replicated prompt cache for
    every row was the memory traffic that bounded decoding speed.
    """

    def __init__(self, model, capacity: int, keep_hidden: bool = False):  # last_hidden is always at hand
        cfg = model.config
        self.body, self.head = model.model, model.lm_head
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.gqa = cfg.num_key_value_heads != cfg.num_attention_heads
        self.capacity = capacity
        self.prefix = None  # per layer (keys, values) of the prompts: (P, Hkv, Lp, D)
        self.prefix_real = None  # (P, Lp) True where the prompt position is a real token
        self.k = self.v = None  # per layer, generated keys/values (B, Hkv, capacity - Lp, D)
        self.group = self.slot = None  # (B,) prompt of each row, and its place among that prompt's rows
        self.prompt_pad = None  # (B, 1, 1, Lp) True where a row's prompt position is padding
        self.t = 0  # generated positions filled
        self.last_hidden = None  # (B, H): the last position's hidden state after the final norm

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """ids, positions, real: (B, T) -> logits of the last position (B, V) in float32."""
        B, T = ids.shape
        x = self.body.embed_tokens(ids)
        cos, sin = self.body.rotary_emb(x, positions)
        prefill = self.prefix is None
        if not prefill:  # (B, 1, 1, Lp) prompt padding of each row, shared by all layers
            self.prompt_pad = ~self.prefix_real[self.group][:, None, None, :]
        else:
            self.prefix, self.prefix_real = [], real
            # (P, 1, T, T): a query sees real keys at or before it; a pad query sees itself, so no
            # softmax row is empty (an empty row is NaN, and NaN times a zero weight is still NaN).
            eye = torch.eye(T, dtype=torch.bool, device=ids.device)
            mask = (real[:, None, None, :] & torch.ones_like(eye).tril()) | eye
        for i, layer in enumerate(self.body.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(B, T, -1, self.head_dim)
            k = attn.k_proj(h).view(B, T, -1, self.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3 normalises queries and keys per head
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k = apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
            v = attn.v_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
            if prefill:
                # read by every decode step: stored contiguous (rotary leaves k a transposed view, and
                # each matmul over it would copy it again)
                k, v = k.contiguous(), v.contiguous()
                self.prefix.append((k, v))
                o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling, enable_gqa=self.gqa)
            else:
                self.k[i][:, :, self.t] = k[:, :, 0]
                self.v[i][:, :, self.t] = v[:, :, 0]
                o = self._decode_attention(i, q, attn.scaling)
            x = x + attn.o_proj(o.transpose(1, 2).reshape(B, T, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        if not prefill:
            self.t += 1
        self.last_hidden = self.body.norm(x[:, -1])
        return self.head(self.last_hidden).float()

    def _per_prompt(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, Hkv, G, X) per row -> (P, Hkv, n*G, X): each prompt's rows stacked, empty slots zero."""
        B, Hk, G, X = rows.shape
        P, n = len(self.prefix_real), self.n
        out = rows.new_zeros(P, n, Hk, G, X)
        out[self.group, self.slot] = rows
        return out.permute(0, 2, 1, 3, 4).reshape(P, Hk, n * G, X)

    def _per_row(self, stacked: torch.Tensor, G: int) -> torch.Tensor:
        """Inverse of _per_prompt: (P, Hkv, n*G, X) -> (B, Hkv, G, X)."""
        P, Hk, _, X = stacked.shape
        return stacked.view(P, Hk, self.n, G, X).permute(0, 2, 1, 3, 4)[self.group, self.slot]

    def _decode_attention(self, i: int, q: torch.Tensor, scale: float) -> torch.Tensor:
        """q (B, H, 1, D) -> attention output (B, H, 1, D) over prompt and generated keys."""
        B, H, _, D = q.shape
        G = H // self.kv_heads  # query head h uses kv head h // G
        q = q.view(B, self.kv_heads, G, D)
        keys, values = self.prefix[i]
        # 1) scores against the shared prompt keys (one GEMM per prompt) and own generated keys
        prompt_scores = self._per_row(self._per_prompt(q) @ keys.transpose(-1, -2), G)  # (B, Hkv, G, Lp)
        prompt_scores = prompt_scores.masked_fill(self.prompt_pad, float("-inf"))
        own_scores = q @ self.k[i][:, :, : self.t + 1].transpose(-1, -2)  # (B, Hkv, G, t)
        # 2) one softmax over both parts
        weights = (torch.cat([prompt_scores, own_scores], dim=-1) * scale).softmax(-1)
        w_prompt, w_own = weights.split([prompt_scores.shape[-1], own_scores.shape[-1]], dim=-1)
        # 3) weighted values, again the prompt part per prompt
        out = self._per_row(self._per_prompt(w_prompt) @ values, G) + w_own @ self.v[i][:, :, : self.t + 1]
        return out.reshape(B, H, 1, D)

    def fork(self, n: int) -> None:
        """After prefill: n rows per prompt (row r is sample r % n of prompt r // n), sharing its keys."""
        P = len(self.prefix_real)
        self.n = n
        self.group = torch.arange(P, device=self.prefix_real.device).repeat_interleave(n)
        self.slot = torch.arange(P * n, device=self.prefix_real.device) % n
        keys = self.prefix[0][0]
        shape = (P * n, self.kv_heads, self.capacity - keys.shape[2], self.head_dim)
        self.k = [keys.new_empty(shape) for _ in self.prefix]
        self.v = [keys.new_empty(shape) for _ in self.prefix]

    def rows(self, index: torch.Tensor) -> None:
        """Keep only the rows in `index` (generated keys copied, prompt keys untouched)."""
        self.group, self.slot = self.group[index], self.slot[index]
        for cache in (self.k, self.v):
            for i, old in enumerate(cache):
                new = old.new_empty((len(index), *old.shape[1:]))
                new[:, :, : self.t] = old[index, :, : self.t]
                cache[i] = new


class _HFCache:
    """Any causal LM through its own forward and a DynamicCache."""

    def __init__(self, model, capacity: int, keep_hidden: bool = False):
        self.model, self.cache, self.mask = model, DynamicCache(config=model.config), None
        self.keep_hidden, self.last_hidden = keep_hidden, None
        # transformers 5.24 renamed the forward's `past_key_values` to `cache` (vLLM pins older ones)
        self.cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        self.mask = real.long() if self.mask is None else torch.cat([self.mask, real.long()], dim=1)
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, output_hidden_states=self.keep_hidden, **{self.cache_arg: self.cache})
        self.last_hidden = out.hidden_states[-1][:, -1] if self.keep_hidden else None
        return out.logits[:, -1].float()

    def fork(self, n: int) -> None:
        """After prefill: n rows per prompt (row r is sample r % n of prompt r // n)."""
        self.rows(torch.arange(len(self.mask), device=self.mask.device).repeat_interleave(n))

    def rows(self, index: torch.Tensor) -> None:
        self.mask = self.mask[index]
        for layer in self.cache.layers:  # DynamicLayer holds keys/values as (B, H, T, D)
            layer.keys, layer.values = layer.keys[index], layer.values[index]


class TorchSampler:
    """`sample()` for a transformers causal LM. `batch_size` bounds the rows decoded together.
    `cancel`: an Event (a run's stop signal) checked before every batch and decode step; once it
    is set, `sample()` raises Cancelled, so a cancel never waits for a whole phase of sampling.
    `keep_hidden`: each Completion carries its tokens' last hidden states (Completion.hidden)."""

    def __init__(self, model, tokenizer, batch_size: int = 512, fast: bool | None = None,
                 cancel: threading.Event | None = None, keep_hidden: bool = False):
        if hasattr(model, "get_base_model"):  # a peft (LoRA) model: the transformers model inside it
            model = model.get_base_model()
        self.model, self.tokenizer, self.batch_size, self.cancel = model.eval(), tokenizer, batch_size, cancel
        self.device = next(model.parameters()).device
        if fast is None:
            fast = model.config.model_type in FAST_MODEL_TYPES
        self.engine = _StaticKV if fast else _HFCache
        self.keep_hidden = keep_hidden
        self.stop_ids = stop_token_ids(model, tokenizer)
        self.max_positions = getattr(model.config, "max_position_embeddings", None)

    @torch.inference_mode()
    def sample(self, prompts: list[str], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_new_tokens: int = 128, seed: int | None = 0, stop: Sequence[str] = (),
               greedy: bool = False) -> list[list[Completion]]:
        """base.Sampler.sample. greedy=True: each prompt's greedy completion too, first in its list
        (then its n samples, the same as without it), decoded in the same batch as the samples:
        the prompt is computed once, and the decode steps are shared."""
        check_sampling_args(n, temperature, top_p, max_new_tokens)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        out: list[list[Completion]] = [[] for _ in prompts]
        # Whole prompts share a batch when n fits; a prompt with n > batch_size is split in chunks.
        # (A greedy row joins its prompt's first chunk: up to batch_size / n rows more.)
        per_batch = max(1, self.batch_size // n)
        chunk = min(n, self.batch_size)
        for start in range(0, len(prompts), per_batch):
            idx = list(range(start, min(start + per_batch, len(prompts))))
            for done in range(0, n, chunk):
                check_cancel(self.cancel)
                m = min(chunk, n - done)
                results = self._batch([prompts[i] for i in idx], m, temperature, top_p, max_new_tokens, gen, stop,
                                      greedy=greedy and done == 0)
                for i, comps in zip(idx, results):
                    out[i].extend(comps)
        return out

    def _batch(self, prompts, n, temperature, top_p, max_new_tokens, gen, stop=(),
               greedy: bool = False) -> list[list[Completion]]:
        """n samples per prompt, after its greedy completion with greedy=True. The samples draw
        from `gen` exactly as without greedy rows: one uniform per sampled row in the batch at
        each step, the batch compacted when the sampled rows say so, no draw once they are done."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, real = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device).bool()
        if self.max_positions:
            max_new_tokens = max(1, min(max_new_tokens, self.max_positions - ids.shape[1]))
        positions = (real.long().cumsum(-1) - 1).clamp(min=0)
        # 1) prefill every prompt once
        kv = self.engine(self.model, ids.shape[1] + max_new_tokens, keep_hidden=self.keep_hidden)
        logits = kv.forward(ids, positions, real)
        # 2) fork a row per sample (and the greedy one, first) of each prompt (no second prefill)
        per = n + greedy
        rep = torch.arange(len(prompts), device=self.device).repeat_interleave(per)
        kv.fork(per)
        logits, pos = logits[rep], positions[rep, -1] + 1
        rows = len(rep)
        hidden = hidden_buf = None  # (live rows, H) and (rows, max_new_tokens, H): what predicted each token
        if self.keep_hidden:
            hidden = kv.last_hidden[rep]
            hidden_buf = hidden.new_zeros(rows, max_new_tokens, hidden.shape[-1])
        alive = torch.arange(rows, device=self.device)  # original row of each live row
        is_greedy = (alive % per == 0) & greedy  # per live row
        token_buf = torch.zeros(rows, max_new_tokens, dtype=torch.long, device=self.device)
        logp_buf = torch.zeros(rows, max_new_tokens, dtype=torch.float32, device=self.device)
        entropy_buf = torch.zeros(rows, max_new_tokens, dtype=torch.float32, device=self.device)  # nats
        length = torch.full((rows,), max_new_tokens, dtype=torch.long, device=self.device)
        stopped = torch.zeros(rows, dtype=torch.bool, device=self.device)
        stop_tokens = torch.tensor(self.stop_ids, device=self.device)
        done = torch.zeros(rows, dtype=torch.bool, device=self.device)  # per live row: stopped already
        sampling = bool(n)  # a sampled row is still decoding: the samples' steps draw
        # 3) decode
        for step in range(max_new_tokens):
            check_cancel(self.cancel)  # a flag read: negligible beside a forward pass
            token = self._choose(logits, temperature, top_p, gen, is_greedy if sampling else None)
            raw = torch.log_softmax(logits, dim=-1)  # (B, V) float32
            logp = raw.gather(1, token[:, None])[:, 0]
            # entropy of the distribution drawn from, softmax(logits / T) before top-p (greedy: T = 1)
            drawn = raw if temperature in (0, 1) else torch.log_softmax(logits / temperature, dim=-1)
            entropy = _entropy(drawn)
            if greedy and temperature not in (0, 1):
                entropy = torch.where(is_greedy, _entropy(raw), entropy)
            fresh = ~done
            token_buf[alive[fresh], step] = token[fresh]
            logp_buf[alive[fresh], step] = logp[fresh]
            if hidden_buf is not None:
                hidden_buf[alive[fresh], step] = hidden[fresh]
            entropy_buf[alive, step] = entropy  # a stopped row's entries lie past its length, cut below
            ended = fresh & torch.isin(token, stop_tokens)
            length[alive[ended]] = step + 1
            stopped[alive[ended]] = True
            done |= ended
            if stop and step % STOP_CHECK_EVERY == STOP_CHECK_EVERY - 1:  # a stop string: that row is done
                live = (~done).nonzero()[:, 0]
                texts = self.tokenizer.batch_decode(token_buf[alive[live], :step + 1].tolist(), skip_special_tokens=True)
                hit = live[torch.tensor([cut_at_stop(t, stop)[1] for t in texts], dtype=torch.bool, device=self.device)]
                length[alive[hit]] = step + 1
                done[hit] = True
            n_done = int(done.sum())
            if n_done == len(alive) or step == max_new_tokens - 1:
                break
            # 4) compact: drop stopped rows once they are a quarter of the batch (copying the
            # cache every time one row stops would cost more than decoding the dead rows). While
            # samples decode, their rows alone decide, as without greedy rows: the same draws.
            counted = ~is_greedy if sampling else torch.ones_like(done)
            sampling = sampling and bool((counted & ~done).any())
            if int((counted & done).sum()) * 4 >= int(counted.sum()):
                keep = (~done).nonzero()[:, 0]
                kv.rows(keep)
                alive, token, pos, done, is_greedy = alive[keep], token[keep], pos[keep], done[keep], is_greedy[keep]
            logits = kv.forward(token[:, None], pos[:, None], torch.ones_like(token[:, None], dtype=torch.bool))
            hidden = kv.last_hidden
            pos = pos + 1
        lengths = length.tolist()
        tokens = [row[:k] for row, k in zip(token_buf.tolist(), lengths)]
        logps = [row[:k] for row, k in zip(logp_buf.tolist(), lengths)]
        entropies = [row[:k] for row, k in zip(entropy_buf.tolist(), lengths)]
        texts = self.tokenizer.batch_decode(tokens, skip_special_tokens=True)
        comps = [Completion(t, s, lp, "stop" if st else "length", h,
                            None if hidden_buf is None else hidden_buf[i, :len(t)].clone())
                 for i, (t, s, lp, st, h) in enumerate(zip(tokens, texts, logps, stopped.tolist(), entropies))]
        if stop:  # cut each at its first stop string (found above, or in the tokens since the last check)
            decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
            comps = [stop_at_string(c, stop, decode) for c in comps]
        return [comps[i * per:(i + 1) * per] for i in range(len(prompts))]

    @staticmethod
    def _choose(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator,
                greedy: torch.Tensor | None = None) -> torch.Tensor:
        """The next token of each row. `greedy` (B,) bool: rows that take the argmax, and draw no
        uniform; None: no row draws (every sampled row is done)."""
        if temperature == 0 or greedy is None:
            return logits.argmax(dim=-1)
        if greedy.any():
            token = logits.argmax(dim=-1)
            sampled = ~greedy
            if sampled.any():
                token[sampled] = TorchSampler._choose(logits[sampled], temperature, top_p, gen, greedy[sampled])
            return token
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:  # nucleus: keep the smallest set of tokens whose mass reaches top_p
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(1, order, sorted_p)
        # inverse CDF: one uniform per row (torch.multinomial draws one exponential per token)
        u = torch.rand(probs.shape[0], 1, generator=gen, device=probs.device)
        cdf = probs.cumsum(-1)
        return torch.searchsorted(cdf, u * cdf[:, -1:]).clamp(max=probs.shape[-1] - 1)[:, 0]


def _entropy(logp: torch.Tensor) -> torch.Tensor:
    """(B, V) log-probabilities -> (B,) entropy in nats. A -inf logit (a masked token) adds 0,
    not 0 * -inf = nan."""
    return -logp.clamp(min=torch.finfo(logp.dtype).min).mul_(logp.exp()).sum(dim=-1)  # in place: one (B, V) temporary
