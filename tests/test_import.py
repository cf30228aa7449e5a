"""`reasonlab import`: samples made by other tools (lm-eval-harness `--log_samples` files, plain
JSONL) become one evaluation-only run that every page shows. The lm-eval files are built (tests/helpers.py,
lm_eval_lines) in lm-eval 0.4.9.1's logged-sample format from a fabricated gsm8k-style doc set: nothing
downloaded."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import dashboard, import_formats, imports, jobs
from engine.errors import ReasonlabError
from engine.store import Store
from engine.tasks import get_task
from engine.tasks.multistep import MultiStep
from tests.data_files import gsm8k_rows, write_gsm8k, write_jsonl
from tests.helpers import import_lines, lm_eval_lines, open_page, reasonlab


def gsm8k_scoring(tmp_path, rows):
    """The GSM8K file task's own problems and scorer for the same docs (no import code involved)."""
    task = get_task("gsm8k", data=str(write_gsm8k(tmp_path / "reference.jsonl", len(rows))), eval_data="")
    return {p.question: p for p in task.problems("all")}, task


def nothing_stored() -> bool:
    with Store() as store:
        return store.runs().empty and store.checkpoints().empty and store.samples().empty


def stored(run_id: int):
    with Store() as store:
        return store.get_run(run_id), store.checkpoints(run_id), store.samples(run_id=run_id)


# -- lm-eval files ------------------------------------------------------------------------------


def test_an_lm_eval_file_becomes_one_finished_evaluation_only_run(tmp_path):
    made, path = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(6)))
    run, checkpoints, samples = stored(made.run_id)
    assert (run["algo"], run["status"]) == ("import", "finished")
    assert run["config"]["source"] == str(path.resolve()) and Path(run["config"]["source"]).is_absolute()
    assert {k: run["config"][k] for k in ("format", "split")} == {"format": "lm-eval", "split": "test"}
    assert run["config"]["task"]["name"] == "gsm8k"  # stored nested, as every run now
    assert checkpoints["step"].tolist() == [0] and checkpoints["metrics"][0]["problems"] == 6
    assert set(samples["kind"]) == {"eval"} and set(samples["step"]) == {0}
    assert len(samples) == 6 * 3  # two filters, each document's three responses once
    assert set(samples.groupby("problem_id")["sample_idx"].apply(tuple)) == {(0, 1, 2)}
    assert samples["logprob"].isna().all() and samples["n_tokens"].isna().all()


def test_two_filters_import_the_same_samples_as_one(tmp_path):
    one, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(5), filters=("strict-match",)), name="one.jsonl")
    two, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(5)), name="two.jsonl")
    columns = ["problem_id", "sample_idx", "text", "answer", "correct"]
    assert stored(one.run_id)[2][columns].equals(stored(two.run_id)[2][columns])


def test_imported_correct_flags_are_the_gsm8k_tasks_own_scoring(tmp_path):
    rows = gsm8k_rows(8)
    made, _ = import_lines(tmp_path, lm_eval_lines(rows))
    run, _, samples = stored(made.run_id)
    problems, task = gsm8k_scoring(tmp_path, rows)
    with Store() as store:
        for _, s in samples.iterrows():
            question = dashboard.problem_info(store, made.run_id, "test", s["problem_id"])["question"]
            score = task.score(problems[question], s["text"])
            answer = None if s["answer"] != s["answer"] else s["answer"]  # NaN: SQL NULL, no answer
            assert (s["correct"], answer) == (int(score.correct), score.answer)
    assert samples["correct"].tolist() == [1, 0, 0] * 8  # right, wrong, and no `#### N` line
    # lm-eval's own judgement is kept for reference, per filter
    assert made.metrics["lm_eval"] == {"exact_match,strict-match": 1.0, "exact_match,flexible-extract": 1.0}


def test_a_greedy_lm_eval_file_stores_its_response_as_the_greedy_solution(tmp_path):
    made, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(6), k=1, do_sample=False, temperature=0.0))
    _, checkpoints, samples = stored(made.run_id)
    assert set(samples["sample_idx"]) == {-1}
    metrics = checkpoints["metrics"][0]
    assert metrics["maj@1"] == 1.0 and not any(k.startswith("pass@") for k in metrics)


