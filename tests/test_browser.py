"""End to end in a real browser: `streamlit run app.py` on localhost, driven by Playwright in Debian's
chromium. Opens every page, launches a tiny run from Launch and watches its progress advance on
Runs, opens the solution tree of its finished checkpoint, then deletes the run. Screenshots go to
tests/artifacts/.

Waits are on page content (Playwright's expect / wait_for_* with timeouts), never fixed sleeps.
Chromium comes from apt (`make test` installs it as root); without it these tests skip, except
under CI, where they fail instead.
"""

import os
import re
import shutil
import signal
import urllib.parse
from pathlib import Path

import pytest

from engine.store import Store
from tests.dashboard_store import fabricate_store
from tests.helpers import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MINUTE, expect, require, serve, sync_playwright

PAGES = {"": "reasonlab", "findings": "Findings", "launch": "Launch a run", "runs": "Runs", "solutions": "Solutions",
         "search": "Search", "pass_at_k": "pass@k", "diversity": "Diversity", "compare": "Compare two checkpoints"}


@pytest.fixture(scope="module")
def app(tmp_path_factory, tiny_checkpoint):
    """A dashboard server on a workspace with fabricated runs and a real tiny base model."""
    require("Debian's chromium", Path(CHROMIUM).is_file(), "apt-get install chromium (`make test` does it as root)")
    require("playwright", sync_playwright is not None, "pip install -e '.[dev]'")
    home = tmp_path_factory.mktemp("browser") / "home"
    fabricate_store(home, problems=6, k=8, ei_rounds=2, ppo_checkpoints=2, rollout_problems=4)
    shutil.rmtree(home / "checkpoints" / "base-tiny")
    shutil.copytree(tiny_checkpoint, home / "checkpoints" / "base-tiny")
    try:
        with serve(home) as url:
            yield url, home
    finally:
        with Store(home / "store.sqlite") as s:  # a run the test launched and left behind
            for _, run in s.runs().iterrows():
                if run["status"] == "running" and run["pid"] and run["pid"] == run["pid"]:
                    try:
                        os.kill(int(run["pid"]), signal.SIGTERM)
                    except ProcessLookupError:
                        pass


@pytest.fixture(scope="module")
def browser():
    require("Debian's chromium", Path(CHROMIUM).is_file(), "apt-get install chromium (`make test` does it as root)")
    require("playwright", sync_playwright is not None, "pip install -e '.[dev]'")
    expect.set_options(timeout=MINUTE)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    context.set_default_timeout(MINUTE)
    page = context.new_page()
    yield page
    context.close()


def open_page(page, url: str, path: str, title: str):
    page.goto(f"{url}/{path}")
    expect(page.locator("h1", has_text=title)).to_be_visible(timeout=2 * MINUTE)
    page.wait_for_load_state("networkidle")


def no_error_shown(page):
    expect(page.locator('[data-testid="stException"]')).to_have_count(0)


def test_every_page_opens(app, page):
    url, _ = app
    for path, title in PAGES.items():
        open_page(page, url, path, title)
        if path in ("solutions", "pass_at_k", "diversity", "compare"):  # figures drawn by plotly.js
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=2 * MINUTE)
        no_error_shown(page)
        page.screenshot(path=str(ARTIFACTS / f"page-{path or 'home'}.png"), full_page=True)


