"""Solutions: run -> checkpoint (or training step) -> problem; the problem's solution tree, every
sample in a filterable table, the texts through a chosen step, and the problem across training."""

from functools import partial

import streamlit as st

import app
from engine import dashboard, export, viz, workspace
from engine.dashboard import actions
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
KINDS = {"eval": "evaluation", "rollout": "training rollouts"}
SAMPLE_COLUMNS = ["sample_idx", "correct", "answer", "reward", "logprob", "n_tokens", "text"]
SAMPLE_CONFIG = {"sample_idx": st.column_config.NumberColumn("sample", help="-1: the greedy solution"),
                 "text": st.column_config.TextColumn("text", width="large")}


@st.cache_data(ttl=2, show_spinner=False)
def load_runs(home):
    return dashboard.runs_table(dashboard.store_at(home))


@st.cache_data(ttl=2, show_spinner=False)
def load_steps(home, run_id, kind):
    return dashboard.sample_steps(dashboard.store_at(home), run_id, kind)


@st.cache_data(max_entries=16, show_spinner="Summarising the problems…")
def load_problems(home, run_id, kind, step, version):
    return dashboard.problem_table(dashboard.store_at(home), run_id, kind, step)


@st.cache_data(max_entries=64, show_spinner=False)
def load_samples(home, run_id, kind, step, problem_id, version):
    return dashboard.problem_samples(dashboard.store_at(home), run_id, kind, step, problem_id)


@st.cache_data(max_entries=64, show_spinner=False)
def load_tree(home, run_id, kind, step, problem_id, version, min_count):
    samples = load_samples(home, run_id, kind, step, problem_id, version)
    return dashboard.tree(samples, min_count=min_count)


@st.cache_data(max_entries=64, show_spinner=False)
def load_info(home, run_id, split, problem_id):
    return dashboard.problem_info(dashboard.store_at(home), run_id, split, problem_id)


@st.cache_data(ttl=2, max_entries=64, show_spinner=False)
def load_notes(home, run_id, problem_id):
    return dashboard.problem_notes(dashboard.store_at(home), run_id, problem_id)


def note_form(key, label, **on):
    """Tag and text of a new note on the problem or on one sample (`on`: store.add_note's place)."""
    with st.form(key, clear_on_submit=True, border=False):
        f1, f2 = st.columns([1, 2])
        tag = f1.text_input("Tag", max_chars=60, placeholder="e.g. good example for class", key=f"{key}_tag")
        text = f2.text_area("Note", placeholder="e.g. forgot the carry", height=68, key=f"{key}_text")
        if st.form_submit_button(label, icon=":material/edit_note:"):
            try:
                actions.add_note(dashboard.store_at(HOME), text, tag, **on)
            except ReasonlabError as e:
                st.error(dashboard.literal(e))
                return
            load_notes.clear()
            st.rerun()


def show_notes(notes):
    for _, n in notes.iterrows():
        n1, n2 = st.columns([20, 1], vertical_alignment="center")
        n1.text(dashboard.note_line(n) + (f"\n{n['text']}" if n["text"] else ""))
        if n2.button("", icon=":material/delete:", key=f"delete_note_{n['id']}", help="delete this note"):
            actions.delete_note(dashboard.store_at(HOME), int(n["id"]))
            load_notes.clear()
            st.rerun()


@st.cache_data(max_entries=32, show_spinner=False)
def load_history(home, run_id, problem_id, kind, version):
    return dashboard.problem_history(dashboard.store_at(home), run_id, problem_id, kind)


