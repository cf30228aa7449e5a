"""The static HTML report (`reasonlab report`, the Runs page's download): one self-contained file
that needs no server, with plotly.js once, every model and user string escaped, never written over
a file unless told. tests/test_browser.py opens it in chromium and checks that the figures draw."""

import html
import re

import pandas as pd
import pytest
from plotly.offline import get_plotlyjs

from engine import report
from engine.cli import main
from engine.errors import ReasonlabError
from engine.store import Store
from tests.helpers import HOSTILE_PROBLEM, REPORT_HOSTILE, open_page, report_store


@pytest.fixture
def runs(workspace):
    return report_store(workspace)["runs"]


def write(workspace, run_ids, name="report.html", **kw):
    with Store(workspace / "store.sqlite") as store:
        return report.write_report(store, run_ids, workspace.parent / name, **kw)


def figures(page: str) -> int:
    return page.count('class="plotly-graph-div"')


def test_the_report_is_one_self_contained_file_with_plotly_js_embedded_once(workspace, runs):
    before = set(workspace.parent.iterdir())
    path = write(workspace, [runs["ei"]])
    assert path.is_absolute() and set(workspace.parent.iterdir()) - before == {path}  # no temporary file left
    page = path.read_text()
    assert page.count(get_plotlyjs()[:2000]) == 1
    # nothing is fetched: no script, style sheet, image or frame from a server, nor from a file beside it
    assert not re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=", page, re.I)
    assert page.count("<script") == 1 + figures(page)  # plotly.js, then one call per figure
    # the run's curves (learning, over training, pass@k by checkpoint, every metric) and one tree per problem
    assert figures(page) == 4 + report.DEFAULT_PROBLEMS
    assert "<h2>Findings</h2>" not in page and "The runs compared" not in page  # not the suite's; one run


def test_model_and_user_text_is_escaped_everywhere_and_never_written_raw(workspace, runs):
    page = write(workspace, [runs["ei"]], problems=[HOSTILE_PROBLEM]).read_text()
    assert REPORT_HOSTILE not in page and "<b>x</b>" not in page and "<script>alert" not in page
    assert f"<pre>{html.escape(REPORT_HOSTILE)}</pre>" in page  # the sample, as text
    assert f"<td>{html.escape(REPORT_HOSTILE)}</td>" in page  # the run's name
    assert html.escape(f'"note": "{REPORT_HOSTILE}"') in page  # its config
    # in the figures' data (the tree's labels and hover boxes): plot_text's entities, inside plotly's
    # JSON (which writes '/' as \u002f and '<' as \u003c, so no string closes the figure's script)
    assert '"&lt;script&gt;alert(1)&lt;\\u002fscript&gt; &amp; &lt;b&gt;x&lt;\\u002fb&gt;"' in page


@pytest.mark.parametrize("distinct, wanted, chosen", [
    ([1, 3, 2, 3, 1], None, ["p1", "p3", "p2"]),  # most distinct answers first, table order among equals
    ([1, 1], None, ["p0", "p1"]),  # fewer problems than DEFAULT_PROBLEMS
    ([1, 3, 2], ["p2", "nope", "p0"], ["p2", "p0"]),  # the chosen ones this view has, in the order given
])
def test_problems_shown_are_the_chosen_ones_else_those_with_the_most_distinct_answers(distinct, wanted, chosen):
    table = pd.DataFrame({"problem_id": [f"p{i}" for i in range(len(distinct))], "distinct_answers": distinct})
    assert report.chosen_problems(table, wanted) == chosen


def test_a_chosen_problem_shows_its_tree_and_at_most_max_samples_samples(workspace, runs, monkeypatch):
    monkeypatch.setattr(report, "MAX_SAMPLES", 3)
    page = write(workspace, [runs["ei"]], problems=["test-2"]).read_text()
    assert re.findall(r"<h4>(.*?)</h4>", page) == ["test-2"]
    assert "3 of 5 samples shown" in page  # greedy + 4 samples, capped
    problem = page[page.index("<h4>test-2</h4>"):]
    assert problem.count("<tr><td>") == 3 and problem.index("<td>greedy</td>") < problem.index("<td>0</td>")
    assert figures(problem) == 1  # its solution tree


def test_several_runs_get_a_comparison_and_a_section_each(workspace, runs):
    page = write(workspace, [runs["ppo"], runs["ei"], runs["grpo"]]).read_text()
    sections = re.findall(r'<section id="run-(\d+)">', page)
    assert sections == [str(runs["ppo"]), str(runs["ei"]), str(runs["grpo"])]
    assert page.index("The runs compared") < page.index(f'id="run-{runs["ppo"]}"')
    assert "This run logged no metrics." in page  # the GRPO run that failed at once: said, not drawn empty


def test_a_run_of_the_findings_suite_brings_the_cards_it_takes_part_in(workspace, untrained_checkpoint):
    from engine.findings import suite
    from tests.findings_store import Plan, fabricate

    with Store(workspace / "store.sqlite") as store:
        ids = fabricate(store, untrained_checkpoint, {"ei": Plan([0.2, 0.4], [0.3, 0.4]),
                                                      "ppo": Plan([0.2, 0.3], [0.3, 0.35])}, problems=8, k=4)
    page = write(workspace, [ids["ei"]]).read_text()
    cards = re.findall(r"<h3>(F\d) · ", page)
    assert cards and "F1" in cards  # EI against PPO
    assert "F8" not in cards  # GRPO's alone
    assert figures(page[page.index("<h2>Findings</h2>"):page.index('<section id="run-')]) == len(cards)
    assert suite.RUN_NAME.format(key="ei") in page


def test_the_report_never_overwrites_a_file_unless_told(workspace, runs):
    out = workspace.parent / "report.html"
    out.write_text("the user's own file")
    with pytest.raises(ReasonlabError, match="exists already; pass --force"):
        write(workspace, [runs["ei"]])
    assert out.read_text() == "the user's own file"
    assert write(workspace, [runs["ei"]], replace=True) == out
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in workspace.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_cli_writes_the_report_and_prints_its_path_and_size(workspace, runs, capsys):
    out = workspace.parent / "r.html"
    assert main(["report", str(runs["ei"]), str(runs["ppo"]), "--out", str(out), "--problem", "test-1"]) == 0
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(out))}  \d+\.\d MB", printed)
    assert re.findall(r"<h4>(.*?)</h4>", out.read_text()) == ["test-1", "test-1"]
    assert main(["report", str(runs["ei"]), "--out", str(out)]) == 2  # exists
    assert main(["report", str(runs["ei"]), "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["report", "1", "99", "--out", "{dir}/r.html"], "report: no run 99 in this workspace (its runs: 1, 2, 3)"),
    (["report", "1", "--out", "{dir}/r.html", "--problem", "test-77"],
     "report: problem 'test-77' has no samples at the last checkpoint of run 1"),
    (["report", "1", "--out", "{dir}/missing/r.html"], "report: no directory {dir}/missing"),
])
def test_bad_input_is_a_one_line_error_and_writes_nothing(workspace, runs, capsys, argv, message):
    where = str(workspace.parent)
    assert main([a.replace("{dir}", where) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err == f"reasonlab: error: {message.replace('{dir}', where)}\n"
    assert not (workspace.parent / "r.html").exists()


def test_the_runs_page_offers_the_report_as_a_download(workspace, runs):
    at = open_page("runs", {"run": str(runs["ei"])})
    assert not at.exception
    assert "Download report" in [b.proto.label for b in at.get("download_button")]
