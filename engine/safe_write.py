"""A file the user named, written whole or not at all, never over one already there unless told."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ReasonlabError


def place(tmp: str | Path, out: Path, replace: bool) -> None:
    """Move a finished temporary file (in `out`'s directory) to `out` in one step. Without
    `replace`, only while `out` is absent: a hard link fails on an existing name, so a file that
    appeared meanwhile is never clobbered (where links are not supported, it is checked first)."""
    if replace:
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise ReasonlabError(f"{out} exists already; pass --force to replace it") from None
    except OSError:  # a file system without hard links
        if out.exists():
            raise ReasonlabError(f"{out} exists already; pass --force to replace it") from None
        os.replace(tmp, out)
