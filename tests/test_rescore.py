"""Re-scoring stored samples without resampling (engine/rescore.py): each scorer as a pure function,
a re-scoring of a fabricated store (the stored scores untouched, metrics before and after, the
run's deletion taking its re-scorings), the `reasonlab rescore` command and the pass@k page's
Scoring section."""

import json
import sqlite3
import threading

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import dashboard, jobs, rescore, viz
from engine.cli import main
from engine.errors import ReasonlabError
from engine.rescore import flexible, math_verify, strict
from engine.schema import MIGRATIONS
from engine.store import Store, migrate
from engine.tasks.multistep import MultiStep
from tests.dashboard_store import fabricate_store
from tests.data_files import gsm8k_rows
from tests.helpers import charts, import_lines, lm_eval_lines, open_page

# -- the scorers, pure functions of (reference, text) ----------------------------------------------

SCORER_CASES = [
    # scorer, reference, text, expected (answer, correct)
    (strict, "17", "#### 17", ("17", True)),
    (strict, "17", "The answer is 17.", (None, False)),  # no `####` line: strict finds nothing
    (strict, "17", "3 + 14 = 17\n#### 18", ("18", False)),
    (strict, "1000", "#### $1,000", ("1000", True)),
    (strict, "0.5", "#### 1/2", (None, False)),  # a fraction is no number: strict compares numbers only
    (strict, "17", "no number at all", (None, False)),
    (flexible, "17", "The answer is 17.", ("17", True)),
    (flexible, "17", "#### 17", ("17", True)),
    (flexible, "17", "#### 17\nthen 5 more", ("5", False)),  # the last number, wherever it is
    (flexible, "72", "so 72.0 in all", ("72", True)),
    (flexible, "17", "no number at all", (None, False)),
    (math_verify, "0.5", "The answer is 1/2", ("0.5", True)),
    (math_verify, "0.5", "#### 1/2", ("0.5", True)),
    (math_verify, "1/2", "so it is $\\frac{1}{2}$", ("1/2", True)),  # reported in the reference's form
    (math_verify, "17", "3 + 14 = 17\n#### 17", ("17", True)),
    (math_verify, "17", "#### 18", ("18", False)),
    (math_verify, "17", "no number at all", (None, False)),
    (math_verify, "17", "x = 9^9^9", ("9^9^9", False)),  # too big to verify: judged wrong, at once
]


@pytest.mark.parametrize("scorer, reference, text, expected", SCORER_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(SCORER_CASES)])
def test_each_scorer_extracts_and_judges_as_its_rule_says(scorer, reference, text, expected):
    assert scorer(reference, text) == expected


def test_strict_and_flexible_disagree_where_only_a_sentence_gives_the_answer():
    sentence, hashes = "The answer is 17.", "#### 17"
    assert strict("17", sentence)[1] is False and flexible("17", sentence)[1] is True
    assert strict("17", hashes)[1] is True and flexible("17", hashes)[1] is True


def test_the_task_scorer_is_the_tasks_own_judgement():
    task = MultiStep()
    problem = task.problems("test", 3)[2]
    judge = rescore.scorer_for("task", task)
    assert judge(problem, problem.reference) == (problem.answer, True)
    wrong = problem.reference.rsplit("####", 1)[0] + "#### 99999"
    assert judge(problem, wrong) == ("99999", False) == (task.score(problem, wrong).answer, False)


def test_an_unknown_scorer_is_refused_by_name():
    with pytest.raises(ReasonlabError, match="unknown scorer 'loose'.*strict, flexible, math-verify, task"):
        rescore.scorer_for("loose")


# ASCII: lm-eval's flexible regex reads [0-9] only, while normalise_number (which strict uses on the
# `####` line) also takes other Unicode digits ("#### ١" is 1 to strict and no number to flexible).
ascii_text = st.text(alphabet=st.characters(min_codepoint=9, max_codepoint=126), max_size=200)
answer_like = st.one_of(ascii_text, st.builds(lambda a, n, b: f"{a}#### {n}{b}", ascii_text,
                                              st.integers(-10**6, 10**6), ascii_text))


