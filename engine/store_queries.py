"""The store's read-only queries for the dashboard, aggregated in SQL so that a page over a million
samples reads kilobytes. A part of `engine.store.Store` (its base class), over its connection."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from engine.schema import SAMPLE_COLUMNS


class DashboardQueries:
    """Needs `_query(sql, params)`, `_lock` and `_conn`, which Store provides."""

    def sample_rows(self, columns: Iterable[str], run_id: int | None = None, checkpoint_id: int | None = None,
                    kind: str | None = None, step: int | None = None,
                    problem_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Only the named sample columns (e.g. no text for curves), matching every given filter,
        in insertion order."""
        columns = list(columns)
        if unknown := set(columns) - SAMPLE_COLUMNS:
            raise ValueError(f"unknown sample column(s) {sorted(unknown)}")
        filters = {"run_id": run_id, "checkpoint_id": checkpoint_id, "kind": kind, "step": step}
        given = {column: value for column, value in filters.items() if value is not None}
        where = [f"{column} = :{column}" for column in given]
        if problem_ids is not None:
            ids = list(problem_ids)
            given.update({f"p{i}": p for i, p in enumerate(ids)})
            where.append(f"problem_id IN ({', '.join(f':p{i}' for i in range(len(ids)))})" if ids else "0")
        sql = f"SELECT {', '.join(columns)} FROM samples"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._query(sql + " ORDER BY id", given)

    def problem_summary(self, run_id: int, kind: str, step: int) -> pd.DataFrame:
        """One row per problem of a run's samples at one step: problem_id, split, samples (drawn,
        greedy excluded), correct (how many of them), greedy_correct (0/1, None without a greedy
        row), distinct_answers. Reads the covering index samples_run_kind_step only."""
        return self._query(
            "SELECT problem_id, MIN(split) AS split, SUM(sample_idx >= 0) AS samples,"
            " SUM(CASE WHEN sample_idx >= 0 THEN COALESCE(correct, 0) ELSE 0 END) AS correct,"
            " MAX(CASE WHEN sample_idx < 0 THEN correct END) AS greedy_correct,"
            " COUNT(DISTINCT CASE WHEN sample_idx >= 0 THEN answer END) AS distinct_answers"
            " FROM samples INDEXED BY samples_run_kind_step WHERE run_id = ? AND kind = ? AND step = ?"
            " GROUP BY problem_id ORDER BY problem_id", [run_id, kind, step])

    def sample_steps(self, run_id: int, kind: str) -> pd.DataFrame:
        """The steps at which a run stored samples of a kind: step, checkpoint_id (eval), samples."""
        return self._query("SELECT step, MAX(checkpoint_id) AS checkpoint_id, COUNT(*) AS samples FROM samples"
                           " WHERE run_id = ? AND kind = ? GROUP BY step ORDER BY step", [run_id, kind])

    def answer_counts(self, run_id: int, problem_id: str, kind: str = "eval") -> pd.DataFrame:
        """How often each final answer was drawn (greedy rows excluded) for one problem at every
        step of a run: step, answer (None: no answer), count, correct."""
        return self._query(
            "SELECT step, answer, COUNT(*) AS count, MAX(COALESCE(correct, 0)) AS correct FROM samples"
            " WHERE run_id = ? AND problem_id = ? AND kind = ? AND sample_idx >= 0"
            " GROUP BY step, answer ORDER BY step, count DESC", [run_id, problem_id, kind])

    def metrics_version(self, run_id: int) -> tuple[int, int]:
        """(rows, newest rowid) of a run's metrics: changes whenever the run logs, so a cached
        view of its curves can be keyed on it."""
        with self._lock:
            row = self._conn.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM metrics WHERE run_id = ?",
                                     (run_id,)).fetchone()
        return int(row[0]), int(row[1])
