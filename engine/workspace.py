"""Where reasonlab keeps its store and checkpoints: $REASONLAB_HOME, else ~/.reasonlab."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ReasonlabError


def home() -> Path:
    """The workspace directory (not created)."""
    env = os.environ.get("REASONLAB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".reasonlab"


def ensure_home() -> Path:
    """Create the workspace if needed and check that it is writable."""
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise ReasonlabError(f"workspace {root} is not writable ({e.strerror}); set REASONLAB_HOME to a writable directory") from None
    return root


def store_path() -> Path:
    return home() / "store.sqlite"


def checkpoints_dir() -> Path:
    return home() / "checkpoints"