@settings(max_examples=300, deadline=None)
@given(answer_like)
def test_strict_never_finds_an_answer_flexible_misses(text):
    if strict("1", text)[0] is not None:
        assert flexible("1", text)[0] is not None


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=400), st.sampled_from(["17", "0.5", "1/2", "\\frac{1}{2}", "x"]))
def test_no_scorer_raises_on_any_text(text, reference):
    for scorer in (strict, flexible, math_verify):
        answer, correct = scorer(reference, text)
        assert isinstance(correct, bool) and (answer is None or isinstance(answer, str))


def test_math_verify_scorer_works_outside_the_main_thread():
    """Streamlit runs pages in threads, where math-verify's signal.alarm timeouts would raise."""
    results, errors = [], []

    def work():
        try:
            results.extend([math_verify("0.5", "The answer is 1/2"), math_verify("1/2", "$\\frac{2}{4}$")])
        except BaseException as e:  # noqa: BLE001 (the test reports whatever the thread raised)
            errors.append(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and not errors
    assert results == [("0.5", True), ("1/2", True)]


# -- re-scoring a fabricated store -------------------------------------------------------------------


@pytest.fixture
def made(workspace):
    """6 problems x (greedy + 8 samples) at 3 EI checkpoints, 2 rollout rounds, and a PPO run."""
    return fabricate_store(workspace, problems=6, k=8, ei_rounds=2, ppo_checkpoints=2, rollout_problems=4)


@pytest.fixture
def store(made, workspace):
    with Store(workspace / "store.sqlite") as s:
        yield s


def all_samples(store):
    return store._query("SELECT * FROM samples ORDER BY id")


def count(store, sql, *params):
    return store._conn.execute(sql, params).fetchone()[0]


def test_rescoring_never_changes_the_stored_answers_and_scores(made, store):
    before = all_samples(store)
    for scorer in rescore.SCORERS:
        rescore.rescore(store, made["runs"]["ei"], scorer)
    after = all_samples(store)
    assert before.equals(after)  # every column of every sample, answer and correct included


def test_every_sample_of_the_run_is_judged_in_chunks_with_progress(made, store):
    ei = made["runs"]["ei"]
    calls = []
    rid = rescore.rescore(store, ei, "flexible", progress=lambda done, total: calls.append((done, total)), chunk=25)
    total = store.run_footprint(ei)["samples"]
    row = rescore.rescoring(store, rid)
    assert row["samples"] == total and row["unscored"] == 0
    assert set(rescore.verdict_changes(store, rid)["kind"]) == {"eval", "rollout"}
    assert calls[-1] == (total, total) and len(calls) == -(-total // 25)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    one_chunk = rescore.rescore(store, ei, "flexible")
    verdicts = "SELECT sample_id, answer, correct FROM rescored_samples WHERE rescoring_id = ? ORDER BY sample_id"
    assert store._query(verdicts, (rid,)).equals(store._query(verdicts, (one_chunk,)))


def test_each_verdict_is_the_scorers_on_the_stored_text(made, store):
    rid = rescore.rescore(store, made["runs"]["ei"], "flexible")
    rows = store._query("SELECT s.problem_id, s.text, r.answer, r.correct FROM rescored_samples r"
                        " JOIN samples s ON s.id = r.sample_id WHERE r.rescoring_id = ?", (rid,))
    problems = {p.id: p for p in MultiStep().problems("test", 6) + MultiStep().problems("train", 64)}
    for problem_id, text, answer, correct in rows.itertuples(index=False):
        assert (answer, bool(correct)) == flexible(problems[problem_id].answer, text)


def test_the_task_scorer_on_unchanged_code_reproduces_the_original_metrics_exactly(made, store):
    ei = made["runs"]["ei"]
    rid = rescore.rescore(store, ei, "task")
    table = rescore.metrics_before_after(store, ei, rid)
    assert len(table) == 4 * len(made["checkpoints"][ei])  # maj@1, pass@1, pass@8, maj@8 per checkpoint
    assert (table["before"] == table["after"]).all() and (table["change"] == 0).all()
    assert table["right_to_wrong"].sum() == 0 and table["wrong_to_right"].sum() == 0
    original = dashboard.run_curves(store, ei, n_boot=1).set_index(["step", "metric"])["value"]
    assert table.set_index(["step", "metric"])["before"].to_dict() == original.to_dict()


def test_flexible_scoring_credits_answers_only_a_last_number_gives(made, store):
    """The fabricated store has solutions cut before their `#### N` line: their last number is the
    answer, so flexible extraction turns them right and no metric falls."""
    ei = made["runs"]["ei"]
    rid = rescore.rescore(store, ei, "flexible")
    table = rescore.metrics_before_after(store, ei, rid)
    assert table["wrong_to_right"].sum() > 0 and table["right_to_wrong"].sum() == 0
    assert (table["change"] >= 0).all() and (table["change"] > 0).any()
    assert table["change"].equals(table["after"] - table["before"])
    changes = rescore.verdict_changes(store, rid).set_index("kind")
    per_checkpoint = table.drop_duplicates("checkpoint_id")["wrong_to_right"].sum()
    assert changes.at["eval", "wrong_to_right"] == per_checkpoint


def test_an_imported_lm_eval_file_rescored_flexibly_credits_its_sentence_answers(tmp_path):
    """lm-eval's flexible-extract takes "The answer is N." where the GSM8K task's strict check does
    not: re-scoring the imported run with `flexible` turns exactly those samples right."""
    made, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(5)))  # per problem: right, wrong, a sentence
    with Store() as store:
        rid = rescore.rescore(store, made.run_id, "flexible")
        table = rescore.metrics_before_after(store, made.run_id, rid).set_index("metric")
        sentences = store._query("SELECT COUNT(*) FROM rescored_samples r JOIN samples s ON s.id = r.sample_id"
                                 " WHERE r.rescoring_id = ? AND r.correct = 1 AND s.correct = 0"
                                 " AND s.text LIKE 'The answer is %'", (rid,)).iloc[0, 0]
    assert table.at["pass@1", "before"] == pytest.approx(1 / 3) and table.at["pass@1", "after"] == pytest.approx(2 / 3)
    assert table.at["pass@1", "wrong_to_right"] == 5 == sentences and table.at["pass@1", "right_to_wrong"] == 0


