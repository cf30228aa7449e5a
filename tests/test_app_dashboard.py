"""What the pages call: the store's aggregated queries, engine.dashboard's views, engine.launch's form
and validation, and engine.quickstart (a real one, tiny, in the background)."""

import html
import json
import os
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt  # CommonMark, as Streamlit's markdown parses it

from engine import dashboard, launch, quickstart
from engine.tasks import get_task
from engine.config import CONFIGS
from engine.launch import describe
from engine.model.presets import untrained_checkpoint
from engine.store import Store
from tests.dashboard_store import fabricate_store
from tests.helpers import BUDGETS, SMALL, wait_for


@pytest.fixture
def store(workspace):
    ids = fabricate_store(workspace, problems=5, k=6, ei_rounds=2, ppo_checkpoints=1, rollout_problems=3)
    with Store() as s:
        yield s, ids


# -- store queries ----------------------------------------------------------------------------------


def test_problem_summary_matches_the_samples(store):
    s, ids = store
    ei = ids["runs"]["ei"]
    summary = s.problem_summary(ei, "eval", 2).set_index("problem_id")
    rows = s.samples(run_id=ei, kind="eval", step=2)
    for problem_id, g in rows.groupby("problem_id"):
        drawn, greedy = g[g["sample_idx"] >= 0], g[g["sample_idx"] < 0]
        assert summary.at[problem_id, "samples"] == len(drawn) == 6
        assert summary.at[problem_id, "correct"] == drawn["correct"].sum()
        assert summary.at[problem_id, "greedy_correct"] == greedy["correct"].iloc[0]
        assert summary.at[problem_id, "distinct_answers"] == drawn["answer"].dropna().nunique()


def test_problem_summary_reads_the_covering_index_only(store):
    s, _ = store
    plan = " ".join(str(r) for r in s._conn.execute(
        "EXPLAIN QUERY PLAN SELECT problem_id, SUM(correct) FROM samples INDEXED BY samples_run_kind_step"
        " WHERE run_id = 1 AND kind = 'eval' AND step = 2 GROUP BY problem_id").fetchall())
    assert "COVERING INDEX samples_run_kind_step" in plan


def test_sample_rows_selects_columns_and_problems(store):
    s, ids = store
    rows = s.sample_rows(["problem_id", "correct"], run_id=ids["runs"]["ei"], kind="eval", problem_ids=["test-1"])
    assert list(rows.columns) == ["problem_id", "correct"] and set(rows["problem_id"]) == {"test-1"}
    assert len(rows) == 3 * 7  # three checkpoints x (greedy + 6)
    assert s.sample_rows(["id"], problem_ids=[]).empty
    with pytest.raises(ValueError, match="unknown sample column"):
        s.sample_rows(["text; DROP TABLE samples"])


def test_answer_counts_and_metrics_version(store):
    s, ids = store
    counts = s.answer_counts(ids["runs"]["ei"], "test-0")
    assert counts.groupby("step")["count"].sum().tolist() == [6, 6, 6]  # greedy rows left out
    before = s.metrics_version(ids["runs"]["ei"])
    s.log_metrics(ids["runs"]["ei"], 3, {"reward": 1.0})
    assert s.metrics_version(ids["runs"]["ei"]) != before


# -- dashboard views --------------------------------------------------------------------------------


def test_runs_table_and_checkpoints(store):
    s, ids = store
    runs = dashboard.runs_table(s)
    assert list(runs["id"]) == [3, 2, 1] and list(runs["checkpoints"]) == [0, 2, 3]
    assert runs.set_index("id").at[1, "maj@1"] is not None and runs.set_index("id").at[1, "name"] == "quickstart"
    table = dashboard.checkpoints_table(s)
    assert list(table["label"])[:3] == ["run 1 ei · step 0", "run 1 ei · step 1", "run 1 ei · step 2"]
    assert table["evaluated"].all() and table["pass@K"].between(0, 1).all()
    assert dashboard.default_run(runs) == 1  # the PPO run: the newest with checkpoints


