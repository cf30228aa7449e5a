"""Model presets: standard Llama-architecture transformers sized for a laptop CPU."""

from __future__ import annotations

from engine.errors import ReasonlabError

PRESETS = {
    # ~1M parameters: the format in a minute on 2 CPU cores, the arithmetic (and the teacher's
    # habits, engine/algorithms/sft.py) in the default 2000 steps, 5 to 10 minutes.
    "tiny": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4),
    # ~10M parameters: a stronger base for longer runs.
    "small": dict(hidden_size=320, intermediate_size=864, num_hidden_layers=8, num_attention_heads=8),
}


def new_model(preset: str, tokenizer, seed: int = 0):
    """A freshly initialised LlamaForCausalLM of the preset's size."""
    if preset not in PRESETS:
        raise ReasonlabError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM  # seconds to import: not for a bad --preset

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), max_position_embeddings=512, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        rope_theta=10000.0, **PRESETS[preset],
    )
    return LlamaForCausalLM(config)


def untrained_checkpoint(out, preset: str = "tiny", texts: list[str] | None = None):
    """A whole checkpoint of a freshly initialised preset model, its tokenizer trained on `texts`
    (a built-in problem by default): a base that validates and loads in tests and benchmarks,
    and learns nothing."""
    from engine.model.checkpoint import save_checkpoint
    from engine.model.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(texts or ["Question: Ann has 3 apples and buys 2.\nAnswer:\n3 + 2 = 5\n#### 5"])
    return save_checkpoint(new_model(preset, tokenizer), tokenizer, out)
