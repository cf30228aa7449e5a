"""Every view is a link: the inspection pages keep their state in the URL, open exactly the view a
link names (stale values fall back to the default view), and show that link in a Copy link popover."""

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.dashboard import links
from engine.store import Store
from tests.helpers import LINK, open_page


# -- the pure part ---------------------------------------------------------------------------------------


def test_pick_finds_the_linked_option_by_its_text_and_falls_back_otherwise():
    assert links.pick([3, 5, 8], "5") == 1
    assert links.pick([3, 5, 8], "9", default=2) == 2  # a deleted run, a step never reached
    assert links.pick([3, 5, 8], None, default=2) == 2
    assert links.pick(["eval", "rollout"], "rollout") == 1


def test_picks_keeps_the_links_order_drops_stale_values_and_duplicates():
    assert links.picks([1, 2, 3, 4], "4,2,4,9") == [4, 2]
    assert links.picks([1, 2, 3], "9", default=[1]) == [1]
    assert links.picks([1, 2, 3], "", default=[3]) == [3]


values = st.one_of(st.integers(-5, 10_000), st.text(min_size=1, max_size=30))


@given(st.dictionaries(st.text(st.characters(categories=["Ll"]), min_size=1, max_size=8),
                       st.one_of(st.none(), values), max_size=6))
def test_a_view_url_carries_every_value_exactly(params):
    url = links.view_url("http://localhost:8501/solutions", "solutions", params)
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert {k: v[0] for k, v in query.items()} == {k: str(v) for k, v in params.items() if v is not None}
    assert url.startswith("http://localhost:8501/solutions")


def test_a_view_url_without_the_browsers_address_is_the_pages_path():
    assert links.view_url(None, "compare", {"a": 1, "b": 2}) == "/compare?a=1&b=2"
    assert links.view_url(None, "runs", {}) == "/runs"


# -- each page --------------------------------------------------------------------------------------------


def the_link(at) -> str:
    """The link the Copy link popover shows."""
    found = [c.value for c in at.code if LINK.fullmatch(c.value)]
    assert len(found) == 1, found
    return found[0]


def linked_params(at) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(the_link(at)).query).items()}


def eval_steps(run_id):
    with Store() as s:
        return s.checkpoints(run_id)["step"].astype(int).tolist()


def test_solutions_opens_the_linked_run_kind_step_problem_and_node(fabricated):
    from engine import dashboard

    ei = fabricated["runs"]["ei"]
    step = eval_steps(ei)[0]  # not the default (the last)
    with Store() as s:
        nodes = dashboard.tree(dashboard.problem_samples(s, ei, "eval", step, "test-3"))
    node = nodes["id"].iloc[1]
    query = {"run": str(ei), "kind": "eval", "step": str(step), "problem": "test-3", "node": node}
    at = open_page("solutions", query)
    assert not at.exception
    values = {s.label.split(" (")[0]: s.value for s in at.selectbox}
    assert values["Run"] == ei and values["Checkpoint step"] == step and values["Problem"] == "test-3"
    assert values["Step"] == node
    assert at.radio[0].value == "eval"
    assert {k: at.query_params[k] for k in query} == query
    assert linked_params(at) == query


def test_solutions_link_follows_the_view_and_a_stale_link_shows_the_default(fabricated):
    ppo = fabricated["runs"]["ppo"]
    at = open_page("solutions", {"run": str(ppo), "kind": "rollout"})
    assert at.radio[0].value == "rollout"
    steps = at.selectbox[1].options
    assert at.selectbox[1].value == int(steps[-1])  # no step in the link: the newest
    at.selectbox[1].set_value(int(steps[0])).run()
    assert at.query_params["step"] == steps[0] and linked_params(at)["step"] == steps[0]
    stale = open_page("solutions", {"run": "9999", "step": "77", "problem": "nope", "node": "x"})
    assert not stale.exception and not stale.error
    assert stale.query_params["run"] != "9999" and stale.query_params["problem"] != "nope"


def test_pass_at_k_opens_the_linked_checkpoints_metric_and_runs(fabricated):
    ei, ppo = fabricated["runs"]["ei"], fabricated["runs"]["ppo"]
    chosen = [fabricated["checkpoints"][ppo][0], fabricated["checkpoints"][ei][-1]]
    query = {"checkpoints": links.joined(chosen), "metric": "maj", "runs": f"{ei},{ppo}", "over": "pass@1",
             "x": "step"}
    at = open_page("pass_at_k", query)
    assert not at.exception
    assert at.multiselect[0].value == chosen
    assert at.radio[0].value == "maj"
    assert at.multiselect[1].value == [ei, ppo]
    assert at.radio(key="runs_metric").value == "pass@1" and at.radio(key="runs_x").value == "step"
    assert linked_params(at) == query
    at.radio[0].set_value("pass").run()
    assert at.query_params["metric"] == "pass"


def test_pass_at_k_links_a_rerank_by_log_probability(fabricated):
    at = open_page("pass_at_k", {"metric": "rerank", "rank": "log-probability"})
    assert at.selectbox(key="rerank_by").value == "log-probability"
    assert linked_params(at)["rank"] == "log-probability"


def test_diversity_opens_the_linked_run_subset_step_measure_and_problem(fabricated):
    ppo = fabricated["runs"]["ppo"]
    step = eval_steps(ppo)[0]
    query = {"run": str(ppo), "problems": "all", "step": str(step), "measure": "distinct_answers",
             "problem": "test-2"}
    at = open_page("diversity", query)
    assert not at.exception
    values = [s.value for s in at.selectbox]
    assert values == [ppo, None, step, "distinct_answers", "test-2"]  # None: every problem
    assert linked_params(at) == query


def test_compare_opens_the_linked_pair_problem_and_filter(fabricated):
    ei = fabricated["checkpoints"][fabricated["runs"]["ei"]]
    query = {"a": str(ei[-1]), "b": str(ei[0]), "problem": "test-4", "differ": "0"}
    at = open_page("compare", query)
    assert not at.exception
    assert [s.value for s in at.selectbox] == [ei[-1], ei[0], "test-4"]
    assert at.checkbox[0].value is False
    assert linked_params(at) == query


def test_findings_opens_one_linked_finding_and_the_size(workspace):
    at = open_page("findings", {"finding": "F3", "size": "smoke"})
    assert not at.exception
    assert at.selectbox[0].value == "F3" and at.radio(key="size").value == "smoke"
    titles = [h.value for h in at.subheader]
    assert titles and all(t.startswith("F3 ·") for t in titles)
    assert linked_params(at) == {"finding": "F3", "size": "smoke"}
    at.selectbox[0].set_value("all").run()
    assert len(at.subheader) > 1 and "finding" not in at.query_params


@pytest.mark.parametrize("page", ["runs", "solutions", "search", "pass_at_k", "diversity", "compare", "findings"])
def test_every_view_has_a_copy_link_that_names_its_page(page, fabricated):
    at = open_page(page)
    assert not at.exception
    assert urlsplit(the_link(at)).path.endswith(f"/{page}")
