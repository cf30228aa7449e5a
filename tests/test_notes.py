"""Notes on problems and samples: stored apart from the samples, shown wherever the problem is,
kept when the run they were written in goes (a note on a problem), gone with their sample (a note
on a sample); the CLI adds, lists and deletes them."""

import json

import pytest

from engine import cli
from engine.errors import ReasonlabError
from engine.store import Store
from tests.dashboard_store import fabricate_store
from tests.helpers import open_page


@pytest.fixture
def runs(workspace):
    return fabricate_store(workspace, problems=4, k=4, ei_rounds=1, ppo_checkpoints=1, rollout_problems=2)["runs"]


def test_a_note_on_a_problem_shows_in_every_run_of_its_task_and_outlives_its_run(runs):
    with Store() as s:
        note = s.add_note("good example for class", "demo", run_id=runs["ei"], problem_id="test-1")
        assert s.notes(run_id=runs["ppo"])["id"].tolist() == [note]  # the PPO run has that problem too
        assert s.notes(problem_ids=["test-2"]).empty
        row = s.notes().iloc[0]
        assert (row["task"], row["split"], row["sample_id"]) == ("multistep", "test", None)
        s.delete_run(runs["ei"])
        kept = s.notes()
        assert kept["id"].tolist() == [note] and kept.at[0, "run_id"] is None


def test_a_note_on_a_sample_takes_its_problem_from_the_sample_and_goes_with_it(runs):
    with Store() as s:
        greedy = s.sample_id(runs["ei"], "test-2", -1)
        note = s.add_note("forgot the carry", sample_id=greedy)
        row = s.notes(sample_ids=[greedy]).iloc[0]
        assert (row["id"], row["problem_id"], row["run_id"], row["tag"]) == (note, "test-2", runs["ei"], None)
        last = int(s.checkpoints(runs["ei"])["step"].max())
        assert s.samples(run_id=runs["ei"], problem_id="test-2", step=last, kind="eval").query(
            "sample_idx == -1")["id"].tolist() == [greedy]  # the last step's greedy sample
        s.delete_run(runs["ei"])
        assert s.notes().empty


def test_notes_keep_text_exactly_and_search_ignores_case(runs):
    text = "<script>alert(1)</script> **bold** `code`\nsecond line · ünïcode"
    with Store() as s:
        s.add_note(text, "Tricky", run_id=runs["ppo"], problem_id="test-0")
        assert s.notes().at[0, "text"] == text
        assert len(s.notes(contains="ÜNÏCODE")) == 1 and len(s.notes(contains="tricky")) == 1
        assert s.notes(contains="absent").empty


@pytest.mark.parametrize("kwargs, message", [
    ({"text": "", "tag": " "}, "needs a text or a tag"),
    ({"text": "x" * 4001}, "at most 4000 characters"),
    ({"text": "x", "tag": "two\nlines"}, "a tag is one line"),
    ({"text": "x", "run_id": 999, "problem_id": "test-0"}, "no run 999"),
    ({"text": "x", "problem_id": "test-0"}, "no run None"),
    ({"text": "x", "sample_id": 10**9}, f"no sample {10**9}"),
    ({"text": "x", "problem_id": "test-77", "run": True}, "has no sample of problem 'test-77'"),
])
def test_bad_notes_are_refused_naming_the_problem_and_store_nothing(runs, kwargs, message):
    if kwargs.pop("run", False):
        kwargs["run_id"] = runs["ei"]
    with Store() as s, pytest.raises(ReasonlabError, match=message):
        s.add_note(**kwargs)
    with Store() as s:
        assert s.notes().empty