def test_launch_a_tiny_run_watch_it_and_open_its_solution_tree(app, page):
    url, home = app
    # 1) Launch: expert iteration from the shipped base (offered first), at the smoke-test size
    open_page(page, url, "launch", "Launch a run")
    expect(page.get_by_role("combobox", name="Base checkpoint")).to_have_value("base-shipped")
    page.locator('[data-testid="stRadioOption"]', has_text="smoke test").click()
    k = page.get_by_role("spinbutton", name="k", exact=True)
    expect(k).to_have_count(1)  # the rerun replaced the default-size form
    expect(k).to_have_value("3")
    page.get_by_role("button", name="Launch").click()
    expect(page.get_by_text(re.compile(r"Run \d+ is queued"))).to_be_visible()
    run_id = int(re.search(r"Run (\d+) is queued", page.get_by_text(re.compile(r"Run \d+ is queued")).inner_text())[1])
    page.screenshot(path=str(ARTIFACTS / "launch-queued.png"), full_page=True)

    # 2) Runs: the live view refreshes by itself; its progress text changes, then the run finishes
    page.get_by_role("link", name=f"Watch run {run_id}").click()
    status = page.locator('[data-testid="stProgress"] p').first
    expect(status).to_be_visible()
    first = status.inner_text()
    assert not first.startswith("finished"), "the run ended before its live view opened"
    page.wait_for_function("""([first]) => {
        const p = document.querySelector('[data-testid="stProgress"] p');
        return p && p.innerText !== first;
    }""", arg=[first], timeout=3 * MINUTE)
    page.screenshot(path=str(ARTIFACTS / "runs-live.png"), full_page=True)
    expect(status).to_contain_text("finished", timeout=5 * MINUTE)
    expect(page.locator('[role="progressbar"]').first).to_have_attribute("aria-valuenow", "100")
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    no_error_shown(page)
    page.screenshot(path=str(ARTIFACTS / "runs-finished.png"), full_page=True)
    with Store(home / "store.sqlite") as s:
        assert s.get_run(run_id)["status"] == "finished"
        assert s.checkpoints(run_id)["step"].tolist() == [0, 1, 2]

    # 3) Solutions: the newest run's last checkpoint, its first problem's tree
    open_page(page, url, "solutions", "Solutions")
    expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile(f"^run {run_id} · ei"))
    expect(page.locator(".js-plotly-plot .iciclelayer")).to_be_visible(timeout=2 * MINUTE)
    page.locator('[data-testid="stRadioOption"]', has_text="node-link").click()
    expect(page.locator(".js-plotly-plot .scatterlayer .point").first).to_be_attached(timeout=MINUTE)
    no_error_shown(page)
    page.screenshot(path=str(ARTIFACTS / "solutions-tree.png"), full_page=True)

    # 4) Runs again: delete the finished run through the Delete popover
    open_page(page, url, f"runs?run={run_id}", "Runs")
    page.locator('[data-testid="stPopover"] button', has_text="Delete").click()
    expect(page.get_by_text(f"Deletes run {run_id} (ei, finished)")).to_be_visible()
    page.get_by_role("button", name=f"Delete run {run_id}").click()
    expect(page.get_by_text(re.compile(rf"run {run_id} deleted: 3 checkpoints"))).to_be_visible()
    no_error_shown(page)
    page.screenshot(path=str(ARTIFACTS / "runs-deleted.png"), full_page=True)
    with Store(home / "store.sqlite") as s:
        assert s.get_run(run_id) is None
    assert not (home / "runs" / f"{run_id:05d}").exists()


def test_a_link_opened_first_after_the_server_starts_gets_the_dashboards_navigation(app, page, tmp_path):
    """Streamlit treats pages/ as an old-style multipage app until app.py first runs; a shared link to
    a page, opened before anyone opened Home, must still get app.py's navigation and layout."""
    home = tmp_path / "home"
    fabricate_store(home, problems=3, k=2, ei_rounds=1, ppo_checkpoints=1, rollout_problems=2)
    with serve(home, "streamlit-first-link.log") as url:
        for path, title in (("runs?run=1", "Runs"), ("solutions", "Solutions"), ("", "reasonlab")):
            open_page(page, url, path, title)
            nav = page.locator('[data-testid="stSidebarNav"]')
            expect(nav.get_by_role("link", name="pass@k")).to_be_visible()  # app.py's titles, not file names
            expect(nav.get_by_text("Inspect")).to_be_visible()  # and its sections
            expect(nav.get_by_role("link", name=re.compile("^app$"))).to_have_count(0)
            if path.startswith("runs"):  # the link's run, not the newest
                expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile(r"^run 1 · ei"))
            no_error_shown(page)
        page.screenshot(path=str(ARTIFACTS / "first-link.png"), full_page=True)


