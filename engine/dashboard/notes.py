"""Notes beside what the pages show: a problem's, and its samples' (engine/notes.py stores them)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from engine.dashboard.samples import run_task
from engine.store import Store

PROBLEM = "the problem"


def problem_notes(store: Store, run_ids: int | Sequence[int], problem_id: str) -> pd.DataFrame:
    """The notes on a problem of the runs' tasks (written in any run) and on these runs' own
    samples of it, oldest first: store.notes' columns and `on` ("the problem", or "sample 3 · eval
    step 20")."""
    run_ids = [run_ids] if isinstance(run_ids, int) else list(run_ids)
    tasks = {run_task(store, r) for r in run_ids}
    found = pd.concat([store.notes(task=t, problem_ids=[problem_id]) for t in sorted(tasks)], ignore_index=True)
    on_sample = found["sample_id"].notna()
    found = found[~on_sample | found["run_id"].isin(run_ids)].sort_values("id").reset_index(drop=True)
    found["on"] = [PROBLEM if pd.isna(sample) else f"sample {int(idx)} · {kind} step {int(step)}"
                   for sample, idx, kind, step in zip(found["sample_id"], found["sample_idx"], found["kind"],
                                                      found["step"])]
    return found


def note_line(note: pd.Series) -> str:
    """A note's caption: its tag, what it is on, and the run it was written in."""
    tag = f"{note['tag']} · " if isinstance(note["tag"], str) and note["tag"] else ""
    run = "" if pd.isna(note["run_id"]) else f" · written in run {int(note['run_id'])}"
    return f"{tag}on {note['on']}{run}"


def sample_note_column(samples: pd.DataFrame, notes: pd.DataFrame) -> list[str]:
    """For each sample (by its `id`), its notes' tags and texts in one line ("" when none)."""
    by_sample: dict[int, list[str]] = {}
    for _, n in notes[notes["sample_id"].notna()].iterrows():
        words = " — ".join(w for w in (n["tag"], n["text"]) if isinstance(w, str) and w)
        by_sample.setdefault(int(n["sample_id"]), []).append(" ".join(words.split()))
    return [" | ".join(by_sample.get(int(i), [])) for i in samples["id"]]
