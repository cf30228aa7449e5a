"""Data that ships with reasonlab: the weak base model, so the quickstart and the findings start at once.

    SHIPPED_BASE_DIR   engine/assets/base-tiny/: what `reasonlab sft --preset tiny` writes with the
                       SFTConfig defaults (seed 0, 2000 steps); `make base` rebuilds it
    shipped_base()     its copy in the workspace ($REASONLAB_HOME/checkpoints/base-shipped), made on
                       first use: runs store their base's path, and a path inside the installed
                       package would change under them when reasonlab is upgraded
"""

from __future__ import annotations

from pathlib import Path

from engine import workspace
from engine.errors import ReasonlabError

SHIPPED_BASE_DIR = Path(__file__).resolve().parent / "base-tiny"
SHIPPED_NAME = "base-shipped"


def shipped_base_path() -> Path:
    """Where the workspace's copy of the shipped base lives (nothing is copied: see shipped_base)."""
    return workspace.checkpoints_dir() / SHIPPED_NAME


def shipped_base() -> Path:
    """The workspace's copy of the shipped base, copied there atomically if absent. A whole
    checkpoint already there is used as it is (runs that started from it must find it unchanged);
    a damaged copy is replaced atomically; a directory there that reasonlab did not write is
    refused, never replaced."""
    from engine.model.checkpoint import META, check_checkpoint, copy_checkpoint, recover
    from engine.model.validity import is_checkpoint

    out = shipped_base_path()
    recover(out)  # a copy a crash cut short
    if is_checkpoint(out):
        return out
    if out.exists() and not (out / META).is_file():
        raise ReasonlabError(f"{out} is not the base model reasonlab copies there (no {META}); "
                             "move it elsewhere and reasonlab will copy the shipped base in its place")
    try:  # an installation without its data: say so, rather than copy half a model
        check_checkpoint(SHIPPED_BASE_DIR)
    except ReasonlabError as e:
        raise ReasonlabError(f"the base model that ships with reasonlab is missing or damaged ({e}); "
                             "reinstall reasonlab, or rebuild it with `make base`") from None
    workspace.ensure_home()
    try:
        copy_checkpoint(SHIPPED_BASE_DIR, out, replace=True)
    except ReasonlabError:
        if not is_checkpoint(out):  # else another process copied it at the same moment
            raise
    return out
