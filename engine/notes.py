"""Notes: a person's tags and words on a problem ("good example for class") or on one sample
("forgot the carry"). A part of `engine.store.Store` (its base class), over its connection.

A note on a problem belongs to the problem, (task, split, problem_id), not to one run: it shows
beside that problem in every run of the task, and stays when the run it was written in is
deleted. A note on a sample belongs to that sample, and goes with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import pandas as pd

from engine.errors import ReasonlabError

MAX_TEXT = 4000  # characters: a paragraph, not a file
MAX_TAG = 60
NOTE_COLUMNS = ["id", "tag", "text", "task", "split", "problem_id", "sample_id", "run_id", "created_at"]
SAMPLE_PLACE = ["kind", "step", "sample_idx"]  # where a note's sample is (None for a note on a problem)


def clean_note(text: str | None, tag: str | None) -> tuple[str, str | None]:
    """(text, tag) stripped; a note needs one of them, and neither may be long."""
    text, tag = (text or "").strip(), (tag or "").strip() or None
    if not text and not tag:
        raise ReasonlabError("a note needs a text or a tag")
    if len(text) > MAX_TEXT:
        raise ReasonlabError(f"a note's text is at most {MAX_TEXT} characters (this one has {len(text)})")
    if tag and (len(tag) > MAX_TAG or "\n" in tag):
        raise ReasonlabError(f"a tag is one line of at most {MAX_TAG} characters")
    return text, tag


class NoteQueries:
    """Needs `_query(sql, params)`, `_write()` and `get_run`, which Store provides."""

    def add_note(self, text: str | None = None, tag: str | None = None, *, run_id: int | None = None,
                 problem_id: str | None = None, split: str | None = None, task: str | None = None,
                 sample_id: int | None = None) -> int:
        """A note on a sample (sample_id: its problem comes from the sample) or on a problem (run_id
        and problem_id: the run says which task, and the split is the problem's in that run's
        samples unless given). Returns the note's id."""
        text, tag = clean_note(text, tag)
        if sample_id is not None:
            found = self._query("SELECT run_id, task, split, problem_id FROM samples WHERE id = ?", (int(sample_id),))
            if found.empty:
                raise ReasonlabError(f"no sample {sample_id} in the store")
            run_id, task, split, problem_id = found.iloc[0].tolist()
        else:
            if run_id is None or self.get_run(int(run_id)) is None:
                raise ReasonlabError(f"no run {run_id} in the store")
            if not problem_id:
                raise ReasonlabError("a note on a problem needs its problem id")
            seen = self._query("SELECT task, split FROM samples WHERE run_id = ? AND problem_id = ? LIMIT 1",
                               (int(run_id), problem_id))
            if seen.empty:
                raise ReasonlabError(f"run {run_id} has no sample of problem {problem_id!r}")
            task, split = task or seen.at[0, "task"], split or seen.at[0, "split"]
        with self._write() as conn:
            cur = conn.execute("INSERT INTO notes (run_id, task, split, problem_id, sample_id, tag, text, created_at)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                               (int(run_id), task, split, problem_id, None if sample_id is None else int(sample_id),
                                tag, text, time.time()))
            return int(cur.lastrowid)

    def notes(self, task: str | None = None, problem_ids: Iterable[str] | None = None,
              run_id: int | None = None, sample_ids: Iterable[int] | None = None,
              contains: str | None = None) -> pd.DataFrame:
        """Notes matching every given filter, oldest first: NOTE_COLUMNS and, for a note on a
        sample, SAMPLE_PLACE. run_id: the notes written in that run, and those on the problems its
        samples have. contains: in the text or the tag, in any case."""
        where, params = [], []
        if task is not None:
            where.append("notes.task = ?")
            params.append(task)
        if problem_ids is not None:
            ids = list(problem_ids)
            where.append(f"notes.problem_id IN ({', '.join('?' * len(ids))})" if ids else "0")
            params += ids
        if sample_ids is not None:
            ids = [int(i) for i in sample_ids]
            where.append(f"sample_id IN ({', '.join('?' * len(ids))})" if ids else "0")
            params += ids
        if run_id is not None:
            where.append("(notes.run_id = ? OR (sample_id IS NULL AND EXISTS (SELECT 1 FROM samples s WHERE"
                         " s.run_id = ? AND s.task = notes.task AND s.problem_id = notes.problem_id)))")
            params += [int(run_id), int(run_id)]
        sql = (f"SELECT {', '.join('notes.' + c for c in NOTE_COLUMNS)}, {', '.join('s.' + c for c in SAMPLE_PLACE)}"
               " FROM notes LEFT JOIN samples s ON s.id = notes.sample_id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        found = self._query(sql + " ORDER BY notes.id", params)
        if contains:  # in Python: SQLite's lower() folds ASCII only
            wanted = contains.casefold()
            hit = [wanted in f"{text}\n{tag or ''}".casefold() for text, tag in zip(found["text"], found["tag"])]
            found = found[hit].reset_index(drop=True)
        return found

    def sample_id(self, run_id: int, problem_id: str, sample_idx: int, step: int | None = None,
                  kind: str = "eval") -> int:
        """The store's id of sample `sample_idx` (-1: greedy) of a problem in a view (step: the
        run's last one of that kind)."""
        found = self._query(
            "SELECT id FROM samples WHERE run_id = :r AND kind = :k AND problem_id = :p AND sample_idx = :i"
            " AND step = ifnull(:s, (SELECT max(step) FROM samples WHERE run_id = :r AND kind = :k))"
            " ORDER BY id LIMIT 1",
            {"r": int(run_id), "k": kind, "p": problem_id, "i": int(sample_idx), "s": step})
        if found.empty:
            at = f"step {step}" if step is not None else "its last step"
            raise ReasonlabError(f"run {run_id} has no {kind} sample {sample_idx} of problem {problem_id!r} at {at}")
        return int(found.at[0, "id"])

    def delete_note(self, note_id: int) -> None:
        with self._write() as conn:
            if conn.execute("DELETE FROM notes WHERE id = ?", (int(note_id),)).rowcount == 0:
                raise ReasonlabError(f"no note {note_id} in the store")
