"""The run store: round trips, queries, migrations, bad files, and a writer racing a reader."""

import multiprocessing
import re
import sqlite3
import threading
import time

import numpy as np
import pytest

from engine import store as store_module
from engine.errors import ReasonlabError
from engine.store import Store, migrate

CONFIG = {"lr": 1e-5, "k": 96, "tasks": ["arith"], "nested": {"clip": 0.2, "dense": False}, "seed": None}


def sample(run_id, step=0, problem_id="p0", sample_idx=0, kind="rollout", **extra):
    return {"run_id": run_id, "step": step, "kind": kind, "task": "arith", "split": "train",
            "problem_id": problem_id, "sample_idx": sample_idx, "text": "2 + 3 = 5\n#### 5", **extra}


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store.sqlite") as s:
        yield s


# --- opening -----------------------------------------------------------------------------------


def test_default_path_is_under_reasonlab_home(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONLAB_HOME", str(tmp_path / "home"))
    with Store() as s:
        assert s.path == tmp_path / "home" / "store.sqlite"
    assert s.path.exists()


def test_wal_mode_and_pragmas(store):
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_module.MIGRATIONS)


def test_unwritable_location_names_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # works even as root, where chmod does not block writes
    path = blocker / "sub" / "store.sqlite"
    with pytest.raises(ReasonlabError, match=str(path)):
        Store(path)


def test_garbage_file_names_the_path(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"this is not a sqlite database\n" * 100)
    with pytest.raises(ReasonlabError, match=str(path)):
        Store(path)


def test_reopen_keeps_data(tmp_path):
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        run_id = s.create_run("ei", CONFIG)
    with Store(path) as s:
        assert s.get_run(run_id)["config"] == CONFIG


# --- migrations --------------------------------------------------------------------------------