def test_curves_under_both_scorings_match_the_pages_curves(made, store):
    ei = made["runs"]["ei"]
    first, last = made["checkpoints"][ei][0], made["checkpoints"][ei][-1]
    rid = rescore.rescore(store, ei, "task")
    table = rescore.rescored_curves(store, rid, [first, last])
    assert set(table["scoring"]) == {"original", "re-scored: task"}
    page = dashboard.pass_at_k(store, [first, last]).set_index(["checkpoint_id", "metric", "k"])["value"]
    for scoring, rows in table.groupby("scoring"):
        assert rows.set_index(["checkpoint_id", "metric", "k"])["value"].to_dict() == pytest.approx(page.to_dict())
    fig = viz.fig_rescored_curves(table, metric="pass")
    assert [t.line.dash for t in fig.data] == ["solid", "dash", "solid", "dash"]
    assert fig.data[0].name == "run 1 ei · step 0 · original"


def test_the_curves_figure_draws_labels_as_text():
    table = pd.DataFrame({"metric": "pass", "k": [1, 2], "value": [0.2, 0.3], "checkpoint_id": 1, "step": 0,
                          "label": "<b>run</b>", "scoring": "re-scored: <i>x</i>"})
    fig = viz.fig_rescored_curves(table)
    assert fig.data[0].name == "&lt;b&gt;run&lt;/b&gt; · re-scored: &lt;i&gt;x&lt;/i&gt;"
    assert fig.data[0].line.dash == "dash"


def test_scoring_again_makes_a_new_rescoring_and_lists_the_finished_ones(made, store):
    ei = made["runs"]["ei"]
    a, b = rescore.rescore(store, ei, "strict"), rescore.rescore(store, ei, "strict")
    assert b > a
    listed = rescore.rescorings(store, ei)
    assert listed["id"].tolist() == [b, a] and listed["label"].iloc[0].startswith(f"re-scoring {b} · strict")
    assert listed["options"].iloc[0]["task"] == "multistep"
    assert rescore.rescorings(store, made["runs"]["ppo"]).empty


