"""Compare: two checkpoints side by side: headline metrics, per-problem solve rates, problems gained
and lost (with a paired test), and one problem's samples aligned with a diff."""

from functools import partial

import streamlit as st

import app
from engine import dashboard, export, viz, workspace
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
PAIR_COLUMNS = ["sample_idx_a", "answer_a", "correct_a", "text_a", "text_b", "answer_b", "correct_b", "same"]


@st.cache_data(ttl=2, show_spinner=False)
def load_checkpoints(home):
    return dashboard.evaluated_checkpoints(dashboard.store_at(home))


@st.cache_data(max_entries=16, show_spinner="Comparing every problem…")
def load_comparison(home, a, b):
    """a, b: (checkpoint_id, created_at)."""
    return dashboard.comparison(dashboard.store_at(home), a[0], b[0])


@st.cache_data(max_entries=64, show_spinner=False)
def load_aligned(home, a, b, problem_id):
    return dashboard.aligned(dashboard.store_at(home), a[0], b[0], problem_id)


@st.cache_data(ttl=2, max_entries=64, show_spinner=False)
def load_notes(home, run_ids, problem_id):
    """The problem's notes, and those on its samples in either checkpoint's run."""
    return dashboard.problem_notes(dashboard.store_at(home), run_ids, problem_id)


@st.cache_data(max_entries=16, show_spinner=False)
def load_questions(home, run_id, step, version):
    return dashboard.problem_table(dashboard.store_at(home), run_id, "eval", step).set_index("problem_id")["question"]


def headline(col, name, a, b):
    if a is None or b is None or a != a or b != b:  # None or NaN: not evaluated
        col.metric(name, "-", help="no greedy solution (imported samples without one)" if name == "maj@1" else None)
    else:
        col.metric(name, f"{b:.3f}", delta=f"{b - a:+.3f}", help=f"A: {a:.3f}")


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("Compare two checkpoints")
try:
    checkpoints = load_checkpoints(HOME)
    if len(checkpoints) < 2:
        st.info("Comparing needs two evaluated checkpoints: a run evaluates its base (step 0) and every checkpoint "
                "it saves, so one run with a single training round is enough. Launch one, or start the quickstart.")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.stop()
    ids = checkpoints["checkpoint_id"].tolist()
    labels = dict(zip(ids, checkpoints["label"]))
    latest = checkpoints[checkpoints["run_id"] == checkpoints["run_id"].max()]["checkpoint_id"].tolist()
    first, last = (latest[0], latest[-1]) if len(latest) > 1 else (ids[0], ids[-1])
    c1, c2 = st.columns(2)
    a_id = c1.selectbox("A (before)", ids, index=app.from_url("a", ids, ids.index(first)), format_func=labels.get)
    b_id = c2.selectbox("B (after)", ids, index=app.from_url("b", ids, ids.index(last)), format_func=labels.get)
    if a_id == b_id:
        st.warning("A and B are the same checkpoint: choose two different ones.")
        app.share(link_slot, "compare", a=a_id, b=b_id)
        st.stop()
    rows = checkpoints.set_index("checkpoint_id")
    a, b = (a_id, rows.at[a_id, "created_at"]), (b_id, rows.at[b_id, "created_at"])
    comparison = load_comparison(HOME, a, b)

    m = st.columns(6)
    for col, name in zip(m[:3], ["maj@1", "pass@1", "pass@K"]):
        headline(col, name, rows.at[a_id, name], rows.at[b_id, name])
    m[3].metric("Gained / lost", f"{comparison.gained} / {comparison.lost}",
                help="problems whose greedy answer became right / wrong")
    m[4].metric("McNemar p", f"{comparison.mcnemar_p:.3g}", help="exact test that gains and losses are equally likely")
    m[5].metric("Solve rate change", f"{comparison.mean_diff:+.3f}",
                help=f"mean over problems, 95% paired bootstrap [{comparison.diff_lo:+.3f}, {comparison.diff_hi:+.3f}]")
    st.caption(f"{len(comparison.per_problem)} problems in common; answer distributions moved by a total variation "
               f"distance of {comparison.mean_tv:.3f} on average.")
    f1, f2 = st.columns([3, 2])
    f1.plotly_chart(viz.fig_solve_rates(comparison.per_problem, label_a="A", label_b="B",
                                        title="Per-problem solve rate, B against A"), key="scatter")
    f2.plotly_chart(viz.fig_gained_lost(comparison, title="Problems by greedy outcome, A to B"), key="gained_lost")

    b_row = rows.loc[b_id]
    questions = load_questions(HOME, int(b_row["run_id"]), int(b_row["step"]), b[1])
    per_problem = comparison.per_problem.assign(question=lambda t: t["problem_id"].map(questions).fillna(""))
    gained_tab, lost_tab, all_tab = st.tabs([f"Gained ({comparison.gained})", f"Lost ({comparison.lost})", "All problems"])
    gained_tab.dataframe(per_problem[per_problem["status"] == "gained"], hide_index=True)
    lost_tab.dataframe(per_problem[per_problem["status"] == "lost"], hide_index=True)
    all_tab.dataframe(per_problem, hide_index=True)
    st.download_button("Download the per-problem table (CSV)", partial(export.to_bytes, per_problem, "csv"),
                       file_name=f"compare-{a_id}-{b_id}.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:", key="download_per_problem")

    st.subheader("One problem, side by side")
    order = per_problem.sort_values("status", key=lambda s: s.map({"gained": 0, "lost": 1, "neither": 2, "both": 3}))
    status = dict(zip(per_problem["problem_id"], per_problem["status"]))
    problem_id = st.selectbox("Problem", order["problem_id"].tolist(), index=app.from_url("problem", order["problem_id"]),
                              format_func=lambda p: f"{p} · {status[p]}")
    notes = load_notes(HOME, tuple(int(rows.at[c, "run_id"]) for c in (a_id, b_id)), problem_id)
    if not notes.empty:
        with st.expander(f"Notes ({len(notes)})", expanded=True, icon=":material/sticky_note_2:"):
            for _, n in notes.iterrows():
                st.text(dashboard.note_line(n) + (f"\n{n['text']}" if n["text"] else ""))
    pairs = load_aligned(HOME, a, b, problem_id)
    only_diff = st.checkbox("Only pairs that differ", value=st.query_params.get("differ") != "0")
    app.share(link_slot, "compare", a=a_id, b=b_id, problem=problem_id, differ=int(only_diff))
    shown = (pairs[~pairs["same"]] if only_diff else pairs).reset_index(drop=True)
    event = st.dataframe(shown[PAIR_COLUMNS], hide_index=True, on_select="rerun", selection_mode="single-row",
                         key="pairs", column_config={"sample_idx_a": st.column_config.NumberColumn(
                             "sample", help="-1: the greedy pair")})
    pick = event.selection.rows[0] if event.selection.rows else (0 if len(shown) else None)
    if pick is None:
        st.caption("The two checkpoints wrote the same texts for this problem.")
    else:
        pair = shown.iloc[pick]
        t1, t2 = st.columns(2)
        t1.caption(f"A · {labels[a_id]}")
        t1.code(pair["text_a"] or "(no sample)", language=None)
        t2.caption(f"B · {labels[b_id]}")
        t2.code(pair["text_b"] or "(no sample)", language=None)
        st.caption("Line diff (- only in A, + only in B)")
        st.code(pair["diff"], language="diff")
except ReasonlabError as e:
    st.error(dashboard.literal(e))