def test_the_cli_adds_lists_and_deletes_notes(runs, capsys):
    assert cli.main(["notes", "add", str(runs["ei"]), "test-3", "good example", "--tag", "class"]) == 0
    first = int(capsys.readouterr().out.split()[1])
    assert cli.main(["notes", "add", str(runs["ei"]), "test-3", "--tag", "carry", "--sample", "2"]) == 0
    second = int(capsys.readouterr().out.split()[1])
    assert cli.main(["notes", "list", "--run", str(runs["ei"]), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(n["id"], n["tag"], n["text"]) for n in listed] == [(first, "class", "good example"), (second, "carry", "")]
    with Store() as s:
        assert listed[1]["sample_id"] == s.sample_id(runs["ei"], "test-3", 2)
    assert cli.main(["notes", "list", "--contains", "GOOD"]) == 0
    assert "good example" in capsys.readouterr().out
    assert cli.main(["notes", "delete", str(first)]) == 0
    assert cli.main(["notes", "delete", str(first)]) == 2
    assert capsys.readouterr().err.strip() == f"reasonlab: error: no note {first} in the store"
    assert cli.main(["notes", "add", str(runs["ei"]), "test-3", "x", "--sample", "99"]) == 2
    assert "has no eval sample 99 of problem 'test-3'" in capsys.readouterr().err


# -- on the pages -------------------------------------------------------------------------------------------


def test_solutions_adds_shows_and_deletes_a_problems_note_and_lists_sample_notes(runs):
    hostile = "<b>bold</b> [link](http://evil) **md**"
    with Store() as s:
        last = int(s.checkpoints(runs["ei"])["step"].max())
        s.add_note(hostile, "carry", sample_id=s.sample_id(runs["ei"], "test-0", 1, step=last))
    at = open_page("solutions", {"run": str(runs["ei"]), "kind": "eval", "step": str(last), "problem": "test-0"})
    assert not at.exception
    assert any(e.label.startswith("Notes (1)") for e in at.expander)
    shown = [t.value for t in at.text]
    assert any(v.startswith(f"carry · on sample 1 · eval step {last} · written in run {runs['ei']}") and hostile in v
               for v in shown)
    table = at.dataframe[0].value
    assert table.loc[table["sample_idx"] == 1, "notes"].tolist() == [f"carry — {hostile}"]
    assert set(table.loc[table["sample_idx"] != 1, "notes"]) == {""}

    at.text_input(key="note_on_problem_tag").input("good example for class")
    at.text_area(key="note_on_problem_text").input("two orders of the same steps")
    at.button(key="FormSubmitter:note_on_problem-Add a note on this problem").click().run()
    assert not at.exception and any(e.label.startswith("Notes (2)") for e in at.expander)
    assert any(t.value == "good example for class · on the problem · written in run "
               f"{runs['ei']}\ntwo orders of the same steps" for t in at.text)
    with Store() as s:
        added = s.notes(contains="two orders")["id"].tolist()
    assert len(added) == 1
    at.button(key=f"delete_note_{added[0]}").click().run()
    with Store() as s:
        assert s.notes(contains="two orders").empty
    assert any(e.label.startswith("Notes (1)") for e in at.expander)


def test_solutions_refuses_an_empty_note_inline(runs):
    at = open_page("solutions", {"run": str(runs["ei"]), "problem": "test-1"})
    at.button(key="FormSubmitter:note_on_problem-Add a note on this problem").click().run()
    assert not at.exception and "a note needs a text or a tag" in at.error[0].value
    with Store() as s:
        assert s.notes().empty


def test_compare_shows_the_problems_notes_from_either_run(runs):
    with Store() as s:
        s.add_note("look at step 2", run_id=runs["ppo"], problem_id="test-2")
        checkpoints = s.checkpoints(runs["ei"])["id"].tolist()
    at = open_page("compare", {"a": str(checkpoints[0]), "b": str(checkpoints[-1]), "problem": "test-2"})
    assert not at.exception
    assert any(t.value.endswith(f"on the problem · written in run {runs['ppo']}\nlook at step 2") for t in at.text)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl"])
def test_notes_export_with_the_run_and_an_empty_export_keeps_its_columns(runs, fmt, tmp_path):
    import pandas as pd

    from engine import export

    read = {"parquet": pd.read_parquet, "csv": lambda p: pd.read_csv(p, keep_default_na=False),
            "jsonl": lambda p: pd.read_json(p, lines=True)}[fmt]
    with Store() as s:
        assert export.export_run(s, runs["ei"], "notes", tmp_path / f"none.{fmt}")[0] == 0
        if fmt != "jsonl":  # (an empty JSON lines file has no header to keep them)
            assert {"id", "tag", "text", "problem_id", "sample_id", "step", "sample_idx"} <= set(
                read(tmp_path / f"none.{fmt}").columns)
        s.add_note("line one\nline two, \"quoted\"", "class", run_id=runs["ei"], problem_id="test-1")
        s.add_note("", "carry", sample_id=s.sample_id(runs["ei"], "test-2", 0))
        rows, out = export.export_run(s, runs["ppo"], "notes", tmp_path / f"notes.{fmt}")
    table = read(out)
    assert rows == 1 and table["text"].tolist() == ["line one\nline two, \"quoted\""]  # the problem's; not EI's sample


def test_deleting_a_run_says_which_notes_go_with_it(runs):
    from engine import jobs

    with Store() as s:
        assert "notes" not in jobs.deletion_summary(s, runs["ei"])
        s.add_note("stays", run_id=runs["ei"], problem_id="test-1")
        s.add_note("goes", sample_id=s.sample_id(runs["ei"], "test-1", 0))
        summary = jobs.deletion_summary(s, runs["ei"])
    assert "samples, 1 note on its samples (notes on problems stay) and" in summary


def test_search_finds_notes_by_text_or_tag_with_links_to_their_views(runs, capsys):
    from engine.search import search

    with Store() as s:
        last = int(s.checkpoints(runs["ei"])["step"].max())
        on_sample = s.add_note("forgot the carry here", sample_id=s.sample_id(runs["ei"], "test-2", 1))
        on_problem = s.add_note("two orders", "Carry demo", run_id=runs["ppo"], problem_id="test-3")
        s.add_note("unrelated", run_id=runs["ei"], problem_id="test-0")
        found = search(s, "carry")
        assert [n["id"] for n in found.notes] == [on_sample, on_problem]
        assert found.notes[0]["solutions"] == f"/solutions?run={runs['ei']}&kind=eval&step={last}&problem=test-2"
        assert found.notes[1]["solutions"] == f"/solutions?run={runs['ppo']}&problem=test-3"
        in_ei = search(s, "carry", run_id=runs["ei"]).notes  # EI has problem test-3 too
        assert [n["id"] for n in in_ei] == [on_sample, on_problem]
        assert in_ei[1]["solutions"] == f"/solutions?run={runs['ei']}&problem=test-3"  # in the searched run
        assert search(s, "carr").notes == []  # whole words, as in samples
        assert search(s, run_id=runs["ei"]).notes == []  # no text: nothing to look for in notes
    assert cli.main(["search", "carry", "--json"]) == 0
    assert [n["id"] for n in json.loads(capsys.readouterr().out)["notes"]] == [on_sample, on_problem]
    assert cli.main(["search", "carry"]) == 0
    assert "2 notes match" in capsys.readouterr().out


def test_the_search_page_lists_matching_notes_with_their_links(runs):
    with Store() as s:
        s.add_note("<b>carry</b> demo", run_id=runs["ei"], problem_id="test-1")
    at = open_page("search", {"q": "carry"})
    assert not at.exception
    assert any(h.value == "1 note matches" for h in at.subheader)
    assert "No sample matches (some notes do: below)." in [i.value for i in at.info]
    assert any(t.value == "on problem test-1\n<b>carry</b> demo" for t in at.text)