def test_samples_whose_problem_cannot_be_rebuilt_are_counted_and_left_unscored(made, store, tmp_path):
    ppo = made["runs"]["ppo"]
    config = store.get_run(ppo)["config"]
    store.update_run(ppo, config={**config, "task": "gsm8k", "data": str(tmp_path / "moved.jsonl")})
    rid = rescore.rescore(store, ppo, "strict")
    row = rescore.rescoring(store, rid)
    assert row["samples"] == 0 and row["unscored"] == store.run_footprint(ppo)["samples"] > 0
    assert rescore.metrics_before_after(store, ppo, rid).empty


def test_a_failed_rescoring_leaves_nothing_behind(made, store):
    def stop(done, total):
        raise RuntimeError("stopped halfway")

    with pytest.raises(RuntimeError):
        rescore.rescore(store, made["runs"]["ei"], "strict", progress=stop, chunk=10)
    assert count(store, "SELECT COUNT(*) FROM rescorings") == 0
    assert count(store, "SELECT COUNT(*) FROM rescored_samples") == 0


def test_a_run_still_running_or_unknown_is_refused(made, store):
    store.update_run(made["runs"]["ppo"], status="running")
    with pytest.raises(ReasonlabError, match=f"run {made['runs']['ppo']} is running"):
        rescore.rescore(store, made["runs"]["ppo"], "strict")
    with pytest.raises(ReasonlabError, match="no run 99"):
        rescore.rescore(store, 99, "strict")
    rid = rescore.rescore(store, made["runs"]["ei"], "strict")
    with pytest.raises(ReasonlabError, match=f"re-scoring {rid} is of run {made['runs']['ei']}"):
        rescore.metrics_before_after(store, made["runs"]["ppo"], rid)


def test_deleting_a_run_removes_its_rescorings_and_their_ids_are_never_reused(made, store):
    ei, ppo = made["runs"]["ei"], made["runs"]["ppo"]
    kept = rescore.rescore(store, ppo, "strict")
    gone = rescore.rescore(store, ei, "flexible")
    jobs.delete(store, ei)
    assert count(store, "SELECT COUNT(*) FROM rescorings WHERE run_id = ?", ei) == 0
    assert count(store, "SELECT COUNT(*) FROM rescored_samples WHERE rescoring_id = ?", gone) == 0
    assert rescore.rescoring(store, kept)["samples"] == store.run_footprint(ppo)["samples"]
    assert rescore.rescore(store, ppo, "strict") > gone  # not the deleted one's id again


def test_deleting_a_run_in_small_chunks_cascades_the_verdicts(made, store):
    ei = made["runs"]["ei"]
    rescore.rescore(store, ei, "strict")
    assert store.delete_run(ei, chunk=7)
    assert count(store, "SELECT COUNT(*) FROM rescored_samples") == 0
    assert count(store, "SELECT COUNT(*) FROM rescorings") == 0