def test_greedy_repeats_are_the_greedy_solution_then_samples(tmp_path):
    made, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(4), k=3, do_sample=False))
    samples = stored(made.run_id)[2]
    assert set(samples.groupby("problem_id")["sample_idx"].apply(tuple)) == {(-1, 0, 1)}


def test_sampled_responses_give_pass_at_k_and_no_maj_at_1(tmp_path):
    made, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(6), k=3, do_sample=True))
    metrics = stored(made.run_id)[1]["metrics"][0]
    assert "maj@1" not in metrics  # no greedy solution: maj@1 is not made up from samples
    assert metrics["pass@1"] == pytest.approx(1 / 3) and metrics["pass@3"] == 1.0
    assert {"pass@2", "maj@2", "maj@3"} <= metrics.keys()


def test_an_earlier_lm_eval_file_without_filter_names_or_hashes_reads_the_same(tmp_path):
    old = [{"doc_id": line["doc_id"], "doc": line["doc"], "target": line["target"], "resps": line["resps"],
            "filtered_resps": line["filtered_resps"], "exact_match": line["exact_match"],
            "arguments": [[f"Question: {line['doc']['question']}", {"until": ["Question:"], "do_sample": False}]]}
           for line in lm_eval_lines(gsm8k_rows(4), k=1)]
    made, _ = import_lines(tmp_path, old, name="old.jsonl")
    samples = stored(made.run_id)[2]
    assert len(samples) == 4 and set(samples["sample_idx"]) == {-1}  # once per doc; do_sample false: greedy


def test_filters_that_disagree_on_a_documents_responses_are_refused(tmp_path):
    lines = lm_eval_lines(gsm8k_rows(3))
    lines[3]["resps"] = [["something else"]]  # doc 1's second filter
    with pytest.raises(ReasonlabError, match=r", line 4: doc_id 1's responses differ from line 3's"):
        import_lines(tmp_path, lines)
    assert nothing_stored()


# -- plain JSONL --------------------------------------------------------------------------------


def test_plain_jsonl_with_builtin_problem_ids_is_scored_by_the_builtin_task(tmp_path):
    problems = MultiStep().problems("test", 5)
    lines = [{"problem_id": p.id, "completion": text} for p in problems for text in (p.reference, "1 + 1 = 3\n#### 3")]
    made, _ = import_lines(tmp_path, lines, name="mine.jsonl")
    run, _, samples = stored(made.run_id)
    assert (run["config"]["task"]["name"], made.split) == ("multistep", "test")
    expected = [int(MultiStep().score(p, text).correct) for p in problems
                for text in (p.reference, "1 + 1 = 3\n#### 3")]
    assert samples["correct"].tolist() == expected and expected[::2] == [1] * 5
    with Store() as store:
        assert dashboard.problem_info(store, made.run_id, "test", "test-3")["question"] == problems[3].question


def test_plain_jsonl_with_questions_keeps_its_problems_in_the_runs_own_directory(tmp_path):
    lines = [{"question": "What is 2 + 3?", "completion": "2 + 3 = 5\n#### 5", "answer": 5},
             {"question": "What is 2 + 3?", "completion": "#### 6", "answer": "5"},
             {"question": "Half of 9?", "completion": "#### 4.5", "answer": "#### 4.5"}]
    made, _ = import_lines(tmp_path, lines, name="qa.jsonl")
    run, _, samples = stored(made.run_id)
    assert run["config"]["task"]["name"] == "jsonl" and samples["correct"].tolist() == [1, 0, 1]
    assert Path(run["config"]["task"]["data"]).parent == jobs.run_dir(made.run_id)
    with Store() as store:
        assert dashboard.problem_info(store, made.run_id, "test", "test-1")["question"] == "Half of 9?"
        assert dashboard.problem_table(store, made.run_id, "eval", 0)["question"].tolist() == ["What is 2 + 3?",
                                                                                            "Half of 9?"]