def test_problem_table_statuses_and_questions(store):
    s, ids = store
    table = dashboard.problem_table(s, ids["runs"]["ei"], "eval", 2)
    assert list(table["problem_id"]) == [f"test-{i}" for i in range(5)]
    assert table["question"].str.len().gt(10).all()
    for _, row in table.iterrows():
        expected = ("solved" if row["greedy_correct"] == 1 else "unsolved" if row["correct"] > 0 else "never solved")
        assert row["status"] == expected
    assert len(dashboard.filter_problems(table, "unsolved")) == (table["status"] != "solved").sum()
    assert list(dashboard.filter_problems(table, contains="TEST-3")["problem_id"]) == ["test-3"]
    rollouts = dashboard.problem_table(s, ids["runs"]["ei"], "rollout", 1)
    assert rollouts["greedy_correct"].isna().all() and rollouts["split"].eq("train").all()
    assert rollouts["question"].str.len().gt(10).all()


def test_tree_nodes_and_filters(store):
    s, ids = store
    samples = dashboard.problem_samples(s, ids["runs"]["ei"], "eval", 2, "test-2")
    assert list(samples["sample_idx"]) == list(range(-1, 6))
    nodes = dashboard.tree(samples)
    assert nodes["count"].iloc[0] == 6  # the greedy row is not in the tree
    child = nodes["id"].iloc[1]
    through = dashboard.node_samples(samples, nodes, child)
    assert len(through) == nodes.set_index("id").at[child, "count"]
    assert dashboard.node_label(nodes.iloc[1]).startswith("· ")
    assert (dashboard.filter_samples(samples, "wrong")["correct"] == 0).all()
    one = samples["answer"].dropna().iloc[0]
    assert set(dashboard.filter_samples(samples, answers=[one])["answer"]) == {one}
    top = dashboard.distinct_texts(samples)
    assert top["count"].sum() <= len(samples) and top["count"].is_monotonic_decreasing


def test_problem_history_and_answer_distribution(store):
    s, ids = store
    history = dashboard.problem_history(s, ids["runs"]["ei"], "test-0")
    assert list(history["step"]) == [0, 1, 2] and history["greedy"].str.contains("####").any()
    answers = dashboard.answer_distribution(s, ids["runs"]["ei"], "test-0")
    assert answers["correct"].dtype == bool and set(answers["step"]) == {0, 1, 2}


def test_curves_diversity_and_comparison(store):
    s, ids = store
    first, *_, last = ids["checkpoints"][ids["runs"]["ei"]]
    curves = dashboard.pass_at_k(s, [first, last], rerank=True, n_boot=20)
    assert set(curves["metric"]) == {"pass", "maj", "rerank"} and sorted(set(curves["k"])) == [1, 2, 3, 4, 6]
    assert set(curves["label"]) == {"run 1 ei · step 0", "run 1 ei · step 2"}
    over = dashboard.run_curves(s, ids["runs"]["ei"], n_boot=20)
    assert set(over["metric"]) == {"maj@1", "pass@1", "pass@6", "maj@6"}
    div = dashboard.diversity_over_training(s, ids["runs"]["ei"], problems=3)
    assert list(div["step"]) == [0, 1, 2]
    per = dashboard.diversity_per_problem(s, ids["runs"]["ei"], 2, problems=None)
    assert len(per) == 5 and per["solve_rate"].between(0, 1).all()
    comparison = dashboard.comparison(s, first, last, n_boot=20)
    assert len(comparison.per_problem) == 5
    pairs = dashboard.aligned(s, first, last, "test-0")
    assert len(pairs) == 7 and {"text_a", "text_b", "diff"} <= set(pairs.columns)


def test_runs_side_by_side_name_k_and_skip_runs_without_evaluations(store):
    s, ids = store
    ei, ppo = ids["runs"]["ei"], ids["runs"]["ppo"]
    waiting = s.create_run("grpo", {"base": "b"})  # nothing evaluated yet
    table = dashboard.runs_training_curves(s, [ei, waiting, ppo], n_boot=20)
    assert list(table["run_id"].unique()) == [ei, ppo]
    assert set(table["kind"]) == set(dashboard.TRAINING_METRICS)
    assert set(table.loc[table["kind"] == "pass@K", "metric"]) == {"pass@6"}
    assert table["run"].str.endswith("(K=6)").all()
    for run_id in (ei, ppo):
        seen = s.metrics(run_id).groupby("step")["samples_seen"].max()
        mine = table[table["run_id"] == run_id]
        assert (mine["samples_seen"] == mine["step"].map(seen)).all() and mine["samples_seen"].iloc[0] == 0
    assert dashboard.runs_training_curves(s, [waiting]).empty


