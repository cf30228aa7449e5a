"""LoRA adapters through peft (`pip install 'reasonlab[lora]'`), for models too large to fine-tune whole.

With `lora_r > 0` a run trains low-rank adapters on the policy's linear layers and nothing else;
every checkpoint it saves has the adapters merged into the weights, so it stays a plain HF
directory that transformers and vLLM load without peft.
"""

from __future__ import annotations

import copy

from engine.errors import ReasonlabError


def peft_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("peft") is not None


def add_lora(model, r: int, alpha: float, dropout: float = 0.0, targets: str = ""):
    """The model with fresh adapters (B = 0, so it computes what the model did); only they train."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ReasonlabError("lora_r > 0 needs peft: pip install 'reasonlab[lora]'") from None
    modules = [t.strip() for t in targets.split(",") if t.strip()] or "all-linear"
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # e.g. a target module name the model does not have
        raise ReasonlabError(f"cannot add LoRA adapters (lora_targets {targets or 'all-linear'}): {e}") from None


def maybe_lora(model, cfg):
    """The policy as a run config asks for it: with adapters when cfg.lora_r > 0."""
    if getattr(cfg, "lora_r", 0) > 0:
        return add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    return model


def is_lora(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def merged(model):
    """A plain transformers model with the adapters folded in (a copy: training goes on)."""
    return copy.deepcopy(model).merge_and_unload() if is_lora(model) else model


def trainable(model) -> list:
    """The parameters an optimizer should update (the adapters only, under LoRA)."""
    return [p for p in model.parameters() if p.requires_grad]