def test_a_view_link_opened_first_shows_that_view_and_copies_as_itself(page, tmp_path):
    """A link to one problem's tree node, opened as the first page after the server starts, shows that
    run, step, problem and node; its Copy link popover gives the same link back."""
    from engine import dashboard

    home = tmp_path / "home"
    ids = fabricate_store(home, problems=4, k=4, ei_rounds=2, ppo_checkpoints=1, rollout_problems=2)
    ei = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as s:
        step = int(s.checkpoints(ei)["step"].iloc[0])  # not the default (the newest)
        node = dashboard.tree(dashboard.problem_samples(s, ei, "eval", step, "test-2"))["id"].iloc[1]
    query = urllib.parse.urlencode({"run": ei, "kind": "eval", "step": step, "problem": "test-2", "node": node})
    with serve(home, "streamlit-view-link.log") as url:
        open_page(page, url, f"solutions?{query}", "Solutions")
        expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile(rf"^run {ei} · ei"))
        expect(page.get_by_role("combobox", name="Checkpoint step")).to_have_value(str(step))
        expect(page.get_by_role("combobox", name=re.compile(r"^Problem"))).to_have_value(re.compile(r"^test-2 · "))
        expect(page.locator(".js-plotly-plot").first).to_be_visible()
        no_error_shown(page)
        page.get_by_role("button", name=re.compile("Copy link")).click()
        link = page.locator('[data-testid="stPopoverBody"] code').first
        expect(link).to_have_text(f"{url}/solutions?{query}")
        page.screenshot(path=str(ARTIFACTS / "view-link.png"), full_page=True)


def test_a_search_link_opened_first_shows_its_results_and_opens_one_in_solutions(page, tmp_path):
    """/search?q=... as the first page after the server starts: the search's inputs and results, and a
    group's Open in Solutions link shows that run, step and problem."""
    from engine.search import search

    home = tmp_path / "home"
    ids = fabricate_store(home, problems=4, k=4, ei_rounds=2, ppo_checkpoints=1, rollout_problems=2)
    ei = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as s:
        line = s.samples(run_id=ei, kind="eval")["text"].iloc[0].splitlines()[0]  # e.g. "3 + 9 = 12"
        expected = search(s, line, run_id=ei, kind="eval")
    first = expected.groups.iloc[0]
    query = urllib.parse.urlencode({"q": line, "run": ei, "kind": "eval"})
    with serve(home, "streamlit-search-link.log") as url:
        open_page(page, url, f"search?{query}", "Search")
        expect(page.get_by_role("textbox", name="Text in the solution")).to_have_value(line)
        expect(page.get_by_text(f"{expected.matches:,} samples match, in {expected.groups_total:,} problem views")).to_be_visible()
        expect(page.get_by_role("link", name="Open in Solutions")).to_have_count(len(expected.groups))
        no_error_shown(page)
        page.screenshot(path=str(ARTIFACTS / "search-link.png"), full_page=True)
        page.get_by_role("link", name="Open in Solutions").first.click()
        expect(page.locator("h1", has_text="Solutions")).to_be_visible()
        expect(page.get_by_role("combobox", name="Run")).to_have_value(re.compile(rf"^run {ei} · ei"))
        expect(page.get_by_role("combobox", name="Checkpoint step")).to_have_value(str(first["step"]))
        expect(page.get_by_role("combobox", name=re.compile(r"^Problem"))).to_have_value(
            re.compile(rf"^{re.escape(first['problem_id'])} "))
        no_error_shown(page)


# -- stored text is shown as text ---------------------------------------------------------------------

# Elements the hostile text would create if any page rendered it as HTML or markdown: a working
# link (also inside plotly's SVG, as xlink:href), bold, an image, a script, KaTeX, an emoji, or an
# element holding exactly one marked-up word of it.
INJECTED = """() => {
    const found = [];
    for (const a of document.querySelectorAll('a')) {
        const href = a.getAttribute('href') || a.getAttribute('xlink:href') || '';
        if (href.includes('evil') || href.trim().startsWith('javascript:')) found.push('a ' + href);
    }
    for (const img of document.querySelectorAll('img[src="x"]')) found.push('img');
    for (const s of document.querySelectorAll('script')) if (s.textContent.includes('alert(')) found.push('script');
    if (document.querySelector('.katex')) found.push('katex');
    const words = new Set(['bold', 'link', 'md', 'strong', 'em', 'red', 's', 'tick']);
    for (const el of document.querySelectorAll('body *')) {
        if (el.children.length === 0 && words.has(el.textContent.trim()) && !el.closest('pre, code'))
            found.push(el.tagName + ' ' + el.textContent);
    }
    if (document.body.innerText.includes(String.fromCodePoint(0x1F604))) found.push('emoji');
    return found;
}"""


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory, browser):
    """A dashboard over a store whose samples, answers, questions, run names and errors are hostile."""
    from tests.helpers import hostile

    home = tmp_path_factory.mktemp("hostile") / "home"
    hostile(home)
    with serve(home, "streamlit-hostile.log") as url:
        yield url, home


