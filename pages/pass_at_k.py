"""pass@k: pass@k / maj@k / rerank@k (by log-probability or an outcome reward model) against k (log
axis) for chosen checkpoints, and maj@1, pass@k and maj@k against training step for a run (or one
of them for several runs against samples seen), with bootstrap bands over problems."""

import streamlit as st

import app
from engine import dashboard, viz, workspace
from engine.errors import ReasonlabError

app.through_navigation()  # a link opened before app.py first ran (app.py says why)

HOME = str(workspace.home())
METRICS = {"pass": "pass@k: any of k samples correct (unbiased estimate)",
           "maj": "maj@k: the majority answer of k samples",
           "rerank": "rerank@k: the answer of the sample ranked highest of k"}
LOGPROB, OTHER_ORM = "log-probability", "an ORM directory…"


@st.cache_data(ttl=2, show_spinner=False)
def load_checkpoints(home):
    return dashboard.evaluated_checkpoints(dashboard.store_at(home))


@st.cache_data(max_entries=16, show_spinner="Computing the curves (every problem, bootstrap bands)…")
def load_curves(home, checkpoints, rerank):
    """checkpoints: ((checkpoint_id, created_at), ...), so a re-created id is not a cache hit."""
    return dashboard.pass_at_k(dashboard.store_at(home), [c for c, _ in checkpoints], rerank=rerank)


@st.cache_data(max_entries=16, show_spinner="Scoring the samples with the ORM (once per checkpoint)…")
def load_orm_curves(home, checkpoints, orm, version):
    """version: the ORM's (dashboard.orm_version), so an ORM replaced in place is not a cache hit."""
    return dashboard.orm_rerank(dashboard.store_at(home), [c for c, _ in checkpoints], orm)


@st.cache_data(ttl=5, show_spinner=False)
def load_orms(home):
    return dashboard.orms(dashboard.store_at(home))


def rerank_scorer():
    """What ranks the k samples: LOGPROB, an ORM's absolute path, or None while no valid ORM
    directory is given (the page says why)."""
    options = {LOGPROB: LOGPROB, **{label: path for label, path in load_orms(HOME)}, OTHER_ORM: None}
    by = st.selectbox("Rank the k samples by", list(options), key="rerank_by",
                      help="log-probability: the sample the model finds most likely. An outcome reward model (ORM): "
                           "the sample it finds most likely correct, as the paper reranks. Listed: each run's own ORM "
                           "and the ORMs runs were given.")
    if by != OTHER_ORM:
        return options[by]
    typed = st.text_input("ORM directory", key="orm_dir", placeholder="/path/to/runs/00003/orm")
    if not typed.strip():
        st.info("Give the directory of an outcome reward model (a PPO or GRPO run with reward=orm trains one "
                "into its run directory).")
        return None
    try:
        return dashboard.orm_path(typed)
    except ReasonlabError as e:  # names the path and what is wrong with it
        st.error(dashboard.literal(e))
        return None


def ranked_by(scorer, markdown: bool = False) -> str:
    """"log-probability" or "the ORM /path" (in markdown, the path as code)."""
    if scorer == LOGPROB:
        return LOGPROB
    return f"the ORM {dashboard.literal(scorer) if markdown else scorer}"


@st.cache_data(max_entries=16, show_spinner="Computing the training curves…")
def load_run_curves(home, runs):
    """runs: ((run_id, ((checkpoint_id, created_at), ...)), ...): recomputed when a run evaluates a checkpoint."""
    return dashboard.runs_training_curves(dashboard.store_at(home), [r for r, _ in runs])


