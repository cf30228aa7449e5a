"""The run store: one SQLite file holding runs, metrics, checkpoints, problems and samples.

Training jobs write it from background processes while the dashboard reads it, so the file is in
WAL mode (readers never block the writer, nor it them) and every write is a short `BEGIN
IMMEDIATE` transaction (a writer waits for the lock up front, up to 30 s, instead of failing
halfway with "database is locked").

One `Store` per process: a connection must not cross a fork, so a child opens its own. Within a
process a `Store` may be shared between threads; a lock serialises use of its one connection.

Schema changes are migrations (engine/schema.py): append a SQL script to MIGRATIONS and never edit a shipped one.
`PRAGMA user_version` records how many have been applied.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from engine import workspace
from engine.errors import ReasonlabError
# MIGRATIONS: tests swap this module's name for theirs. The table constants are used here and re-exported.
from engine.schema import (MIGRATIONS, RUN_STATUSES, RUN_UPDATABLE, SAMPLE_COLUMNS, SAMPLE_KINDS,  # noqa: F401
                           SAMPLE_OPTIONAL, SAMPLE_REQUIRED, statements)
from engine.notes import NoteQueries
from engine.rescore_queries import RescoreQueries
from engine.search import SearchQueries
from engine.store_queries import DashboardQueries

# How to get past a store that cannot be opened, appended to the error.
AT_FAULT = "; move the file aside (reasonlab then starts a new store) or set REASONLAB_HOME to another directory"
DELETE_CHUNK = 20_000  # samples per transaction when deleting: other writers wait for one chunk, not the run
CHUNK_PAUSE_S = 0.05  # between two chunks of a delete, for the writers waiting (delete_run says why)

# Training code hands over numpy scalars; sqlite3 binds only Python int/float.
for _t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_):
    sqlite3.register_adapter(_t, int)
for _t in (np.float16, np.float32):  # np.float64 is a float already
    sqlite3.register_adapter(_t, float)


def migrate(conn: sqlite3.Connection, target: int | None = None) -> int:
    """Bring the database to schema version `target` (default: the newest); returns the version.

    All pending migrations run in one transaction, so a failure leaves the old version intact, and
    the version is re-read under the write lock, so two processes opening a new store at once
    migrate it once. `conn` must not be inside a transaction.
    """
    latest = len(MIGRATIONS)
    target = latest if target is None else target
    if not 0 <= target <= latest:
        raise ValueError(f"schema version {target} does not exist (0..{latest})")

    def check(version: int) -> None:
        if version > latest:
            path = conn.execute("PRAGMA database_list").fetchone()[2]
            raise ReasonlabError(f"store {path} has schema version {version}, this reasonlab knows "
                                 f"up to {latest}; upgrade reasonlab")

    version = conn.execute("PRAGMA user_version").fetchone()[0]
    check(version)
    if version >= target:  # the common case takes no write lock
        return version
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        check(version)
        for script in MIGRATIONS[version:target]:
            for statement in statements(script):
                conn.execute(statement)
        if version < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")  # pragmas take no parameters
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(version, target)


def _json(value) -> str | None:
    # A dataclass nested in a config (its TaskSpec) is stored as its fields; Paths and similar as
    # their text rather than refused.
    return None if value is None else json.dumps(value, default=_plain)


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _unjson(text: str | None):
    # pandas reads a NULL in a text column as NaN
    return json.loads(text) if isinstance(text, str) else None


class Store(DashboardQueries, NoteQueries, RescoreQueries, SearchQueries):
    """A connection to the run store; use as a context manager or call close()."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            workspace.ensure_home()
            path = workspace.store_path()
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = None
        self._check_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (see _write).
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout = 30000")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch to WAL mode (got {mode})")
            self._conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses at most the last commits
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._check_tables(migrate(self._conn))
        except (OSError, sqlite3.Error) as e:
            self.close()
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ReasonlabError(f"cannot open store {self.path}: {reason}{AT_FAULT}") from None
        except BaseException:
            self.close()
            raise

    def _check_file(self) -> None:
        """A store path that is a directory or read-only, named before SQLite's vaguer errors."""
        if self.path.is_dir():
            raise ReasonlabError(f"cannot open store {self.path}: it is a directory, not a file{AT_FAULT}")
        for where in (self.path, self.path.parent):  # the directory too: WAL keeps two files beside the store
            if where.exists() and not os.access(where, os.R_OK | os.W_OK):
                raise ReasonlabError(f"cannot open store {self.path}: {where} is read-only (reasonlab writes to its store, "
                                     "the dashboard too); make it writable or set REASONLAB_HOME to another directory")

    def _check_tables(self, version: int) -> None:
        """Every table that schema `version` has: a file marked with a version but lacking them (emptied,
        or another program's) would fail later, on the first query, with "no such table"."""
        mem = sqlite3.connect(":memory:", isolation_level=None)
        try:
            migrate(mem, version)
            expected = {row[0] for row in mem.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            mem.close()
        found = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if missing := sorted(expected - found):
            raise ReasonlabError(f"store {self.path} says schema version {version} but has no table "
                                 f"{', '.join(missing)}: it is not a reasonlab store, or was damaged{AT_FAULT}")

    def close(self) -> None:
        # The connection is kept, closed, so later use fails with sqlite3's "closed database".
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction. IMMEDIATE takes the write lock at BEGIN, where busy_timeout can
        wait for it; a deferred transaction that reads first can fail on upgrade in WAL mode."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params=()) -> pd.DataFrame:
        with self._lock:
            return pd.read_sql_query(sql, self._conn, params=params)

    def create_run(self, algo: str, config: dict, name: str | None = None, total: int | None = None,
                   status: str = "queued", parent_checkpoint: str | Path | None = None) -> int:
        _check_status(status)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO runs (id, name, algo, config, status, created_at, total, parent_checkpoint)"
                f" VALUES ({_next_id('runs')}, ?, ?, ?, ?, ?, ?, ?)",
                (name, algo, _json(config), status, time.time(), total,
                 None if parent_checkpoint is None else str(parent_checkpoint)))
            return cur.lastrowid

    def update_run(self, run_id: int, **fields) -> None:
        """Set columns of a run, e.g. update_run(7, status="failed", error="...", finished_at=t)."""
        if unknown := fields.keys() - RUN_UPDATABLE:
            raise ValueError(f"cannot update run column(s) {sorted(unknown)}; allowed: {sorted(RUN_UPDATABLE)}")
        if not fields:
            return
        if "status" in fields:
            _check_status(fields["status"])
        if "config" in fields:
            fields["config"] = _json(fields["config"])
        if fields.get("parent_checkpoint") is not None:
            fields["parent_checkpoint"] = str(fields["parent_checkpoint"])
        # Column names come from the whitelist above, never from the caller's strings.
        assignments = ", ".join(f"{column} = :{column}" for column in fields)
        with self._write() as conn:
            cur = conn.execute(f"UPDATE runs SET {assignments} WHERE id = :run_id", {**fields, "run_id": run_id})
            if cur.rowcount == 0:
                raise ValueError(f"no run {run_id}")

    def heartbeat(self, run_id: int, step: int | None = None) -> None:
        """Mark the run alive now (jobs treat a stale heartbeat as a dead process)."""
        fields = {"heartbeat_at": time.time()}
        if step is not None:
            fields["step"] = step
        self.update_run(run_id, **fields)

    def get_run(self, run_id: int) -> dict | None:
        with self._lock:
            cur = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,))
            row = cur.fetchone()
            columns = [d[0] for d in cur.description]
        if row is None:
            return None
        run = dict(zip(columns, row))
        run["config"] = _unjson(run["config"])
        return run

    def runs(self) -> pd.DataFrame:
        """All runs, newest first; `config` holds dicts."""
        df = self._query("SELECT * FROM runs ORDER BY created_at DESC, id DESC")
        df["config"] = df["config"].map(_unjson)
        return df

    def log_metrics(self, run_id: int, step: int, metrics: dict[str, float],
                    samples_seen: int | None = None, wall_time: float | None = None) -> None:
        """One row per metric name, all in one transaction; wall_time defaults to now (unix s)."""
        wall_time = time.time() if wall_time is None else wall_time
        # float() also unwraps numpy and 0-d torch scalars.
        rows = [(run_id, step, name, None if value is None else float(value), samples_seen, wall_time)
                for name, value in metrics.items()]
        with self._write() as conn:
            conn.executemany("INSERT INTO metrics (run_id, step, name, value, samples_seen, wall_time)"
                             " VALUES (?, ?, ?, ?, ?, ?)", rows)

    def metrics(self, run_id: int, names: Iterable[str] | None = None) -> pd.DataFrame:
        """Long format (run_id, step, name, value, samples_seen, wall_time), ordered by name, step."""
        sql, params = "SELECT * FROM metrics WHERE run_id = ?", [run_id]
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            sql += f" AND name IN ({', '.join('?' * len(names))})"
            params += names
        return self._query(sql + " ORDER BY name, step, rowid", params)

    def add_checkpoint(self, run_id: int, step: int, path: str | Path, metrics: dict | None = None) -> int:
        with self._write() as conn:
            cur = conn.execute("INSERT INTO checkpoints (id, run_id, step, path, created_at, metrics)"
                               f" VALUES ({_next_id('checkpoints')}, ?, ?, ?, ?, ?)",
                               (run_id, step, str(path), time.time(), _json(metrics)))
            return cur.lastrowid

    def update_checkpoint_metrics(self, checkpoint_id: int, metrics: dict) -> None:
        """Merge into the checkpoint's eval metrics (evaluations of several tasks add up)."""
        with self._write() as conn:
            row = conn.execute("SELECT metrics FROM checkpoints WHERE id = ?", (checkpoint_id,)).fetchone()
            if row is None:
                raise ValueError(f"no checkpoint {checkpoint_id}")
            merged = {**(_unjson(row[0]) or {}), **metrics}
            conn.execute("UPDATE checkpoints SET metrics = ? WHERE id = ?", (_json(merged), checkpoint_id))

    def checkpoints(self, run_id: int | None = None) -> pd.DataFrame:
        """Checkpoints ordered by run and step; `metrics` holds dicts (or None)."""
        sql, params = "SELECT * FROM checkpoints", []
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", [run_id]
        df = self._query(sql + " ORDER BY run_id, step, id", params)
        df["metrics"] = df["metrics"].map(_unjson)
        return df

    def truncate_run(self, run_id: int, after_step: int) -> None:
        """Forget what a run logged after `after_step` (its last checkpoint): a resumed run redoes
        those steps, so its metrics, samples and checkpoints continue without duplicates."""
        with self._write() as conn:
            conn.execute("DELETE FROM samples WHERE run_id = ? AND step > ?", (run_id, after_step))
            conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, after_step))
            conn.execute("DELETE FROM checkpoints WHERE run_id = ? AND step > ?", (run_id, after_step))

    def run_footprint(self, run_id: int) -> dict:
        """What deleting a run removes from the store: its checkpoints, samples and metric rows."""
        with self._lock:
            counts = [self._conn.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]
                      for table in ("checkpoints", "samples", "metrics")]
        return dict(zip(("checkpoints", "samples", "metrics"), counts))

    def delete_run(self, run_id: int, chunk: int = DELETE_CHUNK) -> bool:
        """Delete a run that is neither queued nor running, with its samples, metrics and
        checkpoints. False when there is no such run or it is queued or running (checked under
        the write lock, so a worker cannot claim it meanwhile). The run turns "deleting" first,
        then its samples go `chunk` at a time, each chunk its own transaction, so a training run
        writing meanwhile waits for a chunk rather than for a million rows; then the run goes with
        the rest. Its files are the caller's (engine.jobs.delete)."""
        with self._write() as conn:
            cur = conn.execute("UPDATE runs SET status = 'deleting' WHERE id = ? AND status NOT IN ('queued', 'running')",
                               (run_id,))
            if cur.rowcount == 0:
                return False
        while True:
            with self._write() as conn:
                gone = conn.execute("DELETE FROM samples WHERE id IN (SELECT id FROM samples WHERE run_id = ? LIMIT ?)",
                                    (run_id, chunk)).rowcount
            if gone < chunk:
                break
            # Let a writer that waited for this chunk in: SQLite's busy handler polls at growing
            # intervals (25 ms, then 50 ms by 128 ms of waiting), so taking the lock again at once
            # would win every race, and the writer would wait for many chunks instead of one.
            time.sleep(CHUNK_PAUSE_S)
        with self._write() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        return True

    def claim_run(self, run_id: int | None, pid: int, max_running: int = 1) -> dict | None:
        """Atomically move a queued run to running for process `pid`, if the queue allows it:
        fewer than `max_running` runs are running and no older run is still queued. `run_id` None
        claims the oldest queued run that no waiting foreground process owns (pid NULL)."""
        with self._write() as conn:
            running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
            if running >= max_running:
                return None
            oldest = conn.execute("SELECT id, pid FROM runs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
            if oldest is None:
                return None
            if run_id is None and oldest[1] is not None:
                return None  # its own foreground process will claim it
            if run_id is not None and oldest[0] != run_id:
                return None
            now = time.time()
            conn.execute("UPDATE runs SET status = 'running', pid = ?, started_at = COALESCE(started_at, ?),"
                         " heartbeat_at = ?, error = NULL, traceback = NULL WHERE id = ?",
                         (pid, now, now, oldest[0]))
        return self.get_run(oldest[0])

    def upsert_problems(self, rows: Iterable[dict]) -> None:
        """Rows need task, split, problem_id, question, answer; reference is optional."""
        rows = [{"reference": None, **row} for row in rows]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO problems (task, split, problem_id, question, answer, reference)"
                " VALUES (:task, :split, :problem_id, :question, :answer, :reference)"
                " ON CONFLICT (task, split, problem_id) DO UPDATE SET question = excluded.question,"
                " answer = excluded.answer, reference = excluded.reference", rows)

    def problems(self, task: str, split: str) -> pd.DataFrame:
        return self._query("SELECT * FROM problems WHERE task = ? AND split = ? ORDER BY problem_id",
                           [task, split])

    def add_samples(self, rows: Iterable[dict]) -> None:
        """Insert sampled solutions in one transaction (the hot path: ~100k rows in well under a
        second). Each row needs the SAMPLE_REQUIRED keys and may have the SAMPLE_OPTIONAL ones."""
        now = time.time()
        prepared = []
        # Validate before taking the write lock, so the transaction only inserts.
        for row in rows:
            if unknown := row.keys() - SAMPLE_REQUIRED - SAMPLE_OPTIONAL.keys():
                raise ValueError(f"unknown sample field(s) {sorted(unknown)}")
            if missing := SAMPLE_REQUIRED - row.keys():
                raise ValueError(f"sample is missing field(s) {sorted(missing)}")
            if row["kind"] not in SAMPLE_KINDS:
                raise ValueError(f"sample kind must be one of {SAMPLE_KINDS}, not {row['kind']!r}")
            full = {**SAMPLE_OPTIONAL, **row}
            if full["created_at"] is None:
                full["created_at"] = now
            prepared.append(full)
        names = [*sorted(SAMPLE_REQUIRED), *SAMPLE_OPTIONAL]
        columns = ", ".join(names)
        # Staged in a temporary table, then one INSERT ... SELECT: the full-text index (schema
        # migration 5) flushes at every statement, so a statement per row would be 4x slower.
        with self._write() as conn:
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS staged_samples ({columns})")
            values = ", ".join(":" + c for c in names)
            conn.executemany(f"INSERT INTO temp.staged_samples ({columns}) VALUES ({values})", prepared)
            conn.execute(f"INSERT INTO samples ({columns}) SELECT {columns} FROM temp.staged_samples ORDER BY rowid")
            conn.execute("DELETE FROM temp.staged_samples")

    def samples(self, run_id: int | None = None, checkpoint_id: int | None = None,
                problem_id: str | None = None, step: int | None = None, kind: str | None = None,
                limit: int | None = None) -> pd.DataFrame:
        """Samples matching every given filter, in insertion order."""
        filters = {"run_id": run_id, "checkpoint_id": checkpoint_id, "problem_id": problem_id,
                   "step": step, "kind": kind}
        given = {column: value for column, value in filters.items() if value is not None}
        sql = "SELECT * FROM samples"
        if given:
            sql += " WHERE " + " AND ".join(f"{column} = :{column}" for column in given)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT :limit"
            given["limit"] = int(limit)
        return self._query(sql, given)


def _next_id(table: str) -> str:
    """SQL for a new row's id: above every id the table holds or ever held (schema migration 4)."""
    return (f"(SELECT max(ifnull((SELECT max(id) FROM {table}), 0),"
            f" ifnull((SELECT max_id FROM retired_ids WHERE tbl = '{table}'), 0)) + 1)")


def _check_status(status: str) -> None:
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {RUN_STATUSES}, not {status!r}")