def test_a_given_correct_flag_is_kept_and_then_no_answer_is_needed(tmp_path):
    lines = [{"question": "q1", "completion": "#### 7", "correct": False},  # the other tool's judgement stands
             {"question": "q1", "completion": "seven", "correct": 1},
             {"problem_id": "p-2", "question": "q2", "completion": "#### 3", "correct": True, "answer": 4}]
    made, _ = import_lines(tmp_path, lines, name="judged.jsonl")
    assert stored(made.run_id)[2]["correct"].tolist() == [0, 1, 1]


def test_a_sample_with_neither_correct_nor_answer_is_refused_naming_its_line(tmp_path):
    lines = [{"question": "q1", "completion": "#### 7", "correct": True}, {"question": "q1", "completion": "#### 8"}]
    with pytest.raises(ReasonlabError, match=r"judged\.jsonl, line 2: no 'correct' given and no 'answer'"):
        import_lines(tmp_path, lines, name="judged.jsonl")


GOOD = {"problem_id": "test-0", "completion": "#### 1"}
DOC = gsm8k_rows(1)[0]


@pytest.mark.parametrize("first, bad, fragment", [
    (GOOD, "{not json", "not valid JSON"),
    (GOOD, "[1, 2]", "expected a JSON object, got list"),
    (GOOD, {"problem_id": "test-1"}, "missing field 'completion'"),
    (GOOD, {"problem_id": "test-1", "completion": 5}, "field 'completion' must be text"),
    (GOOD, {"completion": "x"}, "needs a 'problem_id' or a 'question'"),
    (GOOD, {"problem_id": "test-1", "completion": "x", "correct": "yes"}, "field 'correct' must be true/false"),
    (GOOD, {"problem_id": "test-1", "completion": "x", "correct": 2}, "field 'correct' must be true/false"),
    (GOOD, {"problem_id": ["a"], "completion": "x"}, "field 'problem_id' must be text"),
    (GOOD, {"problem_id": "test-1", "completion": "x", "n_tokens": -1}, "field 'n_tokens'"),
    (GOOD, {"problem_id": "test-1", "completion": "x", "greedy": "true"}, "field 'greedy' must be true or false"),
    (GOOD, {"question": "q", "completion": "x", "answer": None}, "field 'answer' must be a number or text"),
    (GOOD, {"problem_id": "test-1", "completion": "x\udc80"}, "lone surrogate"),
    (lm_eval_lines([DOC])[0], {**lm_eval_lines([DOC])[0], "doc_id": "0"}, "doc_id must be a whole number"),
    (lm_eval_lines([DOC])[0], {**lm_eval_lines([DOC])[0], "doc_id": 1, "resps": [[-1.5, False]]},
     "no text responses"),
    (lm_eval_lines([DOC])[0], {**lm_eval_lines([DOC])[0], "doc_id": 1, "doc": {"problem": "x"}}, "'question'"),
    (lm_eval_lines([DOC])[0], lm_eval_lines([DOC])[0], "doc_id 0 appears twice for filter 'strict-match'"),
])
def test_a_bad_line_is_named_by_file_and_line_and_nothing_is_written(tmp_path, workspace, first, bad, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(first) + "\n" + (bad if isinstance(bad, str) else json.dumps(bad)) + "\n")
    with Store() as store, pytest.raises(ReasonlabError) as e:
        imports.import_file(store, path)
    assert str(e.value).startswith(f"{path}, line 2: ") and fragment in str(e.value)
    assert nothing_stored()
    assert not any((workspace / "runs").iterdir()) if (workspace / "runs").exists() else True


def test_a_file_with_no_samples_is_refused(tmp_path):
    with pytest.raises(ReasonlabError, match="holds no samples"):
        import_lines(tmp_path, [])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                                      max_size=4), max_leaves=12))
