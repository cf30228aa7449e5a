"""Runs: every run with its status; one run live (progress and ETA, learning curves against samples
seen and the policy's entropy per token, PPO / GRPO losses and KL, log tail), with cancel, resume
and delete, and its static HTML report to download."""

from functools import partial

import streamlit as st

import app
from engine import dashboard, export, import_formats, imports, jobs, report, viz, workspace
from engine.dashboard import actions
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
        st.toast(actions.cancel_run(store, run["id"]))
        st.rerun(scope="fragment")
    if jobs.can_resume(run) and st.button("Resume", icon=":material/play_circle:", key="resume",
                                                     help="continues from the last checkpoint, same config and seed"):
        st.toast(actions.resume_run(store, run["id"]))
        load_runs.clear()
        st.rerun()  # the whole page: the live view starts refreshing again
    if run["status"] not in dashboard.ACTIVE:
        with st.popover("Delete", icon=":material/delete:"):
            st.text(dashboard.deletion_summary(store, run))
            if st.button(f"Delete run {run['id']}", type="primary", icon=":material/delete_forever:", key="delete"):
                try:
                    with st.spinner("Deleting…"):
                        st.session_state["deleted"] = actions.delete_run(store, run["id"])
                except ReasonlabError as e:
                    st.error(dashboard.literal(e))
                    return
                st.cache_data.clear()  # every page's cached views of the run
                st.query_params.pop("run", None)
                st.rerun()


def live_view(run_id, live):
    store = dashboard.store_at(HOME)
    app.refresh_runs(HOME, load_runs)  # every few seconds while live: a run whose process died stops being "running"
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
        # built only when clicked (Streamlit calls `data` then, off the script thread)
        st.download_button("Download report", partial(report.report_bytes, store, [run_id]),
                           file_name=f"reasonlab-run-{run_id}.html", mime="text/html", on_click="ignore",
                           icon=":material/download:", key="report",
                           help="one HTML file that opens in any browser without a server: the config, these curves, "
                                "pass@k, and a few problems' solution trees and samples")
        controls(run)

    if metrics.empty:
        st.info("Nothing logged yet: the run evaluates its base checkpoint first (step 0), then trains."
                if run["status"] in dashboard.ACTIVE else "This run logged no metrics.")
    else:
        st.plotly_chart(viz.fig_run_curves(metrics, title="Learning curves against samples seen"), key="curves")
        losses = viz.fig_run_losses(metrics, title="Losses and KL")
        if losses is not None:
            st.plotly_chart(losses, key="losses")
    with st.container(horizontal=True):
        for what in ("metrics", "checkpoints"):  # as `reasonlab export RUN --what ...` writes them
            st.download_button(f"Download the {what} (CSV)", partial(export.run_bytes, store, run_id, what, "csv"),
                               file_name=export.file_name(run_id, what, "csv"), mime="text/csv", on_click="ignore",
                               icon=":material/download:", key=f"download_{what}")
    st.subheader("Log")
    st.code(dashboard.run_log(store, run, metrics) or "(empty)", language=None)
    with st.expander("Worker output"):
        st.code(dashboard.worker_log_tail() or "(empty)", language=None)


def import_samples():
    """Samples another tool made, as a run every analysis page shows (as `reasonlab import FILE`)."""
    if not st.toggle("Import samples from another tool", key="import_open",
                     help="lm-eval's --log_samples output or plain JSONL, as a run the analysis pages show"):
        return
    with st.container(border=True):
        with st.form("import", border=False):
            path = st.text_input("File", key="import_path", placeholder="/path/to/samples_gsm8k_2024-06-01.jsonl",
                                 help="a path on the machine running the dashboard: lm-eval's `--log_samples` file, or "
                                      "JSONL of {problem_id or question, completion, answer?, correct?, greedy?}")
            c1, c2, c3, c4 = st.columns(4)
            fmt = c1.selectbox("Format", ["detect", *import_formats.FORMATS], key="import_format")
            task = c2.selectbox("Task", ["default", *imports.TASKS], key="import_task",
                                help="scores samples that carry no `correct`: gsm8k for lm-eval files; for JSONL, "
                                     "multistep when every line names a built-in problem id, else jsonl")
            split = c3.text_input("Split", key="import_split", placeholder="test")
            name = c4.text_input("Name", key="import_name", placeholder="the file's name")
            submitted = st.form_submit_button("Import", icon=":material/upload:", key="import_submit")
        if submitted:
            try:
                with st.spinner("Reading, checking and scoring every line…"):
                    made = actions.import_samples(dashboard.store_at(HOME), path,
                                                  format=None if fmt == "detect" else fmt,
                                                  task=None if task == "default" else task,
                                                  split=split.strip() or None, name=name.strip() or None)
            except ReasonlabError as e:  # names the file, the line and what is wrong; nothing was written
                st.error(dashboard.literal(e))
                return
            st.session_state["imported"] = (made.run_id, made.summary())
            load_runs.clear()
            st.query_params["run"] = str(made.run_id)
            st.rerun()


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("Runs")
if deleted := st.session_state.pop("deleted", None):
    st.success(dashboard.literal(deleted), icon=":material/delete:")
if imported := st.session_state.pop("imported", None):
    st.success(dashboard.literal("\n".join([f"run {imported[0]}", *imported[1]])), icon=":material/upload_file:")
    st.page_link("pages/solutions.py", label=f"Run {imported[0]}'s solutions", icon=":material/account_tree:",
                 query_params={"run": imported[0], "kind": "eval", "step": 0})
import_samples()
try:
    app.refresh_runs(HOME, load_runs)  # runs whose process died show as interrupted
    runs = load_runs(HOME)
    if runs.empty:
        st.info("No runs yet. Launch one, or start the quickstart on Home: it runs expert iteration on the "
                "weak base model that ships with reasonlab.")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.page_link("pages/home.py", label="Quickstart", icon=":material/home:")
        st.stop()
    st.dataframe(runs, hide_index=True, column_config=RUN_COLUMNS)
    st.download_button("Download this table (CSV)", partial(export.to_bytes, runs, "csv"), file_name="runs.csv",
                       mime="text/csv", on_click="ignore", icon=":material/download:", key="download_runs")

    ids = runs["id"].tolist()
    labels = dict(zip(ids, (dashboard.run_label(r) for _, r in runs.iterrows())))
    run_id = st.selectbox("Run", ids, index=app.from_url("run", ids), format_func=labels.get)
    app.share(link_slot, "runs", run=run_id)

    live = runs.set_index("id").at[run_id, "status"] in dashboard.ACTIVE
    st.fragment(run_every=LIVE_EVERY_S if live else None)(live_view)(run_id, live)
except ReasonlabError as e:
    st.error(dashboard.literal(e))