def test_older_version_is_migrated_keeping_rows(tmp_path, monkeypatch):
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute("INSERT INTO runs (algo, config, status, created_at) VALUES ('ppo', '{\"a\": 1}', 'finished', 1.0)")
    conn.execute("INSERT INTO metrics (run_id, step, name, value) VALUES (1, 3, 'reward', 0.5)")
    conn.close()

    # A later release appends a migration; opening the old file applies it and nothing else.
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS,
                                                     "ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'old';"])
    with Store(path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == len(store_module.MIGRATIONS)
        run = s.get_run(1)
        assert run["algo"] == "ppo" and run["config"] == {"a": 1} and run["note"] == "old"
        assert run["cancel_requested"] == 0 and run["progress"] == 0  # migration 2 reached old rows
        assert s.metrics(1)["value"].tolist() == [0.5]
        s.create_run("ei", CONFIG)  # the migrated schema still takes new rows
        assert len(s.runs()) == 2


def test_failed_migration_leaves_old_version(tmp_path, monkeypatch):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS,
                                                     "ALTER TABLE runs ADD COLUMN x TEXT;\nNOT SQL;"])
    with pytest.raises(ReasonlabError, match=str(path)):
        Store(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(store_module.MIGRATIONS) - 1
    assert "x" not in [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    conn.close()


def test_newer_version_is_rejected(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ReasonlabError, match=rf"{path} has schema version 99.*upgrade reasonlab"):
        Store(path)


# --- round trips -------------------------------------------------------------------------------


def test_run_round_trip_and_updates(store):
    run_id = store.create_run("grpo", CONFIG, name="first", total=100, parent_checkpoint=store.path.parent / "base")
    run = store.get_run(run_id)
    assert run["config"] == CONFIG
    assert (run["algo"], run["name"], run["status"], run["step"], run["total"]) == ("grpo", "first", "queued", 0, 100)
    assert run["parent_checkpoint"] == str(store.path.parent / "base")
    assert run["created_at"] <= time.time()

    store.update_run(run_id, status="running", pid=1234, started_at=5.0)
    store.heartbeat(run_id, step=np.int64(7))
    run = store.get_run(run_id)
    assert (run["status"], run["pid"], run["started_at"], run["step"]) == ("running", 1234, 5.0, 7)
    assert run["heartbeat_at"] is not None

    store.update_run(run_id, status="failed", error="boom", traceback="Traceback ...")
    assert store.get_run(run_id)["error"] == "boom"
    assert store.get_run(999) is None


def test_update_run_rejects_bad_input(store):
    run_id = store.create_run("ei", CONFIG)
    with pytest.raises(ValueError, match="id"):
        store.update_run(run_id, id=5)
    with pytest.raises(ValueError, match="status"):
        store.update_run(run_id, status="exploded")
    with pytest.raises(ValueError, match="no run"):
        store.update_run(999, step=1)


def test_runs_newest_first(store):
    ids = [store.create_run(algo, {"i": i}) for i, algo in enumerate(["ei", "ppo", "rcrl"])]
    df = store.runs()
    assert df["id"].tolist() == ids[::-1]
    assert df["config"].tolist() == [{"i": 2}, {"i": 1}, {"i": 0}]


def test_metrics_round_trip_and_ordering(store):
    run_id = store.create_run("ppo", CONFIG)
    other = store.create_run("ppo", CONFIG)
    for step in [2, 0, 1]:
        store.log_metrics(run_id, step, {"reward": step / 10, "kl": np.float32(step)}, samples_seen=step * 64)
    store.log_metrics(other, 0, {"reward": 9.0})

    df = store.metrics(run_id)
    assert list(df.columns) == ["run_id", "step", "name", "value", "samples_seen", "wall_time"]
    assert df[["name", "step"]].values.tolist() == [["kl", 0], ["kl", 1], ["kl", 2],
                                                   ["reward", 0], ["reward", 1], ["reward", 2]]
    assert df["value"].tolist() == pytest.approx([0, 1, 2, 0, 0.1, 0.2])
    assert df["samples_seen"].tolist() == [0, 64, 128, 0, 64, 128]

    assert store.metrics(run_id, names=["reward"])["step"].tolist() == [0, 1, 2]
    assert store.metrics(run_id, names="kl")["name"].unique().tolist() == ["kl"]


def test_checkpoint_round_trip(store):
    run_id = store.create_run("ei", CONFIG)
    first = store.add_checkpoint(run_id, 10, store.path.parent / "ckpt-10")
    second = store.add_checkpoint(run_id, 20, "ckpt-20", metrics={"maj@1": 0.3})
    store.update_checkpoint_metrics(first, {"maj@1": 0.2})
    store.update_checkpoint_metrics(first, {"pass@4": 0.5})  # merges with earlier evaluations

    df = store.checkpoints(run_id)
    assert df["id"].tolist() == [first, second]
    assert df["path"].tolist() == [str(store.path.parent / "ckpt-10"), "ckpt-20"]
    assert df["metrics"].tolist() == [{"maj@1": 0.2, "pass@4": 0.5}, {"maj@1": 0.3}]
    assert len(store.checkpoints()) == 2
    with pytest.raises(ValueError, match="no checkpoint"):
        store.update_checkpoint_metrics(999, {})


def test_problems_upsert(store):
    rows = [{"task": "arith", "split": "test", "problem_id": f"p{i}", "question": f"q{i}", "answer": str(i)}
            for i in range(3)]
    store.upsert_problems(rows)
    store.upsert_problems([{**rows[1], "answer": "42", "reference": "6 * 7 = 42\n#### 42"}])
    df = store.problems("arith", "test")
    assert df["problem_id"].tolist() == ["p0", "p1", "p2"]
    assert df["answer"].tolist() == ["0", "42", "2"]
    assert df["reference"].isna().tolist() == [True, False, True]  # pandas shows NULL as NaN
    assert df["reference"][1] == "6 * 7 = 42\n#### 42"
    assert store.problems("arith", "train").empty


def test_samples_round_trip_and_filters(store):
    run_id = store.create_run("ei", CONFIG)
    other = store.create_run("ei", CONFIG)
    ckpt = store.add_checkpoint(run_id, 1, "ckpt-1")
    store.add_samples(sample(run_id, step=s, problem_id=p, sample_idx=i, correct=(i == 0), reward=float(i == 0),
                             n_tokens=np.int64(12), logprob=-3.5, answer="5")
                      for s in [0, 1] for p in ["p0", "p1"] for i in range(2))
    store.add_samples([sample(run_id, step=1, problem_id="p0", kind="eval", checkpoint_id=ckpt),
                       sample(other, problem_id="p0")])

    everything = store.samples()
    assert len(everything) == 10
    first = everything.iloc[0]
    assert (first["text"], first["answer"], first["correct"], first["reward"], first["n_tokens"], first["logprob"]) \
        == ("2 + 3 = 5\n#### 5", "5", 1, 1.0, 12, -3.5)
    assert len(store.samples(run_id=run_id)) == 9
    assert len(store.samples(run_id=run_id, step=1)) == 5
    assert len(store.samples(run_id=run_id, problem_id="p0")) == 5
    assert len(store.samples(run_id=run_id, kind="rollout")) == 8
    assert store.samples(checkpoint_id=ckpt)["kind"].tolist() == ["eval"]
    assert len(store.samples(run_id=run_id, problem_id="p1", step=0, kind="rollout")) == 2
    assert store.samples(run_id=run_id, limit=3)["id"].tolist() == everything["id"].tolist()[:3]


def test_add_samples_rejects_bad_rows(store):
    run_id = store.create_run("ei", CONFIG)
    with pytest.raises(ValueError, match="kind"):
        store.add_samples([sample(run_id, kind="train")])
    with pytest.raises(ValueError, match="missing.*text"):
        store.add_samples([{k: v for k, v in sample(run_id).items() if k != "text"}])
    with pytest.raises(ValueError, match="unknown.*colour"):
        store.add_samples([sample(run_id, colour="red")])
    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
        store.add_samples([sample(run_id), sample(999)])
    assert store.samples().empty  # the failed batch left nothing behind


def test_empty_results_have_columns(store):
    assert list(store.runs().columns)[:4] == ["id", "name", "algo", "config"]
    assert "samples_seen" in store.metrics(1).columns
    assert "metrics" in store.checkpoints().columns
    assert "reference" in store.problems("arith", "test").columns
    df = store.samples(run_id=1)
    assert df.empty and {"checkpoint_id", "sample_idx", "logprob", "created_at"} <= set(df.columns)


def test_many_samples_insert_quickly(store):
    run_id = store.create_run("ei", CONFIG)
    start = time.perf_counter()
    store.add_samples(sample(run_id, step=i // 1000, problem_id=f"p{i % 100}", sample_idx=i % 10, reward=1.0)
                      for i in range(100_000))
    assert time.perf_counter() - start < 10  # loose bound: catches row-at-a-time commits, not noise
    assert len(store.samples(run_id=run_id, step=3)) == 1000


# --- concurrency -------------------------------------------------------------------------------


def test_threads_share_one_store(store):
    run_id = store.create_run("ei", CONFIG)

    def log(thread):
        for step in range(50):
            store.log_metrics(run_id, step, {f"t{thread}": 1.0})
            store.metrics(run_id)

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.metrics(run_id)) == 200


WRITER_TRANSACTIONS = 300


def _writer(path, run_id, started):
    """Child process: many small transactions, like a training loop logging as it goes."""
    with Store(path) as s:
        for step in range(WRITER_TRANSACTIONS):
            s.add_samples([sample(run_id, step=step, sample_idx=i) for i in range(5)])
            s.log_metrics(run_id, step, {"reward": 0.5, "loss": 1.0})
            s.heartbeat(run_id, step=step)
            if step == 0:
                started.set()


def test_concurrent_writer_and_reader(tmp_path):
    path = tmp_path / "store.sqlite"
    with Store(path) as reader:
        run_id = reader.create_run("ei", CONFIG, status="running")
        ctx = multiprocessing.get_context("spawn")
        started = ctx.Event()
        writer = ctx.Process(target=_writer, args=(path, run_id, started))
        writer.start()
        assert started.wait(timeout=60), "writer never committed"

        # Every read must succeed while the writer commits; what is visible only grows.
        reads, last = 0, (0, 0, 0)
        while writer.is_alive() or reads == 0:
            n_samples = len(reader.samples(run_id=run_id))
            n_metrics = len(reader.metrics(run_id))
            step = reader.get_run(run_id)["step"]
            assert n_samples >= last[0] and n_metrics >= last[1] and step >= last[2]
            last = (n_samples, n_metrics, step)
            reads += 1
        writer.join(timeout=60)
        assert writer.exitcode == 0

        assert len(reader.samples(run_id=run_id)) == 5 * WRITER_TRANSACTIONS
        assert len(reader.metrics(run_id)) == 2 * WRITER_TRANSACTIONS
        assert reader.get_run(run_id)["step"] == WRITER_TRANSACTIONS - 1
        assert reader._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- deleting runs ---------------------------------------------------------------------------------


def test_delete_run_takes_its_rows_and_leaves_the_others(store):
    keep, gone = store.create_run("ei", CONFIG, status="finished"), store.create_run("ei", CONFIG, status="failed")
    for run_id in (keep, gone):
        ckpt = store.add_checkpoint(run_id, 1, f"/ck/{run_id}")
        store.log_metrics(run_id, 1, {"reward": 0.5})
        store.add_samples([sample(run_id, step=1, kind="eval", checkpoint_id=ckpt, sample_idx=i) for i in range(3)])
    assert store.run_footprint(gone) == {"checkpoints": 1, "samples": 3, "metrics": 1}
    assert store.delete_run(gone, chunk=2)  # two transactions of samples, then the run
    assert store.get_run(gone) is None and store.run_footprint(gone) == {"checkpoints": 0, "samples": 0, "metrics": 0}
    assert store.run_footprint(keep) == {"checkpoints": 1, "samples": 3, "metrics": 1}
    assert not store.delete_run(gone)  # already gone


@pytest.mark.parametrize("status", ["queued", "running"])
def test_delete_run_refuses_a_run_that_is_queued_or_running(store, status):
    run_id = store.create_run("ei", CONFIG, status=status)
    store.log_metrics(run_id, 1, {"reward": 0.5})
    assert not store.delete_run(run_id)
    assert store.get_run(run_id)["status"] == status and store.run_footprint(run_id)["metrics"] == 1


def test_ids_of_deleted_runs_and_checkpoints_are_never_handed_out_again(store):
    a, b = store.create_run("ei", CONFIG, status="finished"), store.create_run("ei", CONFIG, status="finished")
    store.add_checkpoint(b, 1, "/ck/1")
    last_ckpt = store.add_checkpoint(b, 2, "/ck/2")
    store.truncate_run(b, after_step=1)  # a resume forgets the newest checkpoint
    assert store.add_checkpoint(b, 2, "/ck/2") == last_ckpt + 1
    store.delete_run(b)  # the newest run
    c = store.create_run("ei", CONFIG)
    assert c == b + 1 and store.add_checkpoint(c, 0, "/base") == last_ckpt + 2
    store.update_run(c, status="cancelled")
    store.delete_run(a)  # an older one leaves the next id as it was
    assert store.create_run("ei", CONFIG) == c + 1


def test_a_store_from_before_migration_4_keeps_counting_its_ids(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=3)
    for _ in range(3):
        conn.execute("INSERT INTO runs (algo, config, status, created_at) VALUES ('ei', '{}', 'finished', 1.0)")
    conn.close()
    with Store(path) as s:
        assert s.delete_run(3)
        assert s.create_run("ei", CONFIG) == 4


# --- Workspace files the store reads: one clear error naming the file (issue 14, item 4) ---

def test_a_directory_where_the_store_goes_is_named(tmp_path):
    path = tmp_path / "store.sqlite"
    path.mkdir()
    with pytest.raises(ReasonlabError, match=f"cannot open store {path}: it is a directory, not a file; move"):
        Store(path)


@pytest.mark.parametrize("blocked", ["file", "directory"])
def test_a_read_only_store_or_workspace_is_named(tmp_path, monkeypatch, blocked):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    where = path if blocked == "file" else tmp_path
    real = store_module.os.access
    # chmod does not stop root (the tests may run as root): the permission check is what is tested
    monkeypatch.setattr(store_module.os, "access", lambda p, mode: real(p, mode) and str(p) != str(where))
    with pytest.raises(ReasonlabError, match=f"cannot open store {path}: {where} is read-only"):
        Store(path)


def test_a_store_marked_with_a_version_but_without_its_tables_is_named(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(store_module.MIGRATIONS)}")
    conn.execute("CREATE TABLE other (x)")
    conn.commit()
    conn.close()
    fresh = sqlite3.connect(":memory:", isolation_level=None)  # the tables of the newest schema
    store_module.migrate(fresh)
    tables = sorted(r[0] for r in fresh.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert {"checkpoints", "metrics", "problems", "retired_ids", "runs", "samples", "notes"} <= set(tables)
    with pytest.raises(ReasonlabError, match=re.escape(
            f"store {path} says schema version {len(store_module.MIGRATIONS)} but has no table {', '.join(tables)}: "
            "it is not a reasonlab store")):
        Store(path)


def test_another_programs_database_is_named(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (x)")  # version 0, but a table the first migration creates
    conn.commit()
    conn.close()
    with pytest.raises(ReasonlabError, match=f"cannot open store {path}: table runs already exists; move the file aside"):
        Store(path)


def test_an_empty_file_becomes_a_new_store(tmp_path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"")
    with Store(path) as s:
        assert s.runs().empty


@pytest.mark.parametrize("content", [b"this is not a sqlite database\n" * 100, "version 99", "no tables"])
def test_home_shows_a_broken_store_as_an_error_and_does_not_crash(workspace, content):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import APP

    workspace.mkdir(parents=True)
    path = workspace / "store.sqlite"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {99 if content == 'version 99' else len(store_module.MIGRATIONS)}")
        conn.commit()
        conn.close()
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert str(path) in at.error[0].value


@pytest.mark.parametrize("content", ["{half", "[1, 2]", '{"phase": 3}', '{"phase": "building", "step": "x", "pid": "y"}'])
def test_a_corrupt_quickstart_status_is_reported_failed_naming_the_file(workspace, content):
    from engine import quickstart

    workspace.mkdir(parents=True)
    (workspace / "quickstart.json").write_text(content)
    state = quickstart.status()
    assert state["phase"] == "failed" and (str(workspace / "quickstart.json") in state["error"]
                                           or content.startswith('{"phase": "building"'))
    assert not quickstart.running()


def test_home_shows_a_corrupt_quickstart_status_and_does_not_crash(workspace):
    from streamlit.testing.v1 import AppTest

    from tests.helpers import APP

    workspace.mkdir(parents=True)
    (workspace / "quickstart.json").write_text('{"phase": "launched", "run_id": [1], "probes": 7, "loss": "x"}')
    assert not AppTest.from_file(APP, default_timeout=60).run().exception
    (workspace / "quickstart.json").write_text("{half")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert str(workspace / "quickstart.json") in at.error[0].value
