"""Runs: every run with its status; one run live (progress and ETA, learning curves against samples
seen and the policy's entropy per token, PPO / GRPO losses and KL, log tail), with cancel, resume
and delete."""

import streamlit as st

import app
from engine import dashboard, jobs, viz, workspace
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
LIVE_EVERY_S = 2


@st.cache_data(ttl=1, show_spinner=False)
def load_runs(home):
    return dashboard.runs_table(dashboard.store_at(home))


@st.cache_data(max_entries=16, show_spinner=False)
def load_metrics(home, run_id, version):
    """Keyed on the run's metrics version: recomputed only when the run has logged something."""
    return dashboard.run_metrics(dashboard.store_at(home), run_id)


RUN_COLUMNS = {
    "id": st.column_config.NumberColumn("run", format="%d"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
    "maj@1": st.column_config.NumberColumn("maj@1", format="%.3f", help="greedy accuracy of the newest checkpoint"),
}


def controls(run):
    """Cancel a queued or running run; resume an interrupted, cancelled or failed one."""
    store = dashboard.store_at(HOME)
    if run["status"] in dashboard.ACTIVE and st.button("Cancel", icon=":material/stop_circle:", key="cancel",
                                                       disabled=bool(run["cancel_requested"]),
                                                       help="stops at the next step, keeping what was done"):
        st.toast(dashboard.cancel_run(store, run["id"]))
        st.rerun(scope="fragment")
    if run["status"] in jobs.RESUMABLE and st.button("Resume", icon=":material/play_circle:", key="resume",
                                                     help="continues from the last checkpoint, same config and seed"):
        st.toast(dashboard.resume_run(store, run["id"]))
        load_runs.clear()
        st.rerun()  # the whole page: the live view starts refreshing again
    if run["status"] not in dashboard.ACTIVE:
        with st.popover("Delete", icon=":material/delete:"):
            st.text(dashboard.deletion_summary(store, run))
            if st.button(f"Delete run {run['id']}", type="primary", icon=":material/delete_forever:", key="delete"):
                try:
                    with st.spinner("Deleting…"):
                        st.session_state["deleted"] = dashboard.delete_run(store, run["id"])
                except ReasonlabError as e:
                    st.error(dashboard.literal(e))
                    return
                st.cache_data.clear()  # every page's cached views of the run
                st.query_params.pop("run", None)
                st.rerun()


def live_view(run_id, live):
    store = dashboard.store_at(HOME)
    run = dashboard.run_detail(store, run_id)
    if live and run["status"] not in dashboard.ACTIVE:
        load_runs.clear()
        st.rerun()  # it just ended: redraw the page once, then stop refreshing
    st.progress(min(max(run["progress"] or 0.0, 0.0), 1.0),
                text=f"{run['status']} · step {run['step']} of {run['total'] or '?'} · {run['phase'] or 'waiting for a worker'}")
    metrics = load_metrics(HOME, run_id, store.metrics_version(run_id))
    seen = metrics["samples_seen"].fillna(0).max() if not metrics.empty else 0  # NaN: logged without it
    maj = metrics[metrics["name"] == "eval/maj@1"].sort_values("step")["value"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Elapsed", dashboard.format_seconds(run["elapsed_s"]))
    c2.metric("Time left", dashboard.format_seconds(run["eta_s"]) if run["status"] == "running" else "-")
    c3.metric("Samples seen", f"{int(seen or 0):,}")
    gain = round(maj.iloc[-1] - maj.iloc[0], 3) if len(maj) > 1 else None
    c4.metric("maj@1", f"{maj.iloc[-1]:.3f}" if len(maj) else "-",
              delta=None if gain is None else f"{gain:+.3f} since step 0",
              delta_color="normal" if gain else "off", delta_arrow="auto" if gain else "off")  # no rise at 0
    if run["status"] == "failed":
        st.error(f"This run failed: {dashboard.literal(run['error'])}", icon=":material/error:")
    elif run["status"] in ("interrupted", "cancelled") and run["error"]:
        st.warning(dashboard.literal(run["error"]))
    with st.container(horizontal=True):
        if run["status"] == "failed" and run["traceback"]:  # kept off the page; a bug report wants it whole
            st.download_button("Download the traceback", run["traceback"], file_name=f"run-{run['id']}-traceback.txt",
                               icon=":material/download:")
        controls(run)

    if metrics.empty:
        st.info("Nothing logged yet: the run evaluates its base checkpoint first (step 0), then trains."
                if run["status"] in dashboard.ACTIVE else "This run logged no metrics.")
    else:
        st.plotly_chart(viz.fig_run_curves(metrics, title="Learning curves against samples seen"), key="curves")
        losses = viz.fig_run_losses(metrics, title="Losses and KL")
        if losses is not None:
            st.plotly_chart(losses, key="losses")
    st.subheader("Log")
    st.code(dashboard.run_log(store, run, metrics) or "(empty)", language=None)
    with st.expander("Worker output"):
        st.code(dashboard.worker_log_tail() or "(empty)", language=None)


st.title("Runs")
if deleted := st.session_state.pop("deleted", None):
    st.success(dashboard.literal(deleted), icon=":material/delete:")
try:
    runs = load_runs(HOME)
    if runs.empty:
        st.info("No runs yet. Launch one, or start the quickstart on Home: it runs expert iteration on the "
                "weak base model that ships with reasonlab.")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.page_link("pages/home.py", label="Quickstart", icon=":material/home:")
        st.stop()
    st.dataframe(runs, hide_index=True, column_config=RUN_COLUMNS)

    ids = runs["id"].tolist()
    wanted = st.query_params.get("run")
    index = ids.index(int(wanted)) if wanted and wanted.isdigit() and int(wanted) in ids else 0
    labels = dict(zip(ids, (dashboard.run_label(r) for _, r in runs.iterrows())))
    run_id = st.selectbox("Run", ids, index=index, format_func=labels.get)
    st.query_params["run"] = str(run_id)  # a shareable link to this run

    live = runs.set_index("id").at[run_id, "status"] in dashboard.ACTIVE
    st.fragment(run_every=LIVE_EVERY_S if live else None)(live_view)(run_id, live)
except ReasonlabError as e:
    st.error(dashboard.literal(e))
