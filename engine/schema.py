"""The store's schema, as migrations (engine/store.py applies them): append a SQL script to
MIGRATIONS and never edit a shipped one; `PRAGMA user_version` records how many have been applied.
Below them, the values and columns the tables take (run statuses, sample fields)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

# MIGRATIONS[i] brings schema version i to i + 1. Times are unix seconds (REAL); JSON is TEXT.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        name TEXT,
        algo TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL, finished_at REAL, heartbeat_at REAL,
        step INTEGER NOT NULL DEFAULT 0, total INTEGER, pid INTEGER,
        error TEXT, traceback TEXT,
        parent_checkpoint TEXT  -- path of the checkpoint training started from
    );
    CREATE TABLE metrics (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL, samples_seen INTEGER, wall_time REAL
    );
    CREATE INDEX metrics_run_name_step ON metrics(run_id, name, step);
    CREATE TABLE checkpoints (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        path TEXT NOT NULL,
        created_at REAL NOT NULL,
        metrics TEXT
    );
    CREATE INDEX checkpoints_run_step ON checkpoints(run_id, step);
    CREATE TABLE problems (
        task TEXT NOT NULL, split TEXT NOT NULL, problem_id TEXT NOT NULL,
        question TEXT NOT NULL, answer TEXT NOT NULL,
        reference TEXT,  -- a reference solution, for dense rewards
        PRIMARY KEY (task, split, problem_id)
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        checkpoint_id INTEGER REFERENCES checkpoints(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        kind TEXT NOT NULL,  -- 'rollout' (training) or 'eval'
        task TEXT NOT NULL, split TEXT NOT NULL, problem_id TEXT NOT NULL,
        sample_idx INTEGER NOT NULL,  -- which of the K samples drawn for this problem
        text TEXT NOT NULL,
        answer TEXT,  -- extracted final answer, NULL when none was found
        correct INTEGER, reward REAL, n_tokens INTEGER,
        logprob REAL,  -- sum of token log-probabilities
        created_at REAL NOT NULL
    );
    CREATE INDEX samples_run_step ON samples(run_id, step);
    CREATE INDEX samples_checkpoint_problem ON samples(checkpoint_id, problem_id);
    CREATE INDEX samples_run_problem ON samples(run_id, problem_id);
    """,
    # 2: jobs. cancel_requested is set by `reasonlab cancel` and read by the training loop at each
    # step; progress (0..1) and phase ("round 2/4: sampling") feed progress bars and ETAs.
    """
    ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN progress REAL NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN phase TEXT;
    CREATE INDEX runs_status ON runs(status, id);
    """,
    # 3: the dashboard's per-problem summaries of one step's samples (solve rates, greedy
    # correctness, distinct answers) read this covering index alone, never the sample texts.
    """
    CREATE INDEX samples_run_kind_step ON samples(run_id, kind, step, problem_id, sample_idx, correct, answer);
    """,
    # 4: ids are never reused. SQLite gives a new row the largest id + 1, so deleting the newest
    # run (or truncating a resumed run's last checkpoint) would hand its id to the next one, and
    # anything keyed on it (a dashboard cache, a link, a note) would silently mean another run.
    # Deletes record the largest id they removed; inserts start above it (Store._next_id).
    """
    CREATE TABLE retired_ids (tbl TEXT PRIMARY KEY, max_id INTEGER NOT NULL);
    CREATE TRIGGER runs_retire_id AFTER DELETE ON runs BEGIN
        INSERT INTO retired_ids VALUES ('runs', OLD.id)
        ON CONFLICT(tbl) DO UPDATE SET max_id = max(max_id, excluded.max_id);
    END;
    CREATE TRIGGER checkpoints_retire_id AFTER DELETE ON checkpoints BEGIN
        INSERT INTO retired_ids VALUES ('checkpoints', OLD.id)
        ON CONFLICT(tbl) DO UPDATE SET max_id = max(max_id, excluded.max_id);
    END;
    """,
]


# "deleting": a delete took the run and is removing its samples (a delete interrupted midway leaves
# it so; deleting it again finishes the job). Nothing claims, resumes or cancels such a run.
RUN_STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted", "deleting")
# eval_deep: the larger evaluation of a run's base and last checkpoint (RunConfig.deep_eval_k),
# kept apart from the evaluation at every checkpoint so that every checkpoint's has the same K.
DEEP_EVAL = "eval_deep"
SAMPLE_KINDS = ("rollout", "eval", DEEP_EVAL)
# Columns update_run may set; id, algo and created_at are fixed at creation.
RUN_UPDATABLE = {"name", "config", "status", "started_at", "finished_at", "heartbeat_at", "step",
                 "total", "pid", "error", "traceback", "parent_checkpoint", "cancel_requested",
                 "progress", "phase"}
SAMPLE_REQUIRED = {"run_id", "step", "kind", "task", "split", "problem_id", "sample_idx", "text"}
SAMPLE_OPTIONAL = {"checkpoint_id": None, "answer": None, "correct": None, "reward": None,
                   "n_tokens": None, "logprob": None, "created_at": None}
SAMPLE_COLUMNS = {"id", *SAMPLE_REQUIRED, *SAMPLE_OPTIONAL}


def statements(script: str) -> Iterator[str]:
    """Split a script into statements (sqlite3.complete_statement knows about quotes and triggers)."""
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]}")
