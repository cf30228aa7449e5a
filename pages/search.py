"""Search: every sample of every run (or of one) by the text of its solution, its answer, correct or
wrong, reward, length and step; the matches grouped by problem, each group opening its view on
Solutions. The search lives in the URL, so a search is a link."""

import streamlit as st

import app
from engine import dashboard, search, workspace
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
SHOWN = 50  # groups on the page
KINDS = {None: "all", "eval": "evaluation", "rollout": "training rollouts", "eval_deep": "deep evaluation"}
CORRECTNESS = {None: "all", True: "correct", False: "wrong"}
SYNTAX = ("Matched as written, like find in a page: whole words and numbers in any case (17 finds 17, not 117), "
          "symbols as typed with spaces around them optional (12+5 finds 12 + 5). No operators: quotes, *, -, "
          "AND or OR are text.")


@st.cache_data(ttl=2, show_spinner=False)
def load_runs(home):
    return dashboard.runs_table(dashboard.store_at(home))


@st.cache_data(ttl=5, max_entries=32, show_spinner="Searching…")
def load_results(home, filters):
    return search.search(dashboard.store_at(home), **dict(filters), limit=SHOWN)


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("Search")
try:
    app.refresh_runs(HOME, load_runs)  # the run labels show each run's status
    runs = load_runs(HOME)
    if runs.empty:
        st.info("No runs yet, so no samples to search. Launch one (or start the quickstart on Home).")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.stop()
    linked = search.from_url(st.query_params.to_dict())
    labels = {None: "all runs", **dict(zip(runs["id"], (dashboard.run_label(r) for _, r in runs.iterrows())))}

    t1, t2 = st.columns([3, 2])
    text = t1.text_input("Text in the solution", value=linked.get("text", ""), placeholder="e.g. carry, 17, 12 + 5",
                         help=SYNTAX)
    run_options = [None, *runs["id"].tolist()]
    run_id = t2.selectbox("Run", run_options, index=app.from_url("run", run_options), format_func=labels.get)
    c1, c2 = st.columns(2)
    kind = c1.radio("Samples", list(KINDS), index=list(KINDS).index(linked.get("kind")) if linked.get("kind") in KINDS
                    else 0, format_func=KINDS.get, horizontal=True)
    correct = c2.radio("Verdict", list(CORRECTNESS), index=list(CORRECTNESS).index(linked.get("correct")),
                       format_func=CORRECTNESS.get, horizontal=True, help="wrong includes samples never scored")
    with st.expander("Answer, reward, length and step", expanded=bool(linked.keys() & search.MORE_FILTERS)):
        answer = st.text_input("Final answer (exactly)", value=linked.get("answer", ""))
        r1, r2, l1, l2, s1, s2 = st.columns(6)
        reward_min = r1.number_input("Reward from", value=linked.get("reward_min"), step=0.1)
        reward_max = r2.number_input("Reward to", value=linked.get("reward_max"), step=0.1)
        length_min = l1.number_input("Tokens from", value=linked.get("length_min"), min_value=0, step=1)
        length_max = l2.number_input("Tokens to", value=linked.get("length_max"), min_value=0, step=1)
        step_min = s1.number_input("Step from", value=linked.get("step_min"), min_value=0, step=1)
        step_max = s2.number_input("Step to", value=linked.get("step_max"), min_value=0, step=1)
    filters = dict(text=text.strip() or None, run_id=run_id, kind=kind, correct=correct, answer=answer or None,
                   reward_min=reward_min, reward_max=reward_max, length_min=length_min, length_max=length_max,
                   step_min=step_min, step_max=step_max)
    app.share(link_slot, "search", **search.to_url(filters))
    if not search.has_criteria(filters):
        st.caption("Type a text, or choose a run or a filter. " + SYNTAX)
        st.stop()

    result = load_results(HOME, tuple((k, v) for k, v in filters.items() if v is not None))
    shown = f"; the {len(result.groups)} with the most matches below" if len(result.groups) < result.groups_total else ""
    st.subheader(f"{result.matches:,} samples match, in {result.groups_total:,} problem views{shown}")
    if not result.matches:
        st.info("No sample matches (some notes do: below)." if result.notes else
                "Nothing matches. Fewer filters, or other words, may find something.")
    for _, g in result.groups.iterrows():
        with st.container(border=True):
            h1, h2 = st.columns([4, 1], vertical_alignment="center")
            kind_label = KINDS.get(g["kind"]) or dashboard.literal(g["kind"])
            h1.markdown(f"Run {g['run_id']} · {kind_label} · step {g['step']} · problem "
                        f"{dashboard.literal(g['problem_id'])} — **{g['matches']}** matching samples, {g['correct']} correct")
            query = search.solutions_query(g)
            if query:
                h2.page_link("pages/solutions.py", label="Open in Solutions", icon=":material/account_tree:",
                             query_params=query)
            else:
                h2.caption("not shown on Solutions")
            st.code("\n".join(search.example_line(e) for e in g["examples"]), language=None)
    if result.notes:
        st.subheader(result.notes_line())
        for n in result.notes:
            n1, n2 = st.columns([4, 1], vertical_alignment="center")
            n1.text(f"{n['tag'] + ' · ' if n['tag'] else ''}on {n['on']}" + (f"\n{n['text']}" if n["text"] else ""))
            if n["query"]:
                n2.page_link("pages/solutions.py", label="Open in Solutions", icon=":material/account_tree:",
                             query_params=n["query"])
except ReasonlabError as e:
    st.error(dashboard.literal(e))