def test_k_grid_is_even_on_a_log_axis():
    assert dashboard.k_grid(96) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96]
    assert dashboard.k_grid(1) == [1] and dashboard.k_grid(5) == [1, 2, 3, 4, 5]


def test_run_log_tells_the_story(store):
    s, ids = store
    run = dashboard.run_detail(s, ids["runs"]["grpo"])
    log = dashboard.run_log(s, run, dashboard.run_metrics(s, ids["runs"]["grpo"]))
    assert log.splitlines()[-1].endswith("failed: RuntimeError: fabricated failure for the dashboard")
    ppo = dashboard.run_detail(s, ids["runs"]["ppo"])
    log = dashboard.run_log(s, ppo, dashboard.run_metrics(s, ids["runs"]["ppo"]), lines=5)
    assert len(log.splitlines()) == 5 and "approx_kl" in log
    assert dashboard.format_seconds(3725) == "1h 02m" and dashboard.format_seconds(None) == "-"


def test_view_version_changes_when_a_checkpoint_is_redone(store):
    s, ids = store
    ei = ids["runs"]["ei"]
    before = dashboard.view_version(s, ei, "eval", 2)
    s.truncate_run(ei, 1)  # what a resume does
    s.add_checkpoint(ei, 2, "redone", {"maj@1": 0.5})
    assert dashboard.view_version(s, ei, "eval", 2) != before


def test_start_points_lists_bases_then_run_checkpoints(store):
    from engine.dashboard import actions

    s, _ = store
    actions.copy_shipped_base()  # what the Launch page does first (start_points only reads)
    points = dashboard.start_points(s)
    assert [label for label, _ in points[:2]] == ["base-shipped", "base-tiny"]  # the shipped base first
    assert any(label.startswith("run 1 ei · step 2 · maj@1") for label, _ in points)
    assert len({path for _, path in points}) == len(points)


# -- launch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", list(CONFIGS))
def test_launch_fields_cover_the_config(algo):
    names = {f.name for f in launch.fields(algo)}
    from engine.tasks import TASKS

    task_names = {f.name for task in TASKS for f in launch.task_fields(task)}  # shown with the chosen task
    from engine.config import TASK_FIELDS

    # the form covers the config's fields and the task spec's options (TaskSpec, nested as `task`)
    assert names | task_names == ({name for name, _, _ in describe(algo)} | set(TASK_FIELDS)) - set(launch.TOP_FIELDS)
    assert not names & task_names and not launch.task_fields("multistep")
    assert {f.name for f in launch.fields(algo) if f.group == "model"} == set(launch.MODEL_FIELDS)
    assert all(f.doc for f in launch.fields(algo))
    kinds = {f.name: f.kind for f in launch.fields(algo)}
    assert kinds["seed"] == "int" and kinds["temperature"] == "float" and kinds["device"] == "choice"
    smoke = {f.name: f.default for f in launch.fields(algo, "smoke test")}
    assert smoke["eval_k"] == 2 and smoke["max_new_tokens"] == 24


def test_launch_check_names_the_field(workspace):
    base = untrained_checkpoint(workspace / "base")
    assert launch.check("ei", str(base), {"k": 4, "lr": "3e-4"}).cfg.lr == 3e-4
    bad = launch.check("grpo", str(base), {"n": 1})
    assert bad.cfg is None and bad.field == "n" and "must be >= 2" in bad.message
    assert launch.check("ei", "", {}).field == "base"
    assert launch.check("ppo", str(base), {"nope": "1"}).field == "nope"


