"""Diversity: how varied a run's solutions are over training and per problem, and one problem's
answer distribution at every checkpoint."""

from functools import partial

import streamlit as st

import app
from engine import dashboard, export, viz, workspace
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
OVER_TRAINING = ["distinct_answers", "distinct_steps", "answer_entropy", "distinct_2", "self_bleu"]
SUBSETS = {25: "25 problems", 100: "100 problems", 200: "200 problems", None: "every problem"}
HELP = ("distinct answers / texts / steps: how many different ones among a problem's samples; "
        "answer entropy: bits; distinct-n: share of unique n-grams; self-BLEU: how alike the samples "
        "are (higher: less diverse)")


@st.cache_data(ttl=2, show_spinner=False)
def load_checkpoints(home):
    return dashboard.evaluated_checkpoints(dashboard.store_at(home))


@st.cache_data(max_entries=16, show_spinner="Measuring diversity at every checkpoint…")
def load_over_training(home, run_id, problems, checkpoints):
    return dashboard.diversity_over_training(dashboard.store_at(home), run_id, problems)


@st.cache_data(max_entries=16, show_spinner="Measuring diversity per problem…")
def load_per_problem(home, run_id, step, problems, checkpoints):
    return dashboard.diversity_per_problem(dashboard.store_at(home), run_id, step, problems)


@st.cache_data(max_entries=64, show_spinner=False)
def load_answers(home, run_id, problem_id, checkpoints):
    return dashboard.answer_distribution(dashboard.store_at(home), run_id, problem_id)


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("Diversity")
try:
    checkpoints = load_checkpoints(HOME)
    if checkpoints.empty:
        st.info("No evaluated checkpoint yet. Launch a run (or start the quickstart on Home); diversity is "
                "measured on each checkpoint's evaluation samples.")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.stop()
    runs = checkpoints.drop_duplicates("run_id")
    run_labels = {r: f"run {r} · {a}" for r, a in zip(runs["run_id"], runs["algo"])}
    c1, c2 = st.columns([2, 1])
    ordered = sorted(run_labels, reverse=True)
    run_id = c1.selectbox("Run", ordered, index=app.from_url("run", ordered), format_func=run_labels.get)
    subset = c2.selectbox("Problems measured", list(SUBSETS), index=app.from_url("problems", [k or "all" for k in SUBSETS], 1),
                          format_func=SUBSETS.get,
                          help="Diversity reads every sample's text: fewer problems answer faster.")
    mine = checkpoints[checkpoints["run_id"] == run_id]
    stamp = tuple(zip(mine["checkpoint_id"], mine["created_at"]))

    st.subheader("Over training")
    over = load_over_training(HOME, run_id, subset, stamp)
    st.plotly_chart(viz.fig_diversity(over, measures=OVER_TRAINING), key="over_training")
    st.caption("Each panel: the mean over problems at each checkpoint. " + HELP)

    st.subheader("Per problem")
    p1, p2 = st.columns(2)
    step = p1.selectbox("Checkpoint step", mine["step"].tolist(), index=app.from_url("step", mine["step"], len(mine) - 1))
    per_problem = load_per_problem(HOME, run_id, step, subset, stamp)
    if per_problem.empty:  # evaluated, but its samples are gone (a delete cut short)
        st.info(f"Run {run_id}'s checkpoint at step {step} has no sampled solutions to measure (none, or only "
                "greedy ones, as an imported greedy evaluation has).")
        st.stop()
    measures = [m for m in per_problem.columns if m not in ("problem_id", "samples", "solve_rate")]
    measure = p2.selectbox("Measure", measures, help=HELP, index=app.from_url(
        "measure", measures, measures.index("distinct_steps") if "distinct_steps" in measures else 0))
    st.plotly_chart(viz.fig_diversity_histogram(per_problem, measure, title=f"{measure} across problems at step {step}"),
                    key="histogram")
    st.dataframe(per_problem, hide_index=True)
    with st.container(horizontal=True):
        st.download_button("Download this table (CSV)", partial(export.to_bytes, per_problem, "csv"),
                           file_name=f"run-{run_id}-step-{step}-diversity.csv", mime="text/csv", on_click="ignore",
                           icon=":material/download:", key="download_per_problem")
        st.download_button("Download the means over training (CSV)", partial(export.to_bytes, over, "csv"),
                           file_name=f"run-{run_id}-diversity-over-training.csv", mime="text/csv", on_click="ignore",
                           icon=":material/download:", key="download_over_training")

    st.subheader("Answer distribution")
    problem_id = st.selectbox("Problem", per_problem["problem_id"].tolist(),
                              index=app.from_url("problem", per_problem["problem_id"]),
                              help="The final answers its samples gave at each checkpoint; ✓ marks the right one.")
    counts = load_answers(HOME, run_id, problem_id, stamp)
    st.plotly_chart(viz.fig_answers(counts, title=f"{problem_id}: final answers by checkpoint"), key="answers")
    app.share(link_slot, "diversity", run=run_id, problems=subset or "all", step=step, measure=measure, problem=problem_id)
except ReasonlabError as e:
    st.error(dashboard.literal(e))
