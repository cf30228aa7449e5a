"""Plotly figures for the dashboard, built from the DataFrames of engine.evaluation's analysis
functions (which take store queries). Pages only place them; nothing here imports Streamlit.

    curve_table          -> fig_curves               pass@k / maj@k / rerank@k vs k, with bands
    checkpoint_curves    -> fig_checkpoint_curves    one metric vs k, one line per checkpoint
    training_curves      -> fig_training_curves      maj@1, pass@1, pass@K, maj@K vs training step
    rescore.rescored_curves -> fig_rescored_curves   pass@k / maj@k vs k, original and re-scored
    diversity_by_checkpoint -> fig_diversity         diversity means vs training step
    checkpoint_diversity -> fig_diversity_histogram  one measure across problems
    solution_tree        -> fig_tree, fig_tree_links icicle / sunburst, and a node-link drawing
    compare_checkpoints  -> fig_solve_rates, fig_gained_lost
    Store.metrics        -> fig_run_curves, fig_run_losses  a run's logged metrics vs samples seen
    answer_distribution  -> fig_answers              one problem's final answers at each step

Plotly reads HTML in every string it draws (<b>, <a href>, <br>...), so every string that comes
from data (model output, answers, problem ids, run names and labels) goes through `text` first (engine/plot_text.py);
a table without the columns a figure needs (nothing evaluated, samples deleted) draws an empty
figure that says so.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

from engine.evaluation.compare import Comparison
from engine.evaluation.trees import tree_layout
from engine.plot_text import HOVER_CHARS, LABEL_CHARS, empty_figure, text, texts  # noqa: F401 (viz.text etc.)
from engine.plot_text import lacks as _lacks
from engine.plot_text import title_text as _title

PALETTE = qualitative.Plotly
CORRECT_SCALE = "RdYlGn"  # fraction correct: red 0 .. green 1
STATUS_COLOURS = {"gained": "#2ca02c", "lost": "#d62728", "both": "#1f77b4", "neither": "#7f7f7f"}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band(fig: go.Figure, x, lo, hi, colour: str, group: str, **where) -> None:
    """A shaded interval: the upper edge, then the lower edge filled up to it."""
    fig.add_trace(go.Scatter(x=list(x), y=list(hi), mode="lines", line={"width": 0}, showlegend=False,
                             legendgroup=group, hoverinfo="skip"), **where)
    fig.add_trace(go.Scatter(x=list(x), y=list(lo), mode="lines", line={"width": 0}, fill="tonexty",
                             fillcolor=_rgba(colour, 0.2), showlegend=False, legendgroup=group,
                             hoverinfo="skip"), **where)


def _k_axis(ks) -> dict:
    """A log axis of k ticked at 1, 2, 4, ... and the largest k (plotly's own log ticks fall on
    k = 1.5, 2.5, ... for small K)."""
    top = int(max(ks, default=1))
    return {"title": "k", "type": "log", "tickvals": sorted({2**i for i in range(top.bit_length())} | {top})}


def fig_curves(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Each metric of a `curve_table` against k (log axis), with its bootstrap band."""
    if _lacks(table, "metric", "k", "value", "lo", "hi"):
        return empty_figure(title, "no evaluation samples")
    fig = go.Figure()
    for i, (metric, rows) in enumerate(table.groupby("metric", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        rows = rows.sort_values("k")
        _band(fig, rows["k"], rows["lo"], rows["hi"], colour, f"g{i}")
        fig.add_trace(go.Scatter(x=rows["k"], y=rows["value"], mode="lines+markers", name=text(f"{metric}@k"),
                                 legendgroup=f"g{i}", line={"color": colour},
                                 hovertemplate="%{fullData.name} at k = %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis=_k_axis(table["k"]),
                      yaxis={"title": "accuracy", "range": [0, 1.02]}, hovermode="x unified")
    return fig


def fig_checkpoint_curves(table: pd.DataFrame, metric: str = "pass", title: str | None = None) -> go.Figure:
    """One metric of a `checkpoint_curves` table against k, one line per checkpoint, coloured from
    early (light) to late (dark) training steps. Lines are named by a `label` column when the
    table has one (checkpoints of several runs), else "step N"."""
    title = title or f"{metric}@k by checkpoint"
    if _lacks(table, "metric", "k", "value", "step"):
        return empty_figure(title, "no evaluation samples")
    rows = table[table["metric"] == metric]
    # one line per checkpoint: two runs' checkpoints at the same step stay apart
    key = "checkpoint_id" if "checkpoint_id" in rows and rows["checkpoint_id"].notna().all() else "step"
    lines = rows[[key, "step"]].drop_duplicates(key).sort_values(["step", key])[key].tolist()
    colours = sample_colorscale("Viridis", [0.85 * (1 - i / max(len(lines) - 1, 1)) for i in range(len(lines))])
    fig = go.Figure()
    for line, colour in zip(lines, colours):
        curve = rows[rows[key] == line].sort_values("k")
        name = curve["label"].iloc[0] if "label" in curve else f"step {curve['step'].iloc[0]}"
        # the name goes in as data (fullData.name), never into the template, where %{...} would be read
        fig.add_trace(go.Scatter(x=curve["k"], y=curve["value"], mode="lines", name=text(name),
                                 line={"color": colour},
                                 hovertemplate=f"%{{fullData.name}}: {text(metric)}@%{{x}} = %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis=_k_axis(rows["k"]), yaxis={"title": f"{text(metric)}@k", "range": [0, 1.02]})
    return fig


def fig_rescored_curves(table: pd.DataFrame, metric: str = "pass", title: str | None = None) -> go.Figure:
    """One metric of an engine.rescore.rescored_curves table against k: one colour per checkpoint,
    its original scoring solid and the re-scoring dashed."""
    title = title or f"{metric}@k before and after re-scoring"
    if _lacks(table, "metric", "k", "value", "checkpoint_id", "scoring"):
        return empty_figure(title, "no sampled evaluation solutions in these checkpoints")
    rows = table[table["metric"] == metric]
    checkpoints = rows[["checkpoint_id", "step"]].drop_duplicates("checkpoint_id").sort_values("step")["checkpoint_id"]
    fig = go.Figure()
    for i, checkpoint_id in enumerate(checkpoints):
        colour = PALETTE[i % len(PALETTE)]
        for scoring, curve in rows[rows["checkpoint_id"] == checkpoint_id].groupby("scoring", sort=False):
            curve = curve.sort_values("k")
            label = curve["label"].iloc[0] if "label" in curve else f"step {curve['step'].iloc[0]}"
            dash = "solid" if scoring == "original" else "dash"
            fig.add_trace(go.Scatter(x=curve["k"], y=curve["value"], mode="lines+markers", name=text(f"{label} · {scoring}"),
                                     legendgroup=f"c{i}", line={"color": colour, "dash": dash},
                                     hovertemplate=f"%{{fullData.name}}: {text(metric)}@%{{x}} = %{{y:.3f}}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis=_k_axis(rows["k"]), yaxis={"title": f"{text(metric)}@k", "range": [0, 1.02]},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def fig_training_curves(table: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Each metric of a `training_curves` table against training step, with its band."""
    if _lacks(table, "metric", "step", "value", "lo", "hi"):
        return empty_figure(title, "no evaluated checkpoint with samples")
    fig = go.Figure()
    for i, (metric, rows) in enumerate(table.groupby("metric", sort=True)):
        colour = PALETTE[i % len(PALETTE)]
        rows = rows.sort_values("step")
        _band(fig, rows["step"], rows["lo"], rows["hi"], colour, f"g{i}")
        fig.add_trace(go.Scatter(x=rows["step"], y=rows["value"], mode="lines+markers", name=text(metric),
                                 legendgroup=f"g{i}", line={"color": colour},
                                 hovertemplate="%{fullData.name} = %{y:.3f} at step %{x}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis={"title": "training step"}, yaxis={"title": "accuracy", "range": [0, 1.02]})
    return fig


def fig_runs_training(table: pd.DataFrame, kind: str = "maj@1", x: str = "samples_seen",
                      title: str | None = None) -> go.Figure:
    """One metric (maj@1, pass@1, pass@K or maj@K) of several runs against samples seen (or
    training step), a line and band per run: `runs_training_curves`' table."""
    if _lacks(table, "kind", "run", "step", "metric", "value", "lo", "hi", x):
        return empty_figure(title, "no evaluated checkpoint with samples")
    fig = go.Figure()
    rows = table[table["kind"] == kind]
    for i, (label, run) in enumerate(rows.groupby("run", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        run = run.sort_values("step")
        _band(fig, run[x], run["lo"], run["hi"], colour, f"g{i}")
        fig.add_trace(go.Scatter(x=run[x], y=run["value"], mode="lines+markers", name=text(label), legendgroup=f"g{i}",
                                 line={"color": colour},
                                 customdata=list(zip(run["step"].tolist(), texts(run["metric"]))),
                                 hovertemplate="%{customdata[1]} = %{y:.3f}<br>step %{customdata[0]}, "
                                               "%{x:,} samples<extra></extra>" if x == "samples_seen"
                                 else "%{customdata[1]} = %{y:.3f} at step %{x}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis={"title": "samples seen" if x == "samples_seen" else "training step"},
                      yaxis={"title": text(kind), "range": [0, 1.02]}, legend={"orientation": "h", "y": -0.2})
    return fig


def fig_sft_loss(points, title: str | None = "The base model's training loss") -> go.Figure:
    """[[step, smoothed loss], ...] of a base model in training (the quickstart's status)."""
    steps, losses = zip(*points) if points else ((), ())
    fig = go.Figure(go.Scatter(x=list(steps), y=list(losses), mode="lines", line={"color": PALETTE[0]},
                               hovertemplate="loss %{y:.3f} at step %{x}<extra></extra>"))
    fig.update_layout(title=_title(title), height=300, xaxis={"title": "step"},
                      yaxis={"title": "loss", "rangemode": "tozero"}, margin={"t": 40, "b": 40})
    return fig


def fig_diversity(table: pd.DataFrame, measures: list[str] | None = None, title: str | None = None) -> go.Figure:
    """Diversity means (a `diversity_by_checkpoint` table) against training step, one panel per
    measure (their scales differ: counts, bits, fractions). Measures the table lacks are left out."""
    measures = [m for m in measures or table.columns if m in table.columns
                and m not in ("checkpoint_id", "step", "samples")]
    if _lacks(table, "step") or not measures:
        return empty_figure(title, "no evaluation samples to measure")
    fig = make_subplots(rows=len(measures), cols=1, shared_xaxes=True, subplot_titles=texts(measures),
                        vertical_spacing=min(0.08, 0.5 / max(len(measures), 1)))
    rows = table.sort_values("step")
    for i, measure in enumerate(measures):
        fig.add_trace(go.Scatter(x=rows["step"], y=rows[measure], mode="lines+markers", name=text(measure),
                                 line={"color": PALETTE[i % len(PALETTE)]}, showlegend=False), row=i + 1, col=1)
    fig.update_xaxes(title_text="training step", row=len(measures), col=1)
    fig.update_layout(title=_title(title), height=max(300, 170 * len(measures)))
    return fig


def fig_diversity_histogram(per_problem: pd.DataFrame, measure: str = "distinct_steps",
                            title: str | None = None) -> go.Figure:
    """How one diversity measure spreads over the problems of a checkpoint."""
    if _lacks(per_problem, measure):
        return empty_figure(title, "no evaluation samples to measure")
    fig = go.Figure(go.Histogram(x=per_problem[measure], name=text(measure)))
    fig.update_layout(title=_title(title), xaxis={"title": text(measure)}, yaxis={"title": "problems"}, bargap=0.05)
    return fig


TREE_COLUMNS = ("id", "parent", "label", "count", "frac_correct", "mean_logprob")


def _node_hover(nodes: pd.DataFrame) -> list[list]:
    return [[text(label, HOVER_CHARS), count, frac, lp] for label, count, frac, lp in
            zip(nodes["label"], nodes["count"], nodes["frac_correct"], nodes["mean_logprob"])]


NODE_HOVER = ("%{customdata[0]}<br>samples: %{customdata[1]}<br>correct: %{customdata[2]:.0%}"
              "<br>mean logprob: %{customdata[3]:.2f}<extra></extra>")


def fig_tree(nodes: pd.DataFrame, kind: str = "icicle", title: str | None = None) -> go.Figure:
    """A `solution_tree` as an icicle (or sunburst): size = samples through the node, colour =
    fraction of them ending correct, hover = the step text and its numbers."""
    if kind not in ("icicle", "sunburst"):
        raise ValueError(f"fig_tree: kind must be 'icicle' or 'sunburst', not {kind!r}")
    if _lacks(nodes, *TREE_COLUMNS):
        return empty_figure(title, "no samples for this problem")
    trace = go.Icicle if kind == "icicle" else go.Sunburst
    extra = {"tiling": {"orientation": "v"}} if kind == "icicle" else {}
    fig = go.Figure(trace(
        ids=nodes["id"], parents=nodes["parent"], labels=texts(nodes["label"]), values=nodes["count"],
        branchvalues="total", customdata=_node_hover(nodes), hovertemplate=NODE_HOVER,
        marker={"colors": nodes["frac_correct"], "colorscale": CORRECT_SCALE, "cmin": 0, "cmax": 1,
                "colorbar": {"title": "correct"}}, **extra))
    fig.update_layout(title=_title(title), margin={"t": 40 if title else 10, "l": 10, "r": 10, "b": 10})
    return fig


def fig_tree_links(nodes: pd.DataFrame, title: str | None = None, max_labels: int = 60) -> go.Figure:
    """A `solution_tree` as nodes and edges (layout from trees.tree_layout, root at the top):
    marker area ~ samples through the node, colour = fraction correct. Step texts are written
    next to the nodes when there are at most max_labels of them, else only on hover."""
    if _lacks(nodes, *TREE_COLUMNS, "depth"):
        return empty_figure(title, "no samples for this problem")
    laid = tree_layout(nodes)
    pos = dict(zip(laid["id"], zip(laid["x"], laid["y"])))
    edge_x, edge_y = [], []
    for node, parent in zip(laid["id"], laid["parent"]):
        if parent:
            (x0, y0), (x1, y1) = pos[parent], pos[node]
            edge_x += [x0, x1, None]
            edge_y += [y0, y1, None]
    size = 8 + 30 * (laid["count"] / max(laid["count"].max(), 1)) ** 0.5
    fig = go.Figure([
        go.Scatter(x=edge_x, y=edge_y, mode="lines", line={"color": "#bbbbbb", "width": 1}, hoverinfo="skip",
                   showlegend=False),
        go.Scatter(x=laid["x"], y=laid["y"], mode="markers+text" if len(laid) <= max_labels else "markers",
                   text=texts(laid["label"]), textposition="middle right", customdata=_node_hover(laid),
                   hovertemplate=NODE_HOVER, showlegend=False,
                   marker={"size": size, "color": laid["frac_correct"], "colorscale": CORRECT_SCALE, "cmin": 0,
                           "cmax": 1, "colorbar": {"title": "correct"}, "line": {"width": 0.5, "color": "#444"}}),
    ])
    # room on the right for the labels of the last leaves
    fig.update_layout(title=_title(title), xaxis={"visible": False, "range": [-0.5, laid["x"].max() + 1.5]},
                      yaxis={"title": "step", "autorange": "reversed", "dtick": 1}, plot_bgcolor="white")
    return fig


def fig_solve_rates(per_problem: pd.DataFrame, title: str | None = None, label_a: str = "A",
                    label_b: str = "B") -> go.Figure:
    """Per-problem solve rate of checkpoint B against A (a `Comparison.per_problem`), coloured by
    gained / lost / both / neither (greedy correctness); points above the diagonal improved."""
    if _lacks(per_problem, "status", "solve_a", "solve_b", "problem_id"):
        return empty_figure(title, "no problem in common")
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"},
                               hoverinfo="skip", showlegend=False))
    for status, colour in STATUS_COLOURS.items():
        rows = per_problem[per_problem["status"] == status]
        fig.add_trace(go.Scatter(x=rows["solve_a"], y=rows["solve_b"], mode="markers", name=f"{status} ({len(rows)})",
                                 marker={"color": colour, "opacity": 0.6}, text=texts(rows["problem_id"]),
                                 hovertemplate="%{text}: %{x:.2f} -> %{y:.2f}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis={"title": f"solve rate {text(label_a)}", "range": [-0.02, 1.02]},
                      yaxis={"title": f"solve rate {text(label_b)}", "range": [-0.02, 1.02], "scaleanchor": "x"})
    return fig


def fig_gained_lost(comparison: Comparison, title: str | None = None) -> go.Figure:
    """Problems by greedy outcome of A -> B, with the McNemar p-value and the paired interval of
    the mean solve-rate difference in the title."""
    per_problem = comparison.per_problem
    counts = per_problem["status"].value_counts() if "status" in per_problem else pd.Series(dtype=int)
    statuses = list(STATUS_COLOURS)
    fig = go.Figure(go.Bar(x=statuses, y=[int(counts.get(s, 0)) for s in statuses],
                           marker={"color": [STATUS_COLOURS[s] for s in statuses]}))
    c = comparison
    fig.update_layout(
        title=_title(title) or (f"gained {c.gained}, lost {c.lost} (McNemar p = {c.mcnemar_p:.3g}); solve rate "
                                f"{c.mean_diff:+.3f} [{c.diff_lo:+.3f}, {c.diff_hi:+.3f}]"),
        yaxis={"title": "problems"})
    return fig


TRAIN_CURVES = ("reward", "train/accuracy")
ENTROPY = "entropy"  # nats per sampled token, every step or round (rollout.summary)
LOSSES = ("policy_loss", "value_loss", "approx_kl", "kl_ref", "kl_coef", "clip_frac", "update_entropy")
METRIC_COLUMNS = ("name", "step", "value", "samples_seen")


def _eval_names(names) -> list[str]:
    """eval/maj@1, eval/pass@1 and the largest eval/pass@K logged."""
    ks = sorted(int(n.split("@")[1]) for n in names if n.startswith("eval/pass@") and n.split("@")[1].isdigit())
    wanted = ["eval/maj@1", "eval/pass@1"] + ([f"eval/pass@{ks[-1]}", f"eval/maj@{ks[-1]}"] if ks and ks[-1] > 1 else [])
    return [n for n in wanted if n in set(names)]


def fig_run_curves(metrics: pd.DataFrame, title: str | None = None) -> go.Figure:
    """A run's learning curves against samples seen (the paper's sample-complexity axis): reward
    and training accuracy at every step (left), maj@1 / pass@k of each evaluated checkpoint
    (middle), and the policy's entropy on its rollouts in nats per token (right; only when the run
    logs it: a vLLM-sampled run does not). `metrics` is `Store.metrics(run_id)`'s long table."""
    if _lacks(metrics, *METRIC_COLUMNS):
        return empty_figure(title, "nothing logged yet")
    with_entropy = ENTROPY in set(metrics["name"])
    titles = ("training rollouts", "evaluation") + (("policy entropy (nats/token)",) if with_entropy else ())
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles, horizontal_spacing=0.08)
    panels = [(TRAIN_CURVES, 1), (_eval_names(metrics["name"].unique()), 2)]
    panels += [((ENTROPY,), 3)] if with_entropy else []
    for i, (names, col) in enumerate(panels):
        for j, name in enumerate(names):
            rows = metrics[metrics["name"] == name].sort_values("step")
            if rows.empty:
                continue
            fig.add_trace(go.Scatter(x=rows["samples_seen"], y=rows["value"], mode="lines+markers",
                                     name=text(name.removeprefix("eval/")), customdata=rows["step"],
                                     line={"color": PALETTE[(2 * i + j) % len(PALETTE)],
                                           "dash": "dot" if name == "reward" else "solid"},  # = accuracy when sparse
                                     hovertemplate=f"{text(name)} = %{{y:.3f}}<br>step %{{customdata}}, "
                                                   "%{x:,} samples<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="samples seen")
    for col in (1, 2):  # shares; entropy (nats) keeps its own scale
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
    fig.update_layout(title=_title(title), height=360, legend={"orientation": "h", "y": -0.25})
    return fig


def fig_run_losses(metrics: pd.DataFrame, title: str | None = None) -> go.Figure | None:
    """PPO / GRPO optimisation diagnostics against samples seen, one small panel each: policy and
    value loss, approximate KL between successive policies, KL to the base and its coefficient,
    clip fraction, the entropy PPO's bonus sees in the update (temperature 1; the rollouts' own
    entropy is fig_run_curves'). None when the run logs none of them (EI, RCRL)."""
    if _lacks(metrics, *METRIC_COLUMNS):
        return None
    names = [n for n in LOSSES if n in set(metrics["name"])]
    if not names:
        return None
    cols = 3
    rows_n = -(-len(names) // cols)
    fig = make_subplots(rows=rows_n, cols=cols, subplot_titles=names, vertical_spacing=0.18, horizontal_spacing=0.07)
    for i, name in enumerate(names):
        rows = metrics[metrics["name"] == name].sort_values("step")
        fig.add_trace(go.Scatter(x=rows["samples_seen"], y=rows["value"], mode="lines", name=name, showlegend=False,
                                 line={"color": PALETTE[i % len(PALETTE)]},
                                 hovertemplate=f"{name} = %{{y:.4g}}<br>%{{x:,}} samples<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(title=_title(title), height=220 * rows_n, margin={"t": 50})
    return fig


ANSWER_CHARS = 40  # an answer's tick label


def _answer_ticks(order: list[str], correct: set[str]) -> list[str]:
    """One distinct, escaped tick label per answer (✓ marks the right one): answers cut to the same
    first ANSWER_CHARS characters get a number, so their bars stay apart."""
    ticks, seen = [], set()
    for a in order:
        tick = text(a, ANSWER_CHARS) + (" ✓" if a in correct else "")
        n = 2
        while tick in seen:
            tick, n = f"{tick} #{n}", n + 1
        seen.add(tick)
        ticks.append(tick)
    return ticks


def fig_answers(counts: pd.DataFrame, top: int = 12, title: str | None = None) -> go.Figure:
    """One problem's answer distribution at each step (an `answer_distribution` table: step,
    answer, count, correct): bars per answer, one colour per step from early (light) to late
    (dark); the correct answer is marked with a check mark, answers past the `top` most frequent
    are pooled as "other"."""
    if _lacks(counts, "step", "answer", "count", "correct"):
        return empty_figure(title, "no samples for this problem")
    counts = counts.assign(answer=counts["answer"].astype(str), correct=counts["correct"].fillna(False).astype(bool))
    totals = counts.groupby("answer")["count"].sum().sort_values(ascending=False)
    keep = list(totals.index[:top])
    correct = set(counts.loc[counts["correct"], "answer"])
    pooled = counts.assign(answer=counts["answer"].where(counts["answer"].isin(keep), OTHER))
    pooled = pooled.groupby(["step", "answer"], as_index=False)["count"].sum()
    order = keep + ([OTHER] if len(totals) > top else [])
    ticks = _answer_ticks(order, correct)
    hover = texts(order, HOVER_CHARS)
    steps = sorted(pooled["step"].unique())
    colours = sample_colorscale("Viridis", [0.85 * (1 - i / max(len(steps) - 1, 1)) for i in range(len(steps))])
    fig = go.Figure()
    for step, colour in zip(steps, colours):
        rows = pooled[pooled["step"] == step].set_index("answer")["count"]
        share = rows / rows.sum()
        fig.add_trace(go.Bar(x=ticks, y=[float(share.get(a, 0.0)) for a in order], name=text(f"step {step}"),
                             marker={"color": colour}, customdata=hover,
                             hovertemplate="%{customdata}: %{y:.0%}<extra>%{fullData.name}</extra>"))
    fig.update_layout(title=_title(title), barmode="group", xaxis={"title": "final answer", "type": "category"},
                      yaxis={"title": "share of samples", "tickformat": ".0%"}, legend={"orientation": "h", "y": -0.3})
    return fig


OTHER = "(other answers)"  # the pooled bar; parenthesised, so unlike a number a model would write