def test_launch_queues_a_detached_run(workspace, monkeypatch):
    from engine import jobs

    spawned = []
    monkeypatch.setattr(jobs, "spawn_worker", lambda: spawned.append(True))
    base = untrained_checkpoint(workspace / "base")
    with Store() as s:
        run_id = launch.launch(s, launch.check("ppo", str(base), {"steps": 3}).cfg, name="")
        run = s.get_run(run_id)
    assert run["status"] == "queued" and run["pid"] is None and run["total"] == 3 and run["name"] is None
    assert spawned == [True]


# -- quickstart -------------------------------------------------------------------------------------


def test_quickstart_status_reports_a_dead_process(workspace):
    assert quickstart.status() is None
    workspace.mkdir(parents=True)
    (workspace / "quickstart.json").write_text(json.dumps({"phase": "building", "pid": 999_999_999}))
    assert quickstart.status()["phase"] == "failed" and not quickstart.running()


def test_quickstart_builds_a_base_then_an_ei_run_finishes(workspace):
    """The one-click path with "Build my own base", tiny: SFT with a progress file, then EI queued
    and trained by a worker."""
    ei = [x for x in [*SMALL, *BUDGETS["ei"]] if not x.startswith("rounds")] + ["rounds=1"]
    first = quickstart.start(build_base=True, sft_steps=20, sets=ei)
    assert first["phase"] == "starting" and first["pid"]
    with pytest.raises(Exception, match="already running"):
        quickstart.start()
    seen = set()

    def launched():
        state = quickstart.status()
        seen.add(state["phase"])
        assert state["phase"] != "failed", state["error"]
        if state["phase"] == "building" and state["step"]:
            assert state["eta_s"] >= 0
            seen.add("eta")
        return state["run_id"] if state["phase"] == "launched" else None

    run_id = wait_for(launched, timeout=300, what="the quickstart to queue its run")
    assert {"building", "eta"} <= seen and (workspace / "checkpoints" / "base-tiny" / "model.safetensors").is_file()
    with Store() as s:
        run = wait_for(lambda: (r := s.get_run(run_id))["status"] not in ("queued", "running") and r,
                       timeout=300, what="the quickstart's EI run")
        assert run["status"] == "finished" and run["name"] == "quickstart", run["error"]
        assert run["config"]["k"] == 3 and run["config"]["rounds"] == 1
    state = json.loads((workspace / "quickstart.json").read_text())
    assert state["step"] == state["steps"] == 20 and state["base_source"] == "built"
    assert state["base"] == str(workspace / "checkpoints" / "base-tiny")
    # what Home showed while it built: the loss at every step and a probe at every one of 20 steps
    assert [step for step, _ in state["loss"]] == list(range(1, 21)) and all(v > 0 for _, v in state["loss"])
    assert [p["step"] for p in state["probes"]] == list(range(1, 21))
    assert {p["question"] for p in state["probes"]} == {get_task("multistep").problems("test", 1)[0].question}
    # a second start reuses the base: it goes straight to launching
    assert os.path.getmtime(workspace / "checkpoints" / "base-tiny" / "model.safetensors") < time.time()


# -- stored text in markdown ----------------------------------------------------------------------


def rendered(markdown: str) -> str:
    """What CommonMark shows for dashboard.literal's markdown: it must be one code span or block."""
    out = MarkdownIt("commonmark").render(markdown)
    m = re.fullmatch(r"<p><code>(.*)</code></p>\n|<pre><code>(.*)</code></pre>\n", out, re.S)
    assert m, out
    return html.unescape(m[1] if m[1] is not None else m[2].removesuffix("\n"))


TRICKY = ["<b>x</b>", "[a](https://evil.example)", "$x^2$", ":red[r] :smile:", "`", "``a`", "a ` b", " lead",
          "trail ", "```\nfenced\n```", "line\r\nbreaks\rall\n", "**b** _i_ ~~s~~", "# h\n- item\n1. one", "\\*"]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(TRICKY), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                                  max_size=40)))
def test_literal_markdown_shows_exactly_the_text(text):
    shown = rendered(dashboard.literal(text))
    assert shown == (text.replace("\r\n", "\n").replace("\r", "\n") if text.strip() else "(empty)")