def test_a_store_of_the_previous_schema_migrates_and_its_samples_can_be_rescored(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, len(MIGRATIONS) - 1)
    conn.close()
    with Store(path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        run = s.create_run("ei", {"task": "multistep"}, status="finished")
        problem = MultiStep().problems("test", 1)[0]
        s.add_samples([{"run_id": run, "step": 0, "kind": "rollout", "task": "multistep", "split": "test",
                        "problem_id": problem.id, "sample_idx": 0, "text": problem.reference}])
        rid = rescore.rescore(s, run, "strict")
        assert s._query("SELECT answer, correct FROM rescored_samples WHERE rescoring_id = ?",
                        (rid,)).values.tolist() == [[problem.answer, 1]]


def test_a_store_lacking_the_rescoring_tables_is_refused_naming_them(tmp_path):
    path = tmp_path / "store.sqlite"
    with Store(path) as s:
        s._conn.execute("DROP TABLE rescored_samples")
    with pytest.raises(ReasonlabError, match="no table rescored_samples"):
        Store(path)


# -- the command line ------------------------------------------------------------------------------


def run_main(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr()


def test_rescore_command_prints_the_before_and_after_table(made, capsys):
    code, out = run_main(capsys, "rescore", str(made["runs"]["ei"]), "--scorer", "flexible")
    assert code == 0
    lines = out.out.splitlines()
    assert lines[0].startswith(f"re-scoring 1 of run {made['runs']['ei']} (flexible):")
    assert any(line.strip().startswith("eval:") and "wrong -> right" in line for line in lines)
    header = next(line for line in lines if line.split()[:2] == ["kind", "step"])
    assert header.split() == rescore.TABLE_COLUMNS
    assert sum(line.split()[0] == "eval" for line in lines[lines.index(header) + 1:]) == 12


def test_rescore_command_json_is_one_object_with_the_metrics(made, capsys):
    code, out = run_main(capsys, "rescore", str(made["runs"]["ei"]), "--scorer", "task", "--json")
    assert code == 0
    result = json.loads(out.out)
    assert result["scorer"] == "task" and result["unscored"] == 0
    assert result["samples"] == sum(c["samples"] for c in result["changes"])
    assert {m["metric"] for m in result["metrics"]} == {"maj@1", "pass@1", "pass@8", "maj@8"}
    assert all(m["change"] == 0 for m in result["metrics"])


@pytest.mark.parametrize("args, fragment", [
    (["rescore", "99", "--scorer", "strict"], "no run 99"),
    (["rescore", "1", "--scorer", "loose"], "unknown scorer 'loose'"),
])
def test_rescore_command_refuses_an_unknown_run_or_scorer_in_one_line(made, capsys, args, fragment):
    code, out = run_main(capsys, *args)
    assert code == 2 and out.out == ""
    assert out.err.count("\n") == 1 and out.err.startswith("reasonlab: error: ") and fragment in out.err


def test_rescore_help_names_every_scorer(capsys):
    with pytest.raises(SystemExit):
        main(["rescore", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in rescore.SCORERS)


# -- the pass@k page -------------------------------------------------------------------------------


def test_pass_at_k_page_rescores_a_run_and_shows_before_after_and_curves(made):
    at = open_page("pass_at_k")
    assert not at.exception
    ppo = made["runs"]["ppo"]  # the newest run's checkpoints are chosen, so it is the one offered
    assert f"Run {ppo} has not been re-scored yet" in " ".join(i.value for i in at.info)
    at.selectbox(key="rescore_scorer").set_value("math-verify").run()
    button = next(b for b in at.button if b.key == "rescore")
    assert button.label == f"Re-score run {ppo}"
    button.click().run()
    assert not at.exception and not at.error
    table = at.dataframe[-1].value
    assert list(table.columns) == rescore.TABLE_COLUMNS and len(table) == 4 * len(made["checkpoints"][ppo])
    # math-verify judged in the page's thread: cut-short solutions turn right, none turns wrong
    assert table["right_to_wrong"].sum() == 0 and table["wrong_to_right"].sum() > 0
    figure = next(c for c in charts(at) if c["layout"]["title"]["text"].startswith("pass@k: original"))
    assert {t["line"]["dash"] for t in figure["data"]} == {"solid", "dash"}


def test_pass_at_k_page_shows_an_existing_rescoring_without_rerunning(made, workspace):
    with Store(workspace / "store.sqlite") as s:
        rid = rescore.rescore(s, made["runs"]["ppo"], "flexible")
    at = open_page("pass_at_k")
    assert not at.exception
    listed = next(s for s in at.selectbox if s.label == "Re-scoring")
    assert listed.value == rid
    assert list(at.dataframe[-1].value.columns) == rescore.TABLE_COLUMNS
    assert count_rescorings(workspace) == 1  # shown, not made again


def count_rescorings(workspace):
    with Store(workspace / "store.sqlite") as s:
        return count(s, "SELECT COUNT(*) FROM rescorings")
