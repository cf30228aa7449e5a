"""What the dashboard's buttons do: every change a page makes to the workspace, in one place (no
Streamlit here). The other modules of engine/dashboard only read, so their results can be cached;
a page that calls an action clears the cached views the action changes.

`refresh` is the one action no button asks for: the pages that show a run's status call it once per
rerun (and per rerun of their live fragment) before they read, so a run whose process died shows as
interrupted there, as it does in `reasonlab runs`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from engine import imports, jobs, launch, quickstart, rescore
from engine.assets import shipped_base
from engine.errors import ReasonlabError
from engine.findings import suite
from engine.store import Store

if TYPE_CHECKING:
    from engine.config import RunConfig


# -- runs -----------------------------------------------------------------------------------------


def refresh(store: Store) -> list[int]:
    """Mark the runs whose process died (or went silent) as interrupted, as `reasonlab runs` does.
    Returns their ids: when there are some, the page's cached runs table is out of date."""
    return jobs.reconcile(store, spawn=False)


def launch_run(store: Store, cfg: RunConfig, name: str | None = None) -> int:
    """Queue a validated config and start a worker for it (as `reasonlab train --detach`)."""
    return launch.launch(store, cfg, name)


def cancel_run(store: Store, run_id: int) -> str:
    return jobs.cancel(store, run_id)


def resume_run(store: Store, run_id: int) -> str:
    """Queue the run again and start a worker for it (as `reasonlab resume --detach`)."""
    jobs.resume(store, run_id)
    jobs.spawn_worker()
    return f"run {run_id} queued to resume from its last checkpoint"


def delete_run(store: Store, run_id: int) -> str:
    """Delete a stopped run, its rows and its directory (engine.jobs.delete says what is refused)."""
    return jobs.delete(store, run_id)


def import_samples(store: Store, path: str | Path, **options) -> imports.Imported:
    """Another tool's samples as a new run (as `reasonlab import FILE`); options: format, task,
    split, name (imports.import_file's)."""
    return imports.import_file(store, path, **options)


def queue_missing(store: Store, size: str = "suite", base=None) -> list[str]:
    """Queue (or resume) the findings suite's runs that are missing; one line per run."""
    return suite.queue_missing(store, size, base)


def rescore_run(store: Store, run_id: int, scorer: str, progress: Callable[[int, int], None] | None = None) -> int:
    """Judge a run's stored samples again with `scorer`; returns the new re-scoring's id."""
    return rescore.rescore(store, run_id, scorer, progress=progress)


# -- notes ----------------------------------------------------------------------------------------


def add_note(store: Store, text: str | None, tag: str | None, **on) -> int:
    """A note on a problem (on: run_id, problem_id) or on one sample (on: sample_id)."""
    return store.add_note(text, tag, **on)


def delete_note(store: Store, note_id: int) -> None:
    store.delete_note(note_id)


# -- the workspace --------------------------------------------------------------------------------


def copy_shipped_base() -> Path | None:
    """Copy the shipped base into the workspace on first use, so that a run can start from it.
    None when it cannot be (e.g. a directory the user made has its name): the page lists the
    workspace's other start points all the same."""
    try:
        return shipped_base()
    except ReasonlabError:
        return None


def start_quickstart(**options) -> None:
    """Start the quickstart in the background; options: quickstart.start's (build_base)."""
    quickstart.start(**options)
