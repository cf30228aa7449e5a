"""pass@k: pass@k / maj@k / rerank@k (by log-probability or an outcome reward model) against k (log
axis) for chosen checkpoints, and maj@1, pass@k and maj@k against training step for a run (or one
of them for several runs against samples seen), with bootstrap bands over problems."""

from functools import partial

import streamlit as st

import app
from engine import dashboard, export, rescore, viz, workspace
from engine.dashboard import actions, links
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
    linked = st.query_params.get("rank")  # a scorer the link names: listed, or another ORM directory
    listed = linked in list(options.values())[:-1]
    by = st.selectbox("Rank the k samples by", list(options), key="rerank_by",
                      index=list(options.values()).index(linked) if listed else (len(options) - 1 if linked else 0),
                      help="log-probability: the sample the model finds most likely. An outcome reward model (ORM): "
                           "the sample it finds most likely correct, as the paper reranks. Listed: each run's own ORM "
                           "and the ORMs runs were given.")
    if by != OTHER_ORM:
        return options[by]
    typed = st.text_input("ORM directory", key="orm_dir", placeholder="/path/to/runs/00003/orm",
                          value="" if listed else linked or "")
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


@st.cache_data(ttl=5, show_spinner=False)
def load_rescorings(home, run_id):
    return rescore.rescorings(dashboard.store_at(home), run_id)


@st.cache_data(max_entries=16, show_spinner="Comparing the metrics before and after…")
def load_before_after(home, run_id, rescoring_id, version):
    """version: the run's evaluated checkpoints ((checkpoint_id, created_at), ...), as load_run_curves'."""
    return rescore.metrics_before_after(dashboard.store_at(home), run_id, rescoring_id)


@st.cache_data(max_entries=16, show_spinner="Computing the curves under both scorings…")
def load_rescored_curves(home, rescoring_id, checkpoints):
    return rescore.rescored_curves(dashboard.store_at(home), rescoring_id, [c for c, _ in checkpoints])


def scoring(checkpoints, chosen, metric):
    """Judge a run's stored samples again (another extraction, or its task's code as it is now),
    then its metrics before and after, and the chosen checkpoints' curves under both scorings."""
    st.subheader("Scoring")
    run_ids = sorted(checkpoints["run_id"].unique().tolist(), reverse=True)
    algos = dict(zip(checkpoints["run_id"], checkpoints["algo"]))
    owner = dict(zip(checkpoints["checkpoint_id"], checkpoints["run_id"]))
    c1, c2 = st.columns(2)
    run_id = c1.selectbox("Run to re-score", run_ids, index=run_ids.index(owner[chosen[-1]]) if chosen else 0,
                          format_func=lambda r: f"run {r} · {algos[r]}", key="rescore_run")
    scorer = c2.selectbox("Scorer", list(rescore.SCORERS), key="rescore_scorer",
                          help="\n\n".join(f"{name}: {what}" for name, what in rescore.SCORERS.items()))
    st.caption(f"{rescore.SCORERS[scorer]}. No resampling: the stored samples are judged again, and their "
               "original scores are kept beside the new ones.")
    if st.button(f"Re-score run {run_id}", key="rescore", icon=":material/rule:"):
        bar = st.progress(0.0, text=f"Re-scoring run {run_id} ({scorer})…")
        try:
            actions.rescore_run(dashboard.store_at(HOME), run_id, scorer,
                                progress=lambda done, total: bar.progress(done / max(total, 1),
                                                                          text=f"{done:,} of {total:,} samples"))
        except ReasonlabError as e:  # e.g. the run is running
            st.error(dashboard.literal(e))
        bar.empty()
        load_rescorings.clear()
    existing = load_rescorings(HOME, run_id)
    if existing.empty:
        st.info(f"Run {run_id} has not been re-scored yet: choose a scorer and re-score it.")
        return
    labels = dict(zip(existing["id"], existing["label"]))
    shown = st.selectbox("Re-scoring", list(labels), format_func=labels.get)  # newest first
    unscored = int(existing.set_index("id").at[shown, "unscored"])
    if unscored:
        st.warning(f"{unscored:,} samples left unscored: their problems could not be rebuilt from the run's task.")
    own = checkpoints[checkpoints["run_id"] == run_id]
    version = tuple(own[["checkpoint_id", "created_at"]].itertuples(index=False, name=None))
    st.dataframe(load_before_after(HOME, run_id, shown, version), hide_index=True)
    picked = [c for c in chosen if owner[c] == run_id] or sorted({own["checkpoint_id"].iloc[0], own["checkpoint_id"].iloc[-1]})
    curves = load_rescored_curves(HOME, shown, tuple(v for v in version if v[0] in picked))
    which = metric if metric in ("pass", "maj") else "pass"
    st.plotly_chart(viz.fig_rescored_curves(curves, metric=which, title=f"{which}@k: original (solid), re-scored (dashed)"),
                    key="rescored")


