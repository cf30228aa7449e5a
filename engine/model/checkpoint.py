"""Checkpoints are plain Hugging Face directories (config.json, model.safetensors, tokenizer files).

Anything that loads HF models (transformers, vLLM) reads them; reasonlab adds `reasonlab.json`
with how the checkpoint was made (task, preset, steps), which other tools ignore. Every save is
atomic (a temporary sibling, then a rename) and never writes into a directory that holds
something else; engine/model/validity.py says whether a directory is a whole checkpoint.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

from engine.errors import ReasonlabError
from engine.processes import pid_alive
from engine.model.validity import CONFIG, WEIGHT_FILES, check_checkpoint, check_orm  # noqa: F401 (re-exported)

META = "reasonlab.json"


def _quiet_transformers() -> None:
    """No per-file progress bars from transformers: reasonlab shows its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def save_checkpoint(model, tokenizer, out: str | Path, meta: dict | None = None, extra=None,
                    replace: bool = False) -> Path:
    """Write an HF directory atomically; a LoRA model is saved with its adapters merged (plain weights).

    Everything is written into a temporary sibling (`.NAME.tmp-PID`), fsynced, then renamed into
    place, so a crash leaves only that temporary (removed by the next save to `out`), never a half
    checkpoint at `out`. `extra(directory)` writes further files (trainer state, an ORM head) into
    the temporary before the rename. An existing non-empty `out` is refused unless `replace`: then
    it is moved aside, the new one renamed in, and the old one removed."""
    from engine.model.lora import merged

    _quiet_transformers()
    model = merged(model)

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        model.save_pretrained(tmp)  # safetensors is the default serialisation
        tokenizer.save_pretrained(tmp)
        (tmp / META).write_text(json.dumps(meta or {}, indent=2, sort_keys=True))
        if extra is not None:
            extra(tmp)

    return _write_atomically(Path(out), replace, fill)


def copy_checkpoint(src: str | Path, out: str | Path, replace: bool = False) -> Path:
    """Copy the checkpoint directory `src` to `out` atomically, the way save_checkpoint writes
    (with `replace`, over a checkpoint there; never over a directory of something else)."""
    return _write_atomically(Path(out), replace, lambda tmp: shutil.copytree(src, tmp))


def _write_atomically(out: Path, replace: bool, fill) -> Path:
    """`fill(tmp)` creates the directory `tmp`, a temporary sibling of `out`; it is fsynced and
    renamed into place. A crash leaves only the temporary (removed by the next write to `out`)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        recover(out)
        check_target(out, replace)
        out.parent.mkdir(parents=True, exist_ok=True)
        fill(tmp)
        _fsync_tree(tmp)
        _move_into_place(tmp, out)
    except OSError as e:
        raise ReasonlabError(f"cannot write checkpoint {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # what an exception left; gone after a rename
    return out


def check_target(out: str | Path, replace: bool = False) -> Path:
    """`out`, if a checkpoint may be written there: absent, an empty directory, or (with `replace`)
    a directory that holds a model (never a file, nor a directory of something else)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReasonlabError(f"cannot write checkpoint {out}: it is a file, not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return out
    if not replace:
        raise ReasonlabError(f"checkpoint directory {out} is not empty; refusing to write into it "
                             "(choose another directory, or replace the checkpoint there with --overwrite)")
    if not any((out / name).exists() for name in (CONFIG, META, *WEIGHT_FILES)):
        raise ReasonlabError(f"{out} is not a checkpoint directory (no config.json or weights); "
                             "refusing to replace it, even with --overwrite: choose another directory")
    return out


def check_writable(out: str | Path) -> Path:
    """`out`, if a checkpoint can be created there (its nearest existing ancestor is a writable
    directory): checked before training, not after it."""
    out = Path(out)
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ReasonlabError(f"cannot write checkpoint {out}: {parent} is not a writable directory")
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the written temporary to `out`; a checkpoint there (check_target allowed replacing
    it) is moved aside first and removed once the new one is in place."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if old.exists():
            os.rename(old, out)
        raise
    _fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover(out: str | Path) -> None:
    """Tidy what a save to `out` that crashed left: its temporary goes; a checkpoint it had moved
    aside to replace comes back if nothing took its place."""
    out = Path(out)
    if not out.parent.is_dir():
        return
    for leftover in sorted(out.parent.glob(f".{glob.escape(out.name)}.*-*")):
        kind, _, pid = leftover.name[len(out.name) + 2:].partition("-")
        if kind not in ("tmp", "old") or not pid.isdigit() or (int(pid) != os.getpid() and pid_alive(int(pid))):
            continue
        try:
            if kind == "old" and not out.exists():
                os.rename(leftover, out)
            else:
                shutil.rmtree(leftover)
        except OSError:  # best effort: a leftover that cannot go does no harm where it is
            pass


def _fsync_tree(root: Path) -> None:
    for f in root.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(path: str | Path) -> dict:
    """What reasonlab recorded with a checkpoint ({} for one it did not make); a META file that
    cannot be read, or holds no JSON object, is an error naming it (its task and prompt format matter)."""
    f = Path(path) / META
    if not f.exists():
        return {}
    try:
        meta = json.loads(f.read_bytes())
    except OSError as e:
        raise ReasonlabError(f"cannot read checkpoint metadata {f}: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ReasonlabError(f"checkpoint metadata {f} is not valid JSON ({e}); restore it or delete it") from None
    if not isinstance(meta, dict):
        raise ReasonlabError(f"checkpoint metadata {f} is not a JSON object; restore it or delete it")
    return meta


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
    own Python code; only on the user's explicit opt-in. Hub kernels stay off: with the `kernels`
    package installed (TRL brings it), transformers would otherwise fetch and run kernels from
    the Hub once the model is on a GPU (remote code, and no network here).
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
                                                     trust_remote_code=trust_remote_code, use_kernels=False)
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