def show_texts(samples):
    """The distinct solutions among some samples, most frequent first, as plain text."""
    for _, t in dashboard.distinct_texts(samples).iterrows():
        st.caption(f"{t['count']} × · {'correct' if t['correct'] else 'wrong'}")
        st.code(t["text"], language=None)


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("Solutions")
try:
    app.refresh_runs(HOME, load_runs)  # the run labels show each run's status
    runs = load_runs(HOME)
    if runs.empty:
        st.info("No runs yet. Launch one (or start the quickstart on Home); its base checkpoint is evaluated "
                "first, and its solutions show up here.")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.stop()
    store = dashboard.store_at(HOME)
    c1, c2, c3 = st.columns([2, 2, 1])
    labels = dict(zip(runs["id"], (dashboard.run_label(r) for _, r in runs.iterrows())))
    run_id = c1.selectbox("Run", runs["id"].tolist(), index=app.from_url("run", runs["id"], dashboard.default_run(runs)),
                          format_func=labels.get)
    kind = c2.radio("Samples", list(KINDS), index=app.from_url("kind", list(KINDS)), format_func=KINDS.get, horizontal=True,
                    help="evaluation: greedy + K samples per test problem at each checkpoint; "
                         "training rollouts: what the run sampled and trained on at each step")
    steps = load_steps(HOME, run_id, kind)
    if not steps:
        st.info(f"Run {run_id} has no {KINDS[kind]} yet: the base checkpoint's evaluation (step 0) comes first; "
                "follow it on Runs.")
        st.page_link("pages/runs.py", label="Runs", icon=":material/monitoring:", query_params={"run": run_id})
        st.stop()
    step = c3.selectbox("Checkpoint step" if kind == "eval" else "Training step", steps,
                        index=app.from_url("step", steps, len(steps) - 1))
    version = dashboard.view_version(store, run_id, kind, step)
    problems = load_problems(HOME, run_id, kind, step, version)
    f1, f2 = st.columns(2)
    status = f1.radio("Problems", dashboard.PROBLEM_FILTERS, horizontal=True,
                      help="solved: the greedy solution is right (or, without one, most samples are); "
                           "unsolved: it is not; never solved: no sample is right")
    contains = f2.text_input("Question contains", placeholder="e.g. pencils")
    shown = dashboard.filter_problems(problems, status, contains)
    if shown.empty:  # no problem at all: evaluated, but its samples are gone (a delete cut short)
        st.info("No problem matches these filters." if len(problems) else f"Run {run_id} has no {KINDS[kind]} left "
                f"at step {step}.")
        st.stop()
    rates = dict(zip(problems["problem_id"], problems["solve_rate"]))
    questions = dict(zip(problems["problem_id"], problems["question"]))
    problem_id = st.selectbox(f"Problem ({len(shown)} of {len(problems)})", shown["problem_id"].tolist(),
                              index=app.from_url("problem", shown["problem_id"]),
                              format_func=lambda p: f"{p} · {rates[p]:.0%} correct · {questions[p][:90]}")
    split = problems.set_index("problem_id").at[problem_id, "split"]
    info = load_info(HOME, run_id, split, problem_id)
    samples = load_samples(HOME, run_id, kind, step, problem_id, version)

    q1, q2, q3 = st.columns([4, 1, 1])
    q1.text(info.get("question", problem_id))
    q2.metric("solve rate", f"{rates[problem_id]:.0%}")
    q3.metric("answer", dashboard.literal(info.get("answer", "?")))
    if info:
        with st.expander("Reference solution"):
            st.code(info["reference"], language=None)
    notes = load_notes(HOME, run_id, problem_id)
    with st.expander(f"Notes ({len(notes)})", expanded=not notes.empty, icon=":material/sticky_note_2:"):
        show_notes(notes)
        note_form("note_on_problem", "Add a note on this problem", run_id=run_id, problem_id=problem_id)

    tree_tab, table_tab, history_tab = st.tabs(["Solution tree", "All samples", "Across training"])
    with tree_tab:
        t1, t2 = st.columns([2, 1])
        style = t1.radio("Drawing", ["icicle", "sunburst", "node-link"], horizontal=True,
                         help="size: samples through a step; colour: the share of them that end correct")
        min_count = t2.number_input("Hide branches with fewer samples than", 1, 1000, 1)
        nodes = load_tree(HOME, run_id, kind, step, problem_id, version, min_count)
        fig = viz.fig_tree_links(nodes) if style == "node-link" else viz.fig_tree(nodes, kind=style)
        st.plotly_chart(fig, key="tree")
        node_labels = {n["id"]: dashboard.node_label(n) for _, n in nodes.iterrows()}
        same_problem = st.query_params.get("problem") == problem_id  # a node of another problem's tree means nothing here
        node_id = st.selectbox("Step", nodes["id"].tolist(), index=app.from_url("node", nodes["id"]) if same_problem else 0,
                               format_func=node_labels.get,
                               help="every solution that reaches this step; the root is the whole problem")
        app.share(link_slot, "solutions", run=run_id, kind=kind, step=step, problem=problem_id, node=node_id)
        through = dashboard.node_samples(samples, nodes, node_id)
        st.caption(f"{len(through)} samples reach this step; the most frequent complete solutions:")
        show_texts(through)

    with table_tab:
        s1, s2, s3 = st.columns(3)
        correctness = s1.radio("Show", ["all", "correct", "wrong"], horizontal=True)
        answers = s2.multiselect("Final answer", sorted(samples["answer"].fillna("no answer").unique()))
        text = s3.text_input("Text contains", placeholder="e.g. 6 * 3")
        picked = dashboard.filter_samples(samples, correctness, answers, text).reset_index(drop=True)
        table = picked[SAMPLE_COLUMNS].assign(notes=dashboard.sample_note_column(picked, notes))
        event = st.dataframe(table, hide_index=True, column_config=SAMPLE_CONFIG, on_select="rerun",
                             selection_mode="single-row", key="samples")
        if event.selection.rows:
            row = event.selection.rows[0]
            st.code(table.at[row, "text"], language=None)
            note_form("note_on_sample", f"Add a note on sample {table.at[row, 'sample_idx']}",
                      sample_id=int(picked.at[row, "id"]))
        else:
            st.caption("Select a row to read the whole solution, or to write a note on it.")
        d1, d2 = st.columns(2)
        d1.download_button("Download these samples (CSV)", partial(export.to_bytes, table, "csv"), on_click="ignore",
                           file_name=f"run-{run_id}-{kind}-step-{step}-{problem_id}.csv", mime="text/csv",
                           icon=":material/download:", key="download_problem_samples")
        with d2.popover("Download the whole run", icon=":material/download:"):
            st.caption("Parquet, with each sample's prompt; it loads with pandas.read_parquet and "
                       "datasets.load_dataset('parquet', ...). As CSV or JSON lines (larger: the prompt on every "
                       f"row): `reasonlab export {run_id} --what samples --out run-{run_id}.csv`")
            for what, label in (("samples", "evaluation samples"), ("rollouts", "training rollouts")):
                st.download_button(f"Run {run_id}: all {label}", on_click="ignore", key=f"download_run_{what}",
                                   data=partial(export.run_bytes, store, run_id, what, "parquet"),  # built on click
                                   file_name=export.file_name(run_id, what, "parquet"), mime=export.MIME["parquet"],
                                   icon=":material/download:")

    with history_tab:
        history = load_history(HOME, run_id, problem_id, kind, store.metrics_version(run_id))
        st.caption(f"Problem {problem_id} at every step of run {run_id} that sampled it.")
        st.dataframe(history.drop(columns="greedy"), hide_index=True)
        for _, h in history.iterrows():
            verdict = "" if h["greedy_correct"] is None else (" (correct)" if h["greedy_correct"] else " (wrong)")
            st.caption(f"step {h['step']}: {'greedy' if h['greedy_correct'] is not None else 'most frequent'} solution{verdict}")
            st.code(h["greedy"], language=None)
except ReasonlabError as e:
    st.error(dashboard.literal(e))