def test_any_json_line_is_read_or_refused_naming_it(tmp_path, value):
    path = tmp_path / "any.jsonl"
    path.write_text(json.dumps({"problem_id": "test-0", "completion": "#### 1"}) + "\n" + json.dumps(value) + "\n")
    try:
        source = import_formats.read(path, "jsonl")
    except ReasonlabError as e:
        assert str(e).startswith(f"{path}, line 2: ")
    else:
        assert len(source.samples) == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text())
def test_a_completion_is_read_exactly_as_written(tmp_path, text):
    path = write_jsonl(tmp_path / "texts.jsonl", [{"problem_id": "test-0", "completion": text}])
    assert import_formats.read(path).samples[0].text == text


def test_unicode_and_html_are_stored_exactly_as_written(tmp_path):
    texts = ["<script>alert('x')</script>\n#### 5", "Ünïcödé ✓ 五 = 5 \u2028 $x$ :red[no]\n#### 5"]
    lines = [{"question": "<b>five</b>? ✓", "completion": t, "answer": 5} for t in texts]
    made, _ = import_lines(tmp_path, lines, name="text.jsonl")
    assert stored(made.run_id)[2]["text"].tolist() == texts
    with Store() as store:
        assert dashboard.problem_info(store, made.run_id, "test", "test-0")["question"] == "<b>five</b>? ✓"


# -- the rest of reasonlab: pages, delete, resume, CLI -------------------------------------------


@pytest.mark.parametrize("kind", ["sampled", "greedy"])
def test_every_analysis_page_renders_imported_runs(tmp_path, kind):
    for name in ("a.jsonl", "b.jsonl"):  # two runs: Compare needs two checkpoints
        import_lines(tmp_path, lm_eval_lines(gsm8k_rows(6), k=3 if kind == "sampled" else 1,
                                             do_sample=kind == "sampled"), name=name)
    for page in ("runs", "solutions", "pass_at_k", "diversity", "compare"):
        at = open_page(page)
        assert not at.exception, (page, at.exception)
        assert not at.error, (page, [e.value for e in at.error])
    assert "Ann has" in " ".join(t.value for t in open_page("solutions").text)  # the imported question
    if kind == "greedy":  # pages that need sampled solutions say so
        assert "only greedy ones" in " ".join(i.value for i in open_page("pass_at_k").info)
        assert "only greedy ones" in " ".join(i.value for i in open_page("diversity").info)
    else:  # no maj@1 without a greedy solution, and no rerank by log-probabilities the file lacks
        at = open_page("compare")
        assert any("no greedy solution" in (m.help or "") for m in at.metric if m.label == "maj@1")
        at = open_page("pass_at_k")
        metric = next(r for r in at.radio if r.label == "Metric")
        at = metric.set_value("rerank").run()
        assert "No log-probabilities for" in " ".join(i.value for i in at.info)


def test_a_problem_without_a_greedy_solution_is_judged_by_its_samples(tmp_path):
    lines = lm_eval_lines(gsm8k_rows(2), k=3)
    for line in lines[:2]:  # doc 0 (both filters): two of its three samples right
        line["resps"] = [[line["resps"][0][0]] * 2 + [line["resps"][0][1]]]
    made, _ = import_lines(tmp_path, lines)
    with Store() as store:
        table = dashboard.problem_table(store, made.run_id, "eval", 0)
        assert table["greedy_correct"].isna().all()
        assert table["status"].tolist() == ["solved", "unsolved"] and table["solve_rate"].tolist() == [2 / 3, 1 / 3]
        history = dashboard.problem_history(store, made.run_id, "test-0")
        assert history["greedy_correct"].tolist() == [None] and history["greedy"][0] == lines[0]["resps"][0][0]