st.title("pass@k")
try:
    checkpoints = load_checkpoints(HOME)
    if checkpoints.empty:
        st.info("No evaluated checkpoint yet. Launch a run (or start the quickstart on Home): every run "
                "evaluates its base checkpoint first, then each checkpoint it saves.")
        st.page_link("pages/launch.py", label="Launch a run", icon=":material/rocket_launch:")
        st.stop()
    latest = checkpoints[checkpoints["run_id"] == checkpoints["run_id"].max()]
    default = sorted({latest["checkpoint_id"].iloc[0], latest["checkpoint_id"].iloc[-1]})
    labels = dict(zip(checkpoints["checkpoint_id"], checkpoints["label"]))
    stamps = dict(zip(checkpoints["checkpoint_id"], checkpoints["created_at"]))

    st.subheader("Against k")
    c1, c2 = st.columns([3, 1])
    chosen = c1.multiselect("Checkpoints", checkpoints["checkpoint_id"].tolist(), default=default,
                            format_func=labels.get)
    metric = c2.radio("Metric", list(METRICS), format_func=lambda m: f"{m}@k", help="\n\n".join(METRICS.values()))
    scorer = rerank_scorer() if metric == "rerank" else None
    if not chosen:
        st.info("Choose one or more checkpoints.")
    elif metric != "rerank" or scorer is not None:
        keys = tuple((c, stamps[c]) for c in sorted(chosen))
        if scorer in (None, LOGPROB):
            table = load_curves(HOME, keys, scorer == LOGPROB)
        else:
            table = load_orm_curves(HOME, keys, scorer, dashboard.orm_version(scorer))
        ranked = f" (rerank by {ranked_by(scorer)})" if scorer else ""  # in plotly titles: viz escapes them
        st.caption(METRICS[metric] + (f", ranked by {ranked_by(scorer, markdown=True)}" if scorer else ""))
        st.plotly_chart(viz.fig_checkpoint_curves(table, metric=metric, title=f"{metric}@k by checkpoint{ranked}"),
                        key="by_k")
        last = table[table["checkpoint_id"] == chosen[-1]]
        st.plotly_chart(viz.fig_curves(last, title=f"{labels[chosen[-1]]}: every metric, 95% bootstrap bands{ranked}"),
                        key="bands")
        at_k = table.pivot_table(index="label", columns=["metric", "k"], values="value").round(3)
        with st.expander("Values"):
            st.dataframe(at_k)

    st.subheader("Over training")
    runs = checkpoints.drop_duplicates("run_id")
    run_labels = {r: f"run {r} · {a}" for r, a in zip(runs["run_id"], runs["algo"])}
    ordered = sorted(run_labels, reverse=True)
    run_ids = st.multiselect("Runs", ordered, default=ordered[:1], format_func=run_labels.get,
                             help="One run: its four metrics against step. Several: one metric of each against "
                                  "samples seen, to compare algorithms for the same sample budget.")
    if not run_ids:
        st.info("Choose one or more runs.")
        st.stop()
    evaluated = checkpoints[["run_id", "checkpoint_id", "created_at"]]
    curves = load_run_curves(HOME, tuple((r, tuple(evaluated[evaluated["run_id"] == r].itertuples(index=False, name=None)))
                                         for r in sorted(run_ids)))
    if len(run_ids) == 1:
        st.plotly_chart(viz.fig_training_curves(curves, title="maj@1 (greedy), pass@1, pass@K and maj@K against step"),
                        key="over_training")
        st.caption("The paper's finding to look for: RL raises maj@1 and pass@1, while pass@K saturates early.")
    else:
        c1, c2 = st.columns(2)
        kind = c1.radio("Metric", dashboard.TRAINING_METRICS, horizontal=True, key="runs_metric",
                        help="K: each run's own number of samples per problem (in its label)")
        x = c2.radio("Against", ["samples_seen", "step"], horizontal=True, key="runs_x",
                     format_func={"samples_seen": "samples seen", "step": "training step"}.get)
        st.plotly_chart(viz.fig_runs_training(curves, kind, x, title=f"{kind} of each run, 95% bootstrap bands"),
                        key="runs_over_training")
        st.caption("The paper's comparison: for the same number of sampled solutions, expert iteration "
                   "does as well as PPO.")
except ReasonlabError as e:
    st.error(dashboard.literal(e))
