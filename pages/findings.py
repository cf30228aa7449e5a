"""Findings: the paper's results and newer ones, one card each, judged from runs the user launched:
the claim and its source, the runs that test it with their status, one button that queues what
is missing, the evidence figure, and a verdict computed with its uncertainty."""

import streamlit as st

import app
from engine import dashboard, workspace
from engine.dashboard import actions
from engine.dashboard import findings as board
from engine.errors import ReasonlabError
from engine.findings import FINDINGS, figures, tables

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
LIVE_EVERY_S = 3
ALL = "all"
BADGES = {"confirmed": ("green", ":material/check_circle:"), "contradicted": ("red", ":material/cancel:"),
          "inconclusive": ("orange", ":material/help:"), "too little data": ("gray", ":material/hourglass_empty:"),
          "waiting": ("gray", ":material/schedule:"), "measured": ("blue", ":material/table_chart:")}
RUN_COLUMNS = {"run_id": st.column_config.NumberColumn("run id", format="%d"),
               "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent")}


@st.cache_data(ttl=1, show_spinner=False)
def load_runs(home, size):
    return board.suite_runs(dashboard.store_at(home), size)


@st.cache_data(max_entries=8, show_spinner="Computing the verdicts from your runs…")
def load_cards(home, size, fingerprint, orm):
    """Keyed on the suite's runs (status, evaluated checkpoints): recomputed when one moves on.
    orm: F5 reranks by the suite's ORM (its scores are computed once, then cached on disk)."""
    return board.cards(dashboard.store_at(home), size, orm=orm)


def card(c):
    colour, icon = BADGES[c.verdict.status]
    with st.container(border=True):
        st.subheader(f"{c.finding.key} · {c.finding.title}")
        st.badge(c.verdict.status, icon=icon, color=colour)
        st.markdown(f"**Claim.** {c.finding.claim}")
        st.caption(f"Source: {c.finding.source}. Experiment: {c.finding.experiment}")
        runs = ", ".join(f"{key}: " + ("missing" if r is None else f"run {r.run_id} ({r.status})") for key, r in c.runs.items())
        st.caption(f"Runs: {runs}")
        st.plotly_chart(figures.figure(c), key=f"fig-{c.finding.key}")
        st.markdown(f"**Verdict.** {c.verdict.text}")
        if c.finding.key == "F5" and not c.tables["results"].empty:
            results = c.tables["results"]
            md, tex, csv = st.tabs(["Markdown", "LaTeX", "CSV"])
            md.code(tables.markdown(results), language="markdown")
            tex.code(tables.latex(results), language="latex")
            csv.code(tables.csv(results), language=None)
            st.download_button("Download CSV", tables.csv(results), file_name="reasonlab-results.csv",
                               mime="text/csv", icon=":material/download:")


def live(size, focus, orm):
    """Refreshed every few seconds while a run of the suite is queued or running."""
    app.refresh_runs(HOME, load_runs)
    runs = load_runs(HOME, size)
    active = runs["status"].isin(["queued", "running"]).any()
    todo = board.missing(runs)
    fingerprint = tuple(runs[["run_id", "status", "checkpoints"]].itertuples(index=False, name=None))
    found = load_cards(HOME, size, fingerprint, orm)
    counts = board.status_counts(found)
    m = st.columns([1, 1, 1, 1, 2])
    for col, (name, n) in zip(m, counts.items()):
        col.metric(name, n)
    label = "Run the missing experiments" if todo else "Every experiment is queued or done"
    if m[4].button(label, type="primary", disabled=not todo, icon=":material/play_arrow:", key="queue",
                   width="stretch",
                   help="queues the runs still missing (a finished run with the same config is reused, a stopped "
                        "one resumed) for the background worker, one after another"):
        try:
            for line in actions.queue_missing(dashboard.store_at(HOME), size):
                st.toast(line)
        except ReasonlabError as e:
            st.error(dashboard.literal(e))
        load_runs.clear()
        st.rerun()  # the whole page: it refreshes itself while the runs go
    m[4].caption(board.SIZE_TIME[size] + (" Runs in progress: each verdict appears as its runs finish." if active else ""))
    with st.expander(f"The experiment: {len(runs)} runs, {int((runs['status'] == 'finished').sum())} finished",
                     expanded=bool(active)):
        st.dataframe(runs[["run", "run_id", "status", "progress", "checkpoints"]], hide_index=True,
                     column_config=RUN_COLUMNS)
    for _, failed in runs[runs["status"] == "failed"].iterrows():
        st.error(f"{failed['run']} (run {int(failed['run_id'])}) failed: {dashboard.literal(failed['error'] or '')}. "
                 "The button resumes it.")
    for c in found:
        if focus in (ALL, c.finding.key):
            card(c)


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("Findings")
st.caption("The findings of Havrilla et al. 2024 (Teaching Large Language Models to Reason with Reinforcement Learning) "
           "and newer ones, each checked against runs you launch here, from the base that ships with reasonlab, at one "
           "shared sample budget and seed. Every verdict is computed from your runs with a 95% interval; when your "
           "runs disagree with a paper, the card says so.")
keys = [ALL, *(f.key for f in FINDINGS)]
s1, s2, s3 = st.columns([1, 2, 2], vertical_alignment="center")
focus = s1.selectbox("Show", keys, index=app.from_url("finding", keys),
                     format_func=lambda k: {ALL: "every finding"}.get(k, k))
with s2.expander("Experiment size"):
    size = st.radio("Size", ["suite", "smoke"], horizontal=True, help=board.SIZE_HELP, key="size",
                    index=app.from_url("size", ["suite", "smoke"]))
orm = s3.toggle("F5: rerank@K by the ORM that the ORM-reward run trained", key="orm_rerank",
                value=st.query_params.get("orm") == "1",
                help="by log-probability otherwise; the ORM scores each run's samples once (about a minute "
                     "per run on 2 CPU cores), then reads them back")
app.share(link_slot, "findings", finding=None if focus == ALL else focus, size=size, orm=int(orm) or None)
try:
    actions.copy_shipped_base()  # the suite starts from it: the queries below only read
    app.refresh_runs(HOME, load_runs)  # a run whose process died shows as interrupted
    busy = load_runs(HOME, size)["status"].isin(["queued", "running"]).any()
    st.fragment(live, run_every=LIVE_EVERY_S if busy else None)(size, focus, orm)
except ReasonlabError as e:
    st.error(dashboard.literal(e))