head, link_slot = st.columns([6, 1], vertical_alignment="bottom")
head.title("pass@k")
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
    chosen = c1.multiselect("Checkpoints", checkpoints["checkpoint_id"].tolist(), format_func=labels.get,
                            default=app.all_from_url("checkpoints", checkpoints["checkpoint_id"].tolist(), default))
    metric = c2.radio("Metric", list(METRICS), index=app.from_url("metric", list(METRICS)),
                      format_func=lambda m: f"{m}@k", help="\n\n".join(METRICS.values()))
    scorer = rerank_scorer() if metric == "rerank" else None
    if not chosen:
        st.info("Choose one or more checkpoints.")
    elif metric != "rerank" or scorer is not None:
        keys = tuple((c, stamps[c]) for c in sorted(chosen))
        if scorer in (None, LOGPROB):
            table = load_curves(HOME, keys, scorer == LOGPROB)
        else:
            table = load_orm_curves(HOME, keys, scorer, dashboard.orm_version(scorer))
        if table.empty:  # greedy solutions only, e.g. an imported greedy evaluation
            st.info("These checkpoints have no sampled solutions, only greedy ones: pass@k, maj@k and rerank@k "
                    "need samples. Their maj@1 (greedy accuracy) is under Over training.")
        else:
            if scorer == LOGPROB and (unranked := dashboard.unranked(table, chosen)):
                st.info(f"No log-probabilities for {dashboard.literal(', '.join(labels[c] for c in unranked))} "
                        "(imported samples): no rerank@k by log-probability there; rank by an ORM instead.")
            ranked = f" (rerank by {ranked_by(scorer)})" if scorer else ""  # in plotly titles: viz escapes them
            st.caption(METRICS[metric] + (f", ranked by {ranked_by(scorer, markdown=True)}" if scorer else ""))
            st.plotly_chart(viz.fig_checkpoint_curves(table, metric=metric, title=f"{metric}@k by checkpoint{ranked}"),
                            key="by_k")
            last = table[table["checkpoint_id"] == chosen[-1]]
            st.plotly_chart(viz.fig_curves(last, title=f"{labels[chosen[-1]]}: every metric, 95% bootstrap bands"
                                                       f"{ranked}"), key="bands")
            at_k = table.pivot_table(index="label", columns=["metric", "k"], values="value").round(3)
            with st.expander("Values"):
                st.dataframe(at_k)
            st.download_button("Download the curves with their bands (CSV)", partial(export.to_bytes, table, "csv"),
                               file_name=f"pass-at-k-{metric}.csv", mime="text/csv", on_click="ignore",
                               icon=":material/download:", key="download_curves")

    scoring(checkpoints, chosen, metric)

    st.subheader("Over training")
    runs = checkpoints.drop_duplicates("run_id")
    run_labels = {r: f"run {r} · {a}" for r, a in zip(runs["run_id"], runs["algo"])}
    ordered = sorted(run_labels, reverse=True)
    run_ids = st.multiselect("Runs", ordered, default=app.all_from_url("runs", ordered, ordered[:1]),
                             format_func=run_labels.get,
                             help="One run: its four metrics against step. Several: one metric of each against "
                                  "samples seen, to compare algorithms for the same sample budget.")
    view = {"checkpoints": links.joined(chosen), "metric": metric, "rank": scorer, "runs": links.joined(run_ids)}
    if not run_ids:
        app.share(link_slot, "pass_at_k", **view)
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
                        index=app.from_url("over", list(dashboard.TRAINING_METRICS)),
                        help="K: each run's own number of samples per problem (in its label)")
        x = c2.radio("Against", ["samples_seen", "step"], horizontal=True, key="runs_x",
                     index=app.from_url("x", ["samples_seen", "step"]),
                     format_func={"samples_seen": "samples seen", "step": "training step"}.get)
        st.plotly_chart(viz.fig_runs_training(curves, kind, x, title=f"{kind} of each run, 95% bootstrap bands"),
                        key="runs_over_training")
        st.caption("The paper's comparison: for the same number of sampled solutions, expert iteration "
                   "does as well as PPO.")
        view.update(over=kind, x=x)
    st.download_button("Download the training curves (CSV)", partial(export.to_bytes, curves, "csv"),
                       file_name="training-curves.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:", key="download_training_curves")
    app.share(link_slot, "pass_at_k", **view)
except ReasonlabError as e:
    st.error(dashboard.literal(e))
