"""Each finding's evidence figure, from the tables its judge returns (engine/findings/cards.py).
Run labels and every other data string go through plot_text.text: plotly reads HTML in them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.plot_text import empty_figure, lacks, text, texts, title_text
from engine.viz import PALETTE, _band, _k_axis

WAITING = "appears as the runs finish"


def figure(card) -> go.Figure:
    """The card's evidence figure (an empty one that says so until there is data)."""
    key, tables = card.finding.key, card.tables
    if key in ("F1", "F2"):
        return fig_lines(tables["training"], ["maj@1"], x="samples_seen")
    if key in ("F3", "F4"):
        return fig_lines(tables["training"], ["maj@1", "pass@K"], x="samples_seen" if key == "F4" else "step")
    if key == "F5":
        return fig_results(tables["results"], tables.get("rerank_by", "log-probability"))
    if key == "F6":
        return fig_pass_at_k(tables["curves"])
    if key == "F7":
        return fig_entropy(tables["points"], tables["fits"])
    if key == "F8":
        return fig_wasted(tables["steps"])
    return empty_figure(None, WAITING)


def fig_lines(table: pd.DataFrame, metrics: list[str], x: str = "samples_seen") -> go.Figure:
    """Metrics of several runs against samples seen (or step): one panel per metric, a line and
    95% band per run."""
    if lacks(table, "run", "metric", "value", "lo", "hi", x):
        return empty_figure(None, WAITING)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[text(m) for m in metrics])
    runs = list(dict.fromkeys(table["run"]))
    for col, metric in enumerate(metrics, start=1):
        for i, run in enumerate(runs):
            rows = table[(table["run"] == run) & (table["metric"] == metric)].dropna(subset=[x]).sort_values("step")
            if rows.empty:
                continue
            colour = PALETTE[i % len(PALETTE)]
            _band(fig, rows[x], rows["lo"], rows["hi"], colour, f"g{i}", row=1, col=col)
            fig.add_trace(go.Scatter(x=rows[x], y=rows["value"], mode="lines+markers", name=text(run),
                                     legendgroup=f"g{i}", showlegend=col == 1, line={"color": colour},
                                     customdata=np.stack([rows["step"], rows["lo"], rows["hi"]], 1),
                                     hovertemplate=f"{text(metric)} = %{{y:.3f}} [%{{customdata[1]:.3f}}, "
                                                   "%{customdata[2]:.3f}]<br>step %{customdata[0]}<extra></extra>"),
                          row=1, col=col)
        fig.update_yaxes(range=[0, 1.02], row=1, col=col)
        fig.update_xaxes(title="samples seen" if x == "samples_seen" else "training step", row=1, col=col)
    fig.update_layout(height=360, legend={"orientation": "h", "y": -0.25}, margin={"t": 40})
    return fig


def fig_results(table: pd.DataFrame, rerank_by: str) -> go.Figure:
    """F5: every run's maj@1, maj@K, rerank@K and pass@K with 95% intervals, side by side."""
    if lacks(table, "run", "maj@1"):
        return empty_figure(None, WAITING)
    fig = go.Figure()
    for i, metric in enumerate(("maj@1", "maj@K", "rerank@K", "pass@K")):
        value = table[metric]
        fig.add_trace(go.Bar(x=texts(table["run"]), y=value, name=text(metric if metric != "rerank@K"
                                                                          else f"rerank@K ({rerank_by})"),
                             marker_color=PALETTE[i],
                             error_y={"type": "data", "symmetric": False, "array": table[f"{metric} hi"] - value,
                                      "arrayminus": value - table[f"{metric} lo"]}))
    fig.update_layout(barmode="group", yaxis={"range": [0, 1.02]}, height=360, legend={"orientation": "h", "y": -0.25},
                      margin={"t": 20})
    return fig


def fig_pass_at_k(curves: pd.DataFrame) -> go.Figure:
    """F6: pass@k against k (log axis) for the base and each trained model."""
    if lacks(curves, "run", "k", "value"):
        return empty_figure(None, WAITING)
    fig = go.Figure()
    for i, (run, rows) in enumerate(curves.groupby("run", sort=False)):
        fig.add_trace(go.Scatter(x=rows["k"], y=rows["value"], mode="lines+markers", name=text(run),
                                 line={"color": "#444444" if run == "base" else PALETTE[i % len(PALETTE)],
                                       "dash": "dash" if run == "base" else "solid"}))
    fig.update_layout(xaxis=_k_axis(curves["k"]), yaxis={"title": "pass@k", "range": [0, 1.02]}, height=360,
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 20})
    return fig


def fig_entropy(points: pd.DataFrame, fits: dict) -> go.Figure:
    """F7: each step's accuracy against its mean token entropy, and the fit R = -a exp(H) + b."""
    if lacks(points, "run", "entropy", "accuracy"):
        return empty_figure(None, "no run has logged entropy yet")
    fig = go.Figure()
    for i, (key, rows) in enumerate(points.groupby("key", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=rows["entropy"], y=rows["accuracy"], mode="markers", name=text(rows["run"].iloc[0]),
                                 marker={"color": colour}, customdata=rows["step"],
                                 hovertemplate="step %{customdata}: H = %{x:.3f}, accuracy %{y:.3f}<extra></extra>"))
        if key in fits:
            fit = fits[key]
            h = np.linspace(0, rows["entropy"].max(), 50)
            fig.add_trace(go.Scatter(x=h, y=-fit["a"].value * np.exp(h) + fit["b"], mode="lines",
                                     line={"color": colour, "dash": "dot"}, name=text(f"fit, {key}"),
                                     hoverinfo="skip"))
    fig.update_layout(xaxis={"title": "mean token entropy (nats)"}, yaxis={"title": "train accuracy"}, height=360,
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 20})
    return fig


def fig_wasted(steps: pd.DataFrame) -> go.Figure:
    """F8: GRPO's share of zero-advantage groups at each step, beside p^n + (1 - p)^n."""
    if lacks(steps, "step", "wasted", "expected"):
        return empty_figure(None, WAITING)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps["step"], y=steps["wasted"], mode="lines+markers", name="all right or all wrong"))
    fig.add_trace(go.Scatter(x=steps["step"], y=steps["expected"], mode="lines", line={"dash": "dash"},
                             name="p^n + (1 − p)^n from the mean solve rate"))
    fig.add_trace(go.Scatter(x=steps["step"], y=steps["solve"], mode="lines", line={"dash": "dot"}, name="solve rate p"))
    fig.update_layout(xaxis={"title": "GRPO step"}, yaxis={"title": "share of groups", "range": [0, 1.02]},
                      height=360, legend={"orientation": "h", "y": -0.25}, margin={"t": 20}, title=title_text(None))
    return fig
