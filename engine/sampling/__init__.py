"""Sampling backends behind one interface (base.Sampler): torch_sampler, built in, and vllm_sampler."""

from __future__ import annotations


def make_sampler(model, tokenizer, cfg, cancel=None, keep_hidden: bool = False):
    """A run's sampling backend (cfg.sampler) holding `model`'s current weights: the torch sampler
    over the model itself, or the process's vLLM engine after a weight sync. `cancel`: the run's
    stop signal (a threading.Event); once set, sampling raises base.Cancelled. `keep_hidden`: the
    torch sampler's completions carry their last hidden states (vLLM's never do)."""
    if cfg.sampler == "vllm":
        from engine.sampling.vllm_sampler import shared_engine

        engine = shared_engine(cfg, model, tokenizer)
        engine.sync(model)
        engine.cancel = cancel
        return engine
    from engine.sampling.torch_sampler import TorchSampler

    return TorchSampler(model, tokenizer, batch_size=cfg.sample_batch_size, cancel=cancel, keep_hidden=keep_hidden)
