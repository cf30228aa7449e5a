"""Home: on an empty workspace, a one-click quickstart; otherwise an overview of runs and checkpoints."""

import streamlit as st

import app
from engine import dashboard, quickstart, viz, workspace
from engine.dashboard import actions
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())


@st.cache_data(ttl=2, show_spinner=False)
def load_runs(home):
    return dashboard.runs_table(dashboard.store_at(home))


@st.cache_data(ttl=2, show_spinner=False)
def load_checkpoints(home):
    return dashboard.checkpoints_table(dashboard.store_at(home))


RUN_COLUMNS = {
    "id": st.column_config.NumberColumn("run", format="%d"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "maj@1": st.column_config.NumberColumn("maj@1", format="%.3f", help="greedy accuracy of the newest checkpoint"),
}


@st.fragment(run_every=1)
def quickstart_progress():
    """The base model's SFT steps (when building one), then the hand-over to expert iteration."""
    state = quickstart.status() or {"phase": "failed", "error": "the quickstart's status file disappeared"}
    if state["phase"] in ("starting", "building"):
        done, total = state.get("step") or 0, state.get("steps") or 0
        left = f" · about {dashboard.format_seconds(state['eta_s'])} left" if state.get("eta_s") else ""
        text = (f"Building the weak base model: step {done} of {total}{left}" if total
                else "Starting (loading PyTorch)…")
        st.progress(done / total if total else 0.0, text=text)
        watch_the_base(state)
    elif state["phase"] == "launching":
        done = "Base model built" if state.get("base_source") == "built" else "Shipped base model copied"
        st.progress(1.0, text=f"{done}; queuing expert iteration…")
    else:
        st.rerun()  # launched or failed: the whole page shows what happened


def watch_the_base(state):
    """The base learning as it trains: its loss, and what it writes for one held-out problem."""
    loss, probes = state.get("loss") or [], state.get("probes") or []
    if not loss and not probes:
        return
    c1, c2 = st.columns(2)
    if loss:
        c1.plotly_chart(viz.fig_sft_loss(loss), key="sft_loss")
    if probes:
        last = probes[-1]
        c2.caption(f"What it writes at step {last['step']} for a problem it never trains on:")
        c2.text(last["question"])
        c2.code(last["completion"] or "(nothing)", language=None)
        c2.caption(":green[correct]" if last["correct"] else ":red[wrong]")  # its answer is in the text above
        with c2.expander("Its answers so far"):
            st.dataframe(dashboard.probe_table(probes), hide_index=True)


@st.fragment(run_every=3)
def live_runs_table():
    app.refresh_runs(HOME, load_runs)
    st.dataframe(load_runs(HOME), hide_index=True, column_config=RUN_COLUMNS)


st.title("reasonlab")
st.write("Fine-tune a small language model on math word problems with reinforcement learning, watch it "
         "learn, and look inside what it writes: solution trees, pass@k, diversity, checkpoint against checkpoint.")
st.caption(f"Workspace: {dashboard.literal(HOME)}")

try:
    app.refresh_runs(HOME, load_runs)  # runs whose process died show as interrupted
    runs = load_runs(HOME)
    state = quickstart.status()
    if state and state["phase"] in quickstart.WORKING:
        st.subheader("Quickstart")
        quickstart_progress()
    elif runs.empty:
        st.subheader("Start here")
        st.write("One click runs three rounds of Expert Iteration on a deliberately weak base model that ships "
                 "with reasonlab: sample solutions, keep the correct ones, fine-tune, evaluate (3 to 4 minutes). "
                 "It keeps running if you close this tab.")
        if state and state["phase"] == "failed":
            st.error(f"The last quickstart failed: {dashboard.literal(state['error'])}")
        if st.button("Start the quickstart", type="primary", icon=":material/play_arrow:"):
            actions.start_quickstart()
            st.rerun()
        with st.expander("Or build your own base model first"):
            st.write("Train the same weak base from scratch here (5 to 10 minutes on 2 CPU cores, once per "
                     "workspace: base-tiny is reused once built), watching its loss and what it writes for one "
                     "problem as it learns; then the same Expert Iteration runs on it.")
            if st.button("Build my own base", icon=":material/construction:"):
                actions.start_quickstart(build_base=True)
                st.rerun()
        st.page_link("pages/launch.py", label="Or choose the algorithm and its settings yourself",
                     icon=":material/rocket_launch:")

    if not runs.empty:
        if state and state["phase"] == "launched" and state.get("run_id") in set(runs["id"]):
            st.page_link("pages/runs.py", label=f"Follow the quickstart's run {state['run_id']}",
                         icon=":material/monitoring:", query_params={"run": state["run_id"]})
            if state.get("base"):
                made = "the base model you built" if state.get("base_source") == "built" else "the shipped base model"
                st.caption(f"It started from {made}: {dashboard.literal(state['base'])}")
        checkpoints = load_checkpoints(HOME)
        active = runs["status"].isin(dashboard.ACTIVE)
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Runs", len(runs))
        c2.metric("Training or queued", int(active.sum()))
        c3.metric("Finished", int((runs["status"] == "finished").sum()))
        c4.metric("Evaluated checkpoints", int(checkpoints["evaluated"].sum()))
        st.subheader("Runs")
        if active.any():
            live_runs_table()
        else:
            st.dataframe(runs, hide_index=True, column_config=RUN_COLUMNS)
        st.page_link("pages/runs.py", label="Open a run: live progress, curves, log, cancel and resume",
                     icon=":material/monitoring:")
        st.subheader("Checkpoints")
        st.dataframe(checkpoints[checkpoints["evaluated"]][["label", "maj@1", "pass@1", "pass@K", "path"]],
                     hide_index=True)
        cols = st.columns(4)
        cols[0].page_link("pages/solutions.py", label="Solution trees", icon=":material/account_tree:")
        cols[1].page_link("pages/pass_at_k.py", label="pass@k curves", icon=":material/show_chart:")
        cols[2].page_link("pages/diversity.py", label="Diversity", icon=":material/scatter_plot:")
        cols[3].page_link("pages/compare.py", label="Compare checkpoints", icon=":material/compare:")

    bases = dashboard.base_checkpoints()
    st.subheader("Base models")
    if bases:
        st.dataframe({"checkpoint": [p.name for p in bases], "path": [str(p) for p in bases]}, hide_index=True)
    else:
        st.info("No base model in this workspace yet: the quickstart copies in the one that ships with reasonlab "
                "(base-shipped), or run `reasonlab sft --preset tiny` in a terminal to build your own.")
except ReasonlabError as e:
    st.error(dashboard.literal(e))
