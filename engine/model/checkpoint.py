"""Checkpoints are plain Hugging Face directories (config.json, model.safetensors, tokenizer files).

Anything that loads HF models (transformers, vLLM) reads them; reasonlab adds `reasonlab.json`
with how the checkpoint was made (task, preset, steps), which other tools ignore.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import ReasonlabError

META = "reasonlab.json"


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers: reasonlab shows its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def save_checkpoint(model, tokenizer, out: str | Path, meta: dict | None = None) -> Path:
    """Write an HF directory; a LoRA model is saved with its adapters merged (plain weights)."""
    from engine.model.lora import merged

    _quiet_transformers()
    model = merged(model)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)  # safetensors is the default serialisation
        tokenizer.save_pretrained(out)
        (out / META).write_text(json.dumps(meta or {}, indent=2, sort_keys=True))
    except OSError as e:
        raise ReasonlabError(f"cannot write checkpoint {out}: {e.strerror or e}") from None
    return out


def read_meta(path: str | Path) -> dict:
    f = Path(path) / META
    try:
        return json.loads(f.read_text()) if f.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}


DTYPES = ("auto", "float32", "bfloat16")


def torch_dtype(name: str | None, device: str):
    """auto (or None): bfloat16 on a CUDA device that supports it, else float32 (CPU bf16 is slow)."""
    import torch

    if name in (None, "auto"):
        cuda = str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda else torch.float32
    if name not in DTYPES:
        raise ReasonlabError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def load_checkpoint(path: str | Path, device: str = "cpu", dtype=None, trust_remote_code: bool = False):
    """(model in eval mode, tokenizer) from a checkpoint directory, with no network access.

    dtype: a torch dtype or a name in DTYPES (None: auto). trust_remote_code runs the directory's
    own Python code; only on the user's explicit opt-in.
    Every failure is a ReasonlabError naming the directory: missing, not a model, corrupt weights.
    """
    from transformers import AutoModelForCausalLM

    _quiet_transformers()
    if dtype is None or isinstance(dtype, str):
        dtype = torch_dtype(dtype, device)
    path = Path(path)
    tokenizer = load_tokenizer(path, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                     trust_remote_code=trust_remote_code)
    except Exception as e:  # transformers raises many types (OSError, ValueError, SafetensorError...)
        raise _load_error(path, e, trust_remote_code) from None
    return model.to(device).eval(), tokenizer


def check_dir(path: str | Path) -> Path:
    """The path, if it is a directory with a config.json (cheap: nothing imported, nothing read)."""
    path = Path(path)
    if not path.is_dir():
        raise ReasonlabError(f"checkpoint {path} does not exist or is not a directory")
    if not (path / "config.json").is_file():
        raise ReasonlabError(f"checkpoint {path} has no config.json; is it a Hugging Face model directory?")
    return path


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """A checkpoint's tokenizer, padding on the left (with EOS when it has no pad token)."""
    from transformers import AutoTokenizer

    path = check_dir(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise _load_error(path, e, trust_remote_code) from None
    if tokenizer.pad_token_id is None:  # common for downloaded LMs: pad with EOS, left side
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _load_error(path: Path, e: Exception, trust_remote_code: bool) -> ReasonlabError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if not trust_remote_code and ("custom code" in first or "trust_remote_code" in first):
        first += " (its code runs only with --trust-remote-code / trust_remote_code=true: only if you trust it)"
    return ReasonlabError(f"cannot load checkpoint {path}: {first}")