def test_two_greedy_imports_compare_on_their_greedy_solutions(tmp_path):
    before = lm_eval_lines(gsm8k_rows(4), k=1, do_sample=False)
    after = lm_eval_lines(gsm8k_rows(4), k=1, do_sample=False)
    for line in after[:2]:
        line["resps"] = [["#### 0"]]  # doc 0 now wrong
    a, _ = import_lines(tmp_path, before, name="a.jsonl")
    b, _ = import_lines(tmp_path, after, name="b.jsonl")
    with Store() as store:
        ids = dashboard.evaluated_checkpoints(store)["checkpoint_id"].tolist()
        comparison = dashboard.comparison(store, *ids)
    assert (comparison.gained, comparison.lost) == (0, 1)
    assert comparison.per_problem["solve_a"].tolist() == [1.0] * 4
    assert comparison.per_problem["solve_b"].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_the_runs_page_imports_a_file_and_shows_a_bad_line_inline(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": "test-0", "completion": 1}\n')
    at = open_page("runs").toggle(key="import_open").set_value(True).run()
    at.text_input(key="import_path").input(str(bad))
    at = at.button(key="import_submit").click().run()
    assert not at.exception and f"{bad}, line 1: field 'completion' must be text" in at.error[0].value
    assert nothing_stored()
    good = write_jsonl(tmp_path / "good.jsonl", [{"problem_id": "test-0", "completion": "#### 1"}])
    at.text_input(key="import_path").input(str(good))
    at = at.button(key="import_submit").click().run()
    assert not at.exception and not at.error
    with Store() as store:
        assert store.runs()["algo"].tolist() == ["import"]
    assert "run 1" in at.success[0].value and at.query_params["run"] == "1"  # the new run is the one shown


def test_deleting_an_imported_run_leaves_the_source_file_intact(tmp_path):
    made, path = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(4)))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    with Store() as store:
        assert "is kept" in jobs.deletion_summary(store, made.run_id)
        jobs.delete(store, made.run_id)
        assert store.runs().empty
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert not jobs.run_dir(made.run_id).exists()


def test_no_page_offers_an_imported_runs_checkpoint_to_train_from(tmp_path):
    made, _ = import_lines(tmp_path, lm_eval_lines(gsm8k_rows(3)))
    with Store() as store:
        assert str(jobs.run_dir(made.run_id)) not in [path for _, path in dashboard.start_points(store)]
        with pytest.raises(ReasonlabError, match=f"run {made.run_id} is imported samples .*no training to resume"):
            jobs.resume(store, made.run_id)


def test_a_write_that_fails_part_way_leaves_nothing_behind(tmp_path, workspace, monkeypatch):
    def full_disk(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "add_samples", full_disk)
    with pytest.raises(ReasonlabError, match=r"could not write the imported run \(nothing was kept\): No space left"):
        import_lines(tmp_path, lm_eval_lines(gsm8k_rows(3)))
    assert nothing_stored() and not any((workspace / "runs").iterdir())


def test_a_file_inside_the_new_runs_directory_is_refused(tmp_path, workspace):
    inside = jobs.run_dir(1)
    inside.mkdir(parents=True)
    path = write_jsonl(inside / "mine.jsonl", [{"problem_id": "test-0", "completion": "#### 1"}])
    with Store() as store, pytest.raises(ReasonlabError, match="inside run 1's directory"):
        imports.import_file(store, path)
    assert nothing_stored() and path.is_file()


def test_the_cli_imports_prints_the_run_first_lists_it_and_refuses_to_resume_it(tmp_path):
    path = write_jsonl(tmp_path / "samples_gsm8k.jsonl", lm_eval_lines(gsm8k_rows(4)))
    made = reasonlab("import", path, "--name", "llama <b>")
    assert made.returncode == 0, made.stderr
    out = made.stdout.splitlines()
    assert out[0] == "run 1" and "4 problems, 12 samples" in out[1] and out[2].startswith("accuracy 0.333")
    runs = json.loads(reasonlab("runs", "--json").stdout)
    assert [(r["id"], r["algo"], r["status"], r["name"]) for r in runs] == [(1, "import", "finished", "llama <b>")]
    resumed = reasonlab("resume", "1")
    assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
    assert resumed.stderr.strip().splitlines() == [f"reasonlab: error: run 1 is imported samples ({path}): it has no "
                                                   "training to resume"]
    bad = reasonlab("import", path, "--format", "jsonl")
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"reasonlab: error: {path}, line 1: missing field 'completion'")
