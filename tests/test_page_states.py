"""Every page renders every odd state a store can be in: evaluated checkpoints whose samples are
gone, checkpoint directories deleted from disk, a run a delete left "deleting", a failed run that
logged nothing, 100k-character texts, a run of every task kind, and hostile text (HTML, links,
markdown, LaTeX) in samples, answers, questions, run names and errors. Each page must render
without an exception and without an error other than the ones the state calls for; hostile
text must reach markdown only inside code and plotly only escaped. The states (STATES) and the
check of what a page may show (check) are in tests/helpers.py: Search and the browser tests use them."""

from pathlib import Path

import pytest

from engine import dashboard
from engine.store import Store
from tests.helpers import HOSTILE, LONG, PAGES, STATES, check, markdown_values, open_page


@pytest.fixture(scope="module", params=list(STATES))
def state(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(request.param) / "home"
    STATES[request.param](home)
    return request.param, home


def run_ids(home: Path) -> list[int]:
    with Store(home / "store.sqlite") as s:
        return s.runs()["id"].astype(int).tolist()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_every_store_state(state, page, monkeypatch):
    name, home = state
    monkeypatch.setenv("REASONLAB_HOME", str(home))
    at = open_page(page)
    check(at, name, page)
    if (name, page) == ("quickstart_failed", "home"):
        assert dashboard.literal(HOSTILE + LONG) in at.error[0].value  # shown whole, as code
    if page == "runs":  # each run's live view
        shown = []
        for run_id in run_ids(home):
            view = open_page("runs", {"run": str(run_id)})
            check(view, name, f"runs?run={run_id}")
            shown += markdown_values(view)
        if name == "hostile":  # the failed and the interrupted run's errors
            assert sum(dashboard.literal(HOSTILE) in v for v in shown) == 2
    elif page in ("solutions", "diversity") and at.selectbox:  # each run's views
        for label in at.selectbox[0].options:  # "run 3 · ei ..."
            at.selectbox[0].set_value(int(label.split(" ")[1])).run()
            check(at, name, f"{page}, {label[:60]}")