def shown_text(page) -> str:
    """The page's text, plotly's SVG included (innerText leaves SVG out)."""
    return page.evaluate("""() => document.body.innerText + '\\n' +
        [...document.querySelectorAll('.js-plotly-plot')].map(p => p.textContent).join('\\n')""")


def test_hostile_text_shows_literally_and_creates_no_element(hostile_app, page):
    from tests.helpers import HOSTILE

    url, home = hostile_app
    with Store(home / "store.sqlite") as s:
        runs = s.runs().set_index("id")["status"]
    failed = int(runs[runs == "failed"].index[0])
    # (path, title, a piece of the hostile text the page must show as it is)
    visits = [("", "reasonlab", None), ("launch", "Launch a run", None),
              (f"runs?run={failed}", "Runs", "<b>bold</b> <img src=x onerror=alert(1)>"),
              ("solutions", "Solutions", "<b>bold</b>"), ("pass_at_k", "pass@k", None),
              ("diversity", "Diversity", "<a href='https://evil.example'>link</a>"),
              ("compare", "Compare two checkpoints", None)]
    for path, title, literal in visits:
        open_page(page, url, path, title)
        if path in ("solutions", "pass_at_k", "diversity", "compare"):
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=2 * MINUTE)
        no_error_shown(page)
        assert page.evaluate(INJECTED) == [], path
        if literal:
            assert literal in shown_text(page), path
        page.screenshot(path=str(ARTIFACTS / f"hostile-{path.split('?')[0] or 'home'}.png"), full_page=True)
    open_page(page, url, f"runs?run={failed}", "Runs")
    text = shown_text(page)
    assert all(piece in text for piece in ("$x^2$", ":smile:", ":red[red]", "[md](https://evil.example)", "**strong**"))
    assert HOSTILE in text.replace("\n", " ")


def test_plotly_draws_escaped_data_literally_in_labels_and_hover_boxes(page, tmp_path):
    """The figures alone, in plotly.js: names, ticks and hover boxes show the text as written (hover
    names come in as data, %{fullData.name}, never spliced into the template)."""
    import pandas as pd

    from engine import viz

    text = "<b>bold</b> <a href='https://evil.example'>link</a>"
    curves = pd.DataFrame({"metric": ["pass"] * 2, "k": [1, 2], "value": [0.3, 0.5], "lo": [0.2, 0.4],
                           "hi": [0.4, 0.6], "checkpoint_id": [1, 1], "step": [0, 0], "label": [text] * 2})
    answers = pd.DataFrame({"step": [0, 0], "answer": [text, "7"], "count": [3, 1], "correct": [True, False]})
    tree = pd.DataFrame({"id": ["0", "1"], "parent": ["", "0"], "label": ["problem", text], "count": [2, 2],
                         "frac_correct": [0.5, 0.5], "mean_logprob": [-1.0, -1.0], "depth": [0, 1], "samples": [[0, 1]] * 2})
    # name -> (figure, the trace and point whose hover box shows the text)
    figures = {"curves": (viz.fig_checkpoint_curves(curves), 0, 1), "answers": (viz.fig_answers(answers), 0, 0),
               "training": (viz.fig_training_curves(curves.assign(metric=text)), 2, 1),
               "tree": (viz.fig_tree_links(tree), 1, 1)}
    for name, (fig, trace, point) in figures.items():
        fig.write_html(tmp_path / f"{name}.html", include_plotlyjs=True, div_id="fig")
        page.goto((tmp_path / f"{name}.html").as_uri())
        page.wait_for_selector(".js-plotly-plot")
        page.evaluate(f"() => Plotly.Fx.hover('fig', [{{curveNumber: {trace}, pointNumber: {point}}}])")
        assert text in page.locator(".hoverlayer").text_content(), name
        assert text in page.locator(".js-plotly-plot").text_content(), name  # legend, ticks or node labels
        assert page.evaluate(INJECTED) == [], name


# -- Findings: one button, every card reaches a verdict ------------------------------------------------


