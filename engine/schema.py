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
    # 5: full-text search over sample texts (engine/search.py). External content: the index holds
    # tokens only and reads text from samples, kept in step by the triggers (a cascade from runs or
    # checkpoints fires them too); 'rebuild' indexes the rows already there. columnsize=0: no
    # per-row sizes, which only relevance ranking (bm25) reads; results are grouped, not ranked.
    # Tokenizer, measured on 1M fabricated samples ("3 * 4 = 12\n12 + 5 = 17\n#### 17"):
    #   unicode61: 13 MB, built in 1.0 s; a word or number is a token, so "17" finds 17 and not
    #     117; symbols are not indexed, so "12 + 5" is the phrase 12 5 (also "12 - 5"): search.py
    #     checks the literal text of those candidates.
    #   unicode61 with tokenchars '+-*/=#': 37 MB; "12+5" or "####17" become single tokens, so 5 or
    #     17 no longer finds them.
    #   trigram: 101 MB, 6.5 s; substrings, but none shorter than 3 characters: "17" finds nothing.
    # remove_diacritics 0 and categories 'L* N*' (letters and numbers; not Co) make a token what
    # Python's str.isalnum calls alphanumeric, so the literal check agrees with the index.
    """
    CREATE VIRTUAL TABLE samples_fts USING fts5(text, content='samples', content_rowid='id', columnsize=0,
        tokenize="unicode61 remove_diacritics 0 categories 'L* N*'");
    CREATE TRIGGER samples_fts_insert AFTER INSERT ON samples BEGIN
        INSERT INTO samples_fts (rowid, text) VALUES (NEW.id, NEW.text);
    END;
    CREATE TRIGGER samples_fts_delete AFTER DELETE ON samples BEGIN
        INSERT INTO samples_fts (samples_fts, rowid, text) VALUES ('delete', OLD.id, OLD.text);
    END;
    CREATE TRIGGER samples_fts_update AFTER UPDATE OF text ON samples BEGIN
        INSERT INTO samples_fts (samples_fts, rowid, text) VALUES ('delete', OLD.id, OLD.text);
        INSERT INTO samples_fts (rowid, text) VALUES (NEW.id, NEW.text);
    END;
    INSERT INTO samples_fts (samples_fts) VALUES ('rebuild');
    """,
    # 6: notes (engine/notes.py): a person's tag and text on a problem, or on one sample. A note on a
    # problem outlives the run it was written in (run_id becomes NULL); a note on a sample goes with
    # the sample. The indexes serve the pages' look-ups and the foreign keys' checks on deletes.
    """
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        task TEXT NOT NULL, split TEXT NOT NULL, problem_id TEXT NOT NULL,
        sample_id INTEGER REFERENCES samples(id) ON DELETE CASCADE,  -- NULL: a note on the problem
        tag TEXT,
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX notes_problem ON notes(task, problem_id);
    CREATE INDEX notes_sample ON notes(sample_id);
    CREATE INDEX notes_run ON notes(run_id);
    """,
    # 7: re-scorings (engine/rescore.py): a run's stored samples judged again by another scorer
    # (strict `#### N`, last number, math-verify, the task's code as it is now) without resampling.
    # samples.answer / correct are never changed; each re-scoring's verdicts are rows of its own.
    # finished_at NULL: still scoring, or cut short (nothing reads such a one). A sample the
    # re-scoring could not judge (its problem could not be rebuilt) has no row, and is counted.
    # The index on sample_id serves the cascade when samples are deleted (a run in chunks, a
    # resume's truncation): without it every deleted sample would scan the whole table. Ids are
    # retired as migration 4's are, so a cached view keyed on a re-scoring id never means another.
    """
    CREATE TABLE rescorings (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        scorer TEXT NOT NULL,  -- strict, flexible, math-verify, task
        options TEXT NOT NULL,  -- JSON: what the scorer was run with (the task spec, limits, version)
        created_at REAL NOT NULL,
        finished_at REAL,
        samples INTEGER NOT NULL DEFAULT 0,  -- samples judged
        unscored INTEGER NOT NULL DEFAULT 0  -- samples left unjudged: their problem could not be rebuilt
    );
    CREATE INDEX rescorings_run ON rescorings(run_id, id);
    CREATE TABLE rescored_samples (
        rescoring_id INTEGER NOT NULL REFERENCES rescorings(id) ON DELETE CASCADE,
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        answer TEXT,  -- the answer this scorer extracted, NULL when none
        correct INTEGER NOT NULL,
        PRIMARY KEY (rescoring_id, sample_id)
    ) WITHOUT ROWID;
    CREATE INDEX rescored_samples_sample ON rescored_samples(sample_id);
    CREATE TRIGGER rescorings_retire_id AFTER DELETE ON rescorings BEGIN
        INSERT INTO retired_ids VALUES ('rescorings', OLD.id)
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
