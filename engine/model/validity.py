"""Is a directory a whole checkpoint? Cheap checks (no transformers, no weights read), run before
anything is queued and on every change of the Launch page, so a truncated download, a garbage
config.json or a missing tokenizer is refused with the path and the problem, not later with a
message from deep inside transformers.

Weights: model.safetensors, or shards named by model.safetensors.index.json; each file's header
is read (8-byte little-endian length, then JSON) and the data it describes must fill the file
exactly. pytorch_model.bin (older downloads) is accepted when it is a whole zip archive (torch's
format): transformers loads it with torch.load(weights_only=True), which runs no pickled code.
"""

from __future__ import annotations

import json
import zipfile
from functools import lru_cache
from pathlib import Path

from engine.errors import ReasonlabError

CONFIG = "config.json"
SAFETENSORS, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"
TORCH_BIN, TORCH_BIN_INDEX = "pytorch_model.bin", "pytorch_model.bin.index.json"
WEIGHT_FILES = (SAFETENSORS, SAFETENSORS_INDEX, TORCH_BIN, TORCH_BIN_INDEX)
ORM_HEAD = "orm_head.safetensors"
# Vocabularies a tokenizer_config.json can name when there is no tokenizer.json (slow tokenizers).
VOCAB_FILES = ("tokenizer.model", "vocab.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model")
MAX_HEADER = 100 * 2**20  # safetensors' own limit on a header


class _Bad(Exception):
    """What is wrong with one file of the checkpoint (the caller adds the directory)."""


def check_checkpoint(path: str | Path) -> Path:
    """The path, if it is a whole HF checkpoint directory: a config.json object naming a model,
    whole weights, a tokenizer that loads. Otherwise a ReasonlabError naming the path and the problem."""
    path = Path(path)
    if not path.is_dir():
        raise ReasonlabError(f"checkpoint {path} does not exist or is not a directory")
    try:
        _check_config(path)
        _check_weights(path)
        _check_tokenizer(path)
    except _Bad as e:
        raise ReasonlabError(f"checkpoint {path} {e}") from None
    return path


def check_orm(path: str | Path) -> Path:
    """The path, if it is an outcome reward model: a whole checkpoint plus a whole ORM head."""
    path = check_checkpoint(path)
    if not (path / ORM_HEAD).is_file():
        raise ReasonlabError(f"checkpoint {path} is not an outcome reward model (no {ORM_HEAD})")
    try:
        _check_safetensors(path / ORM_HEAD)
    except _Bad as e:
        raise ReasonlabError(f"checkpoint {path} {e}") from None
    return path


def is_checkpoint(path: str | Path) -> bool:
    """Whether check_checkpoint passes: for the callers that act on the answer, not the reason."""
    return _passes(check_checkpoint, path)


def is_orm(path: str | Path) -> bool:
    """Whether check_orm passes."""
    return _passes(check_orm, path)


def _passes(check, path: str | Path) -> bool:
    try:
        check(path)
    except ReasonlabError:
        return False
    return True


def _read_json_object(file: Path, what: str) -> dict:
    try:
        value = json.loads(file.read_bytes())
    except OSError as e:
        raise _Bad(f"cannot read {file.name}: {e.strerror or e}") from None
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise _Bad(f"has a {file.name} that is not valid JSON ({e}); {what}") from None
    if not isinstance(value, dict):
        raise _Bad(f"has a {file.name} that is not a JSON object (it holds {type(value).__name__} "
                   f"{str(value)[:40]}); {what}")
    return value


def _check_config(path: Path) -> None:
    if not (path / CONFIG).is_file():
        raise _Bad(f"has no {CONFIG}; is it a Hugging Face model directory?")
    config = _read_json_object(path / CONFIG, "is it a Hugging Face model directory?")
    if not isinstance(config.get("model_type"), str) and not isinstance(config.get("architectures"), list):
        raise _Bad(f"has a {CONFIG} with neither model_type nor architectures; is it a model's config?")


def _check_weights(path: Path) -> None:
    for index, check in ((SAFETENSORS_INDEX, _check_safetensors), (TORCH_BIN_INDEX, _check_zip)):
        if (path / index).is_file():
            weight_map = _read_json_object(path / index, "a sharded model's index").get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise _Bad(f"has a {index} with no weight_map")
            for shard in sorted(set(map(str, weight_map.values()))):
                if not (path / shard).is_file():
                    raise _Bad(f"is missing {shard}, a shard its {index} names")
                check(path / shard)
            return
    for single, check in ((SAFETENSORS, _check_safetensors), (TORCH_BIN, _check_zip)):
        if (path / single).is_file():
            return check(path / single)
    raise _Bad(f"has no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or {TORCH_BIN})")


def _check_safetensors(file: Path) -> None:
    """The header parses and the tensors it describes end exactly where the file does."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as f:
            prefix = f.read(8)
            n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
            if not 0 < n <= min(size - 8, MAX_HEADER):
                raise _Bad(f"has an empty {file.name}" if size == 0 else
                           f"has a truncated or corrupt {file.name} (no readable safetensors header)")
            header = json.loads(f.read(n))
    except OSError as e:
        raise _Bad(f"cannot read {file.name}: {e.strerror or e}") from None
    except ValueError:
        raise _Bad(f"has a corrupt {file.name} (its safetensors header is not JSON)") from None
    if not isinstance(header, dict):
        raise _Bad(f"has a corrupt {file.name} (its safetensors header is not a JSON object)")
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise _Bad(f"has a corrupt {file.name} (tensor {name} has no data offsets)")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise _Bad(f"has a truncated or corrupt {file.name} ({size} bytes; its header describes {8 + n + end})")


def _check_zip(file: Path) -> None:
    try:
        whole = zipfile.is_zipfile(file)
    except OSError as e:
        raise _Bad(f"cannot read {file.name}: {e.strerror or e}") from None
    if not whole:
        raise _Bad(f"has a truncated or corrupt {file.name} (not a whole torch zip archive)")


def _check_tokenizer(path: Path) -> None:
    config = path / "tokenizer_config.json"
    if config.is_file():
        _read_json_object(config, "the tokenizer's config")
    fast = path / "tokenizer.json"
    if fast.is_file():
        stat = fast.stat()
        problem = _tokenizer_problem(str(fast), stat.st_mtime_ns, stat.st_size)
        if problem:
            raise _Bad(f"has a tokenizer.json that does not load: {problem}")
        return
    if config.is_file() and any((path / name).is_file() for name in VOCAB_FILES):
        return
    raise _Bad("has no tokenizer (tokenizer.json, or tokenizer_config.json with its vocabulary files)")


@lru_cache(maxsize=64)
def _tokenizer_problem(file: str, mtime_ns: int, size: int) -> str | None:
    """Why tokenizer.json does not load (None: it loads). Cached by the file's stat: a large
    model's tokenizer takes a fraction of a second to parse, and the Launch page asks often."""
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(file)
    except Exception as e:  # tokenizers raises a bare Exception for a malformed file
        text = str(e).strip()
        return text.splitlines()[0][:200] if text else type(e).__name__
    return None