def test_findings_one_button_queues_the_suite_and_every_card_reaches_a_verdict(browser, page, tmp_path):
    """On an empty workspace, at the smoke size: the button queues every run of the suite from the
    shipped base, the page follows them, and every card ends with a verdict and its figure."""
    home = tmp_path / "home"
    with serve(home, "streamlit-findings.log") as url:
        open_page(page, url, "findings", "Findings")
        page.get_by_text("Experiment size").click()
        page.locator('[data-testid="stRadioOption"]', has_text="smoke").click()
        expect(page.get_by_text("Waiting for", exact=False)).to_have_count(8)
        page.get_by_role("button", name="Run the missing experiments").click()
        expect(page.get_by_role("button", name="Every experiment is queued or done")).to_be_visible()
        page.screenshot(path=str(ARTIFACTS / "findings-queued.png"), full_page=True)
        # the page refreshes itself while the runs go, until every one has finished
        expect(page.get_by_text("The experiment: 7 runs, 7 finished")).to_be_visible(timeout=20 * MINUTE)
        expect(page.get_by_text("Waiting for", exact=False)).to_have_count(0)
        expect(page.locator("p", has_text=re.compile(r"^Verdict\."))).to_have_count(8)
        expect(page.locator(".js-plotly-plot")).to_have_count(8)
        no_error_shown(page)
        page.screenshot(path=str(ARTIFACTS / "findings-verdicts.png"), full_page=True)
    with Store(home / "store.sqlite") as s:
        runs = s.runs()
    assert sorted(runs["status"]) == ["finished"] * 7
    assert set(runs["parent_checkpoint"]) == {str(home / "checkpoints" / "base-shipped")}


# -- the static report: opened from disk, no server -----------------------------------------------------


def test_a_report_opened_from_disk_draws_every_figure_and_runs_no_model_text(page, tmp_path, workspace):
    """`reasonlab report`'s file opened with file://: every figure in it is drawn by the plotly.js it
    embeds, nothing else is fetched, no script fails, and a sample whose text is a script and markup
    shows as that text and never runs."""
    from engine.cli import main
    from tests.helpers import HOSTILE_PROBLEM, REPORT_HOSTILE, report_store

    runs = report_store(workspace)["runs"]
    out = tmp_path / "report.html"
    assert main(["report", str(runs["ei"]), str(runs["ppo"]), "--out", str(out), "--problem", HOSTILE_PROBLEM]) == 0
    in_file = out.read_text().count('class="plotly-graph-div"')
    errors, dialogs, fetched = [], [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))  # alert() would open one
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    expect(page.locator(".js-plotly-plot")).to_have_count(in_file)
    drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot svg.main-svg:first-of-type')]
        .filter(svg => svg.getBoundingClientRect().height > 0).length""")  # one per figure, with a size
    assert drawn == in_file and in_file >= 8  # the comparison, each run's curves, a tree per run
    assert errors == [] and dialogs == []
    assert [u for u in fetched if not u.startswith("file://")] == []
    sample = page.locator("pre").filter(has_text=re.compile(f"^{re.escape(REPORT_HOSTILE)}$"))
    expect(sample).to_have_count(1)
    expect(sample).to_be_visible()
    assert page.evaluate("""() => ({
        scripts: document.scripts.length, inText: document.querySelectorAll('pre *, td > :not(pre)').length,
        bold: [...document.querySelectorAll('b')].filter(b => b.textContent === 'x').length})""") == \
        {"scripts": 1 + in_file, "inText": 0, "bold": 0}  # plotly.js, one per figure; no element from the text
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)


def test_the_runs_page_downloads_the_report_built_when_clicked(page, tmp_path):
    """Runs' "Download report": Streamlit calls the engine for the file only on the click, off the
    script's thread; what arrives is the run's whole report."""
    from tests.helpers import report_store

    home = tmp_path / "home"
    runs = report_store(home)["runs"]
    with serve(home, "streamlit-report.log") as url:
        open_page(page, url, f"runs?run={runs['ppo']}", "Runs")
        with page.expect_download(timeout=2 * MINUTE) as download:
            page.get_by_role("button", name="Download report").click()
        no_error_shown(page)
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"reasonlab-run-{runs['ppo']}.html"
    text = saved.read_text()
    assert text.startswith("<!DOCTYPE html>") and f'<section id="run-{runs["ppo"]}">' in text
    assert text.count('class="plotly-graph-div"') >= 5  # curves, losses, over training, pass@k, trees
