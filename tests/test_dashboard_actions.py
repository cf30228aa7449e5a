"""The dashboard's queries only read (the pages cache them); every change is an action of
engine/dashboard/actions.py, and a run whose process died reads as interrupted once refreshed."""

import os
import time

import pytest

from engine import dashboard
from engine.assets import SHIPPED_NAME
from engine.dashboard import actions
from engine.store import Store
from tests.helpers import dead_pid


@pytest.fixture
def store(fabricated):
    with Store() as s:
        yield s, fabricated


def writes(store) -> tuple[int, int]:
    """Changes made through this connection, and a number that moves when another connection commits."""
    return store._conn.total_changes, store._conn.execute("PRAGMA data_version").fetchone()[0]


def test_queries_write_nothing_and_a_dead_run_reads_running_until_refreshed(store, workspace):
    s, ids = store
    ei = ids["runs"]["ei"]
    run_id = s.create_run("ei", {"base": "b", "rounds": 4}, total=4, status="running")
    s.update_run(run_id, pid=dead_pid(), started_at=time.time() - 60, heartbeat_at=time.time(), step=1)
    before = writes(s)

    runs = dashboard.runs_table(s)
    run = dashboard.run_detail(s, run_id)
    dashboard.run_log(s, run, dashboard.run_metrics(s, run_id))
    dashboard.deletion_summary(s, dashboard.run_detail(s, ei))
    dashboard.checkpoints_table(s)
    dashboard.evaluated_checkpoints(s)
    dashboard.start_points(s)
    step = dashboard.sample_steps(s, ei, "eval")[-1]
    problem = dashboard.problem_table(s, ei, "eval", step)["problem_id"].iloc[0]
    dashboard.problem_samples(s, ei, "eval", step, problem)
    dashboard.problem_notes(s, ei, problem)
    dashboard.problem_history(s, ei, problem)
    dashboard.run_curves(s, ei, n_boot=5)

    assert writes(s) == before
    assert runs.set_index("id").at[run_id, "status"] == "running" and run["status"] == "running"
    assert not (workspace / "checkpoints" / SHIPPED_NAME).exists()  # start_points lists; it copies nothing

    assert actions.refresh(s) == [run_id]
    assert writes(s) != before
    assert dashboard.runs_table(s).set_index("id").at[run_id, "status"] == "interrupted"
    detail = dashboard.run_detail(s, run_id)
    assert detail["status"] == "interrupted" and "died" in detail["error"]
    assert actions.refresh(s) == []  # nothing left to mark


def test_refresh_keeps_a_live_run_running(store):
    s, _ = store
    run_id = s.create_run("ei", {"base": "b", "rounds": 4}, total=4, status="running")
    s.update_run(run_id, pid=os.getpid(), started_at=time.time(), heartbeat_at=time.time())
    assert actions.refresh(s) == []
    assert dashboard.run_detail(s, run_id)["status"] == "running"


def test_the_shipped_base_is_a_start_point_once_copied(store, workspace):
    s, _ = store
    assert SHIPPED_NAME not in [label for label, _ in dashboard.start_points(s)]
    assert actions.copy_shipped_base() == workspace / "checkpoints" / SHIPPED_NAME
    assert [label for label, _ in dashboard.start_points(s)][:2] == [SHIPPED_NAME, "base-tiny"]


def test_notes_are_added_and_deleted_through_actions(store):
    s, ids = store
    ei = ids["runs"]["ei"]
    note = actions.add_note(s, "forgot the carry", "arithmetic", run_id=ei, problem_id="test-0")
    assert list(dashboard.problem_notes(s, ei, "test-0")["id"]) == [note]
    actions.delete_note(s, note)
    assert dashboard.problem_notes(s, ei, "test-0").empty


def test_cancel_resume_and_delete_go_through_actions(store, monkeypatch):
    from engine import jobs

    s, ids = store
    spawned = []
    monkeypatch.setattr(jobs, "spawn_worker", lambda: spawned.append(True))
    grpo = ids["runs"]["grpo"]  # failed: resumable
    assert actions.resume_run(s, grpo) == f"run {grpo} queued to resume from its last checkpoint"
    assert s.get_run(grpo)["status"] == "queued" and spawned == [True]
    assert actions.cancel_run(s, grpo) == f"run {grpo} cancelled"
    assert actions.delete_run(s, grpo).startswith(f"run {grpo} deleted")
    assert s.get_run(grpo) is None


# -- the pages refresh before they read ------------------------------------------------------------


def died_while_running(store) -> int:
    run_id = store.create_run("ei", {"base": "b", "rounds": 4}, total=4, status="running")
    store.update_run(run_id, pid=dead_pid(), started_at=time.time() - 60, heartbeat_at=time.time(), step=1)
    return run_id


def test_the_runs_page_shows_a_run_whose_process_died_as_interrupted(workspace):
    from tests.helpers import open_page

    with Store() as s:
        run_id = died_while_running(s)
    at = open_page("runs", {"run": str(run_id)})
    assert not at.exception
    assert at.dataframe[0].value.set_index("id").at[run_id, "status"] == "interrupted"
    assert at.get("progress")[0].proto.text.startswith("interrupted · step 1 of 4")
    assert "died" in at.warning[0].value


@pytest.mark.parametrize("name", ["home", "solutions", "search"])
def test_every_page_showing_run_statuses_shows_a_dead_run_as_interrupted(name, fabricated):
    from tests.helpers import open_page

    with Store() as s:
        run_id = died_while_running(s)
    at = open_page(name)
    assert not at.exception
    if name == "home":
        assert at.dataframe[0].value.set_index("id").at[run_id, "status"] == "interrupted"
    else:  # the run picker's labels name each run's status
        assert f"run {run_id} · ei · interrupted" in next(box for box in at.selectbox if box.label == "Run").options


def test_the_findings_queries_read_and_leave_copying_the_base_to_the_page(store, workspace):
    from engine.dashboard import findings as board
    from engine.errors import ReasonlabError

    s, _ = store
    before = writes(s)
    with pytest.raises(ReasonlabError, match="base"):  # nothing to start from until the page copies it
        board.suite_runs(s, "smoke")
    assert not (workspace / "checkpoints" / SHIPPED_NAME).exists() and writes(s) == before
    assert actions.copy_shipped_base() == workspace / "checkpoints" / SHIPPED_NAME
    runs = board.suite_runs(s, "smoke")
    assert runs["status"].eq("missing").all() and writes(s) == before
