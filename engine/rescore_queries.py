"""The store's queries for re-scorings (engine/rescore.py; tables rescorings and rescored_samples,
engine/schema.py). A part of `engine.store.Store` (its base class), over its connection.

Its own module rather than engine/rescore.py: that one imports the store (and the dashboard's
modules, which do too), and engine/store.py imports this one at module level."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence

import pandas as pd


class RescoreQueries:
    """Needs `_query(sql, params)`, `_write()`, `_lock` and `_conn`, which Store provides."""

    def sample_id_range(self, run_id: int) -> tuple[int, int | None, int | None]:
        """(samples, smallest id, largest id) of a run's samples; the ids None when it has none."""
        with self._lock:
            total, lo, hi = self._conn.execute("SELECT COUNT(*), MIN(id), MAX(id) FROM samples WHERE run_id = ?",
                                               (int(run_id),)).fetchone()
        return total, lo, hi

    def rescore_chunk(self, run_id: int, after_id: int, last_id: int, limit: int) -> pd.DataFrame:
        """Up to `limit` of a run's samples (id, split, problem_id, text) with after_id < id <= last_id,
        in id order. `+run_id` keeps SQLite on the rowid range (a run's samples are near each other),
        not the run's index, which would sort all of them for every chunk."""
        return self._query("SELECT id, split, problem_id, text FROM samples WHERE id > ? AND id <= ? AND +run_id = ?"
                           " ORDER BY id LIMIT ?", (after_id, last_id, run_id, limit))

    def new_rescoring(self, run_id: int, scorer: str, options: dict) -> int:
        """A re-scoring of a run begun now (not finished: rescorings() leaves it out); its id."""
        from engine.store import _next_id  # here: engine.store imports this module

        with self._write() as conn:
            return conn.execute(
                "INSERT INTO rescorings (id, run_id, scorer, options, created_at)"
                f" VALUES ({_next_id('rescorings')}, ?, ?, ?, ?)",
                (int(run_id), scorer, json.dumps(options, default=str), time.time())).lastrowid

    def add_rescored_samples(self, rescoring_id: int, verdicts: Iterable[tuple[int, str | None, int]]) -> None:
        """A re-scoring's verdicts (sample id, answer, correct), all in one transaction."""
        with self._write() as conn:
            conn.executemany("INSERT INTO rescored_samples (rescoring_id, sample_id, answer, correct)"
                             " VALUES (?, ?, ?, ?)", [(rescoring_id, *v) for v in verdicts])

    def finish_rescoring(self, rescoring_id: int, samples: int, unscored: int) -> None:
        """Mark a re-scoring finished now, with how many samples it judged and left unscored."""
        with self._write() as conn:
            conn.execute("UPDATE rescorings SET finished_at = ?, samples = ?, unscored = ? WHERE id = ?",
                         (time.time(), samples, unscored, rescoring_id))

    def delete_rescoring(self, rescoring_id: int) -> None:
        """Remove a re-scoring (its verdicts go with it)."""
        with self._write() as conn:
            conn.execute("DELETE FROM rescorings WHERE id = ?", (rescoring_id,))

    def finished_rescorings(self, run_id: int) -> pd.DataFrame:
        """A run's finished re-scorings, newest first: id, scorer, options (JSON text), created_at,
        samples, unscored."""
        return self._query("SELECT id, scorer, options, created_at, samples, unscored FROM rescorings"
                           " WHERE run_id = ? AND finished_at IS NOT NULL ORDER BY id DESC", (int(run_id),))

    def rescoring_row(self, rescoring_id: int) -> dict | None:
        """A re-scoring's row, finished or not (finished_at NaN while not); None when there is none."""
        found = self._query("SELECT * FROM rescorings WHERE id = ?", (int(rescoring_id),))
        return None if found.empty else found.iloc[0].to_dict()

    def rescored_rows(self, rescoring_id: int, run_id: int, kinds: Sequence[str],
                      checkpoint_ids: Sequence[int] | None = None) -> pd.DataFrame:
        """The samples of a run of some kinds (and checkpoints) that a re-scoring judged, texts not
        read: kind, checkpoint_id, step, problem_id, sample_idx, answer, correct (the original
        scoring) and rescored_answer, rescored_correct; unordered. CROSS JOIN keeps SQLite on the
        samples' index first (the run's evaluations), then each one's verdict by primary key, never
        on all the re-scoring's rows (rollouts included)."""
        sql = ("SELECT s.kind, s.checkpoint_id, s.step, s.problem_id, s.sample_idx, s.answer, s.correct,"
               " r.answer AS rescored_answer, r.correct AS rescored_correct"
               " FROM samples s CROSS JOIN rescored_samples r ON r.rescoring_id = ? AND r.sample_id = s.id"
               f" WHERE s.run_id = ? AND s.kind IN ({', '.join('?' * len(kinds))})")
        params = [int(rescoring_id), run_id, *kinds]
        if checkpoint_ids is not None:
            sql += f" AND s.checkpoint_id IN ({', '.join('?' * len(checkpoint_ids))})"
            params += [int(c) for c in checkpoint_ids]
        return self._query(sql, params)

    def verdict_changes(self, rescoring_id: int) -> pd.DataFrame:
        """Per kind of sample the re-scoring judged: kind, samples, right_to_wrong, wrong_to_right
        (against the original scoring)."""
        return self._query(
            "SELECT s.kind, COUNT(*) AS samples,"
            " SUM(COALESCE(s.correct, 0) = 1 AND r.correct = 0) AS right_to_wrong,"
            " SUM(COALESCE(s.correct, 0) != 1 AND r.correct = 1) AS wrong_to_right"
            " FROM rescored_samples r JOIN samples s ON s.id = r.sample_id WHERE r.rescoring_id = ?"
            " GROUP BY s.kind ORDER BY s.kind", (int(rescoring_id),))
