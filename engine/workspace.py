"""Where reasonlab keeps its store and checkpoints: $REASONLAB_HOME, else ~/.reasonlab."""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import ReasonlabError


def home() -> Path:
    """The workspace directory (not created), absolute: a relative REASONLAB_HOME is taken from the
    directory the user is in, and child processes get it absolute (child_env), since they run in another."""
    env = os.environ.get("REASONLAB_HOME", "").strip()
    return (Path(env).expanduser() if env else Path.home() / ".reasonlab").resolve()


def child_env() -> dict[str, str]:
    """The environment for a background process (worker, quickstart): this one, with the workspace
    as an absolute path, so the child finds the same store from its own working directory."""
    return {**os.environ, "REASONLAB_HOME": str(home())}


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


MAX_RUNNING_RANGE = (1, 1000)


def cores() -> int:
    """The CPU cores this process may use (its affinity, where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def max_running() -> int:
    """$REASONLAB_MAX_RUNNING: how many runs train at once (default 1; with more, each run takes its
    share of the cores: jobs.share_cores). Read where it is used, so a bad value is an error naming
    the variable (before anything is queued: jobs.submit reads it), never a traceback at import."""
    text = os.environ.get("REASONLAB_MAX_RUNNING", "").strip() or "1"
    lo, hi = MAX_RUNNING_RANGE
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise ReasonlabError(f"REASONLAB_MAX_RUNNING must be an integer from {lo} to {hi} (runs trained at once), "
                             f"got {text!r}")
    return value
