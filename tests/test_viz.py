"""Figures: each viz function returns a go.Figure with the expected traces, fed by the analysis tables."""

import random
import subprocess
import sys

import pandas as pd
import plotly.graph_objects as go
import pytest

from engine import viz
from engine.evaluation import (checkpoint_curves, checkpoint_diversity, compare_checkpoints, curve_table,
                               diversity_by_checkpoint, solution_tree, training_curves)
from engine.tasks.multistep import MultiStep, extract_answer


def fabricated(step: int, checkpoint_id: int, slip: float, n_problems: int = 4, k: int = 8) -> pd.DataFrame:
    """Samples from the built-in task; a 'slip' makes the final answer wrong."""
    task, rng = MultiStep(), random.Random(checkpoint_id)
    rows = []
    for p in task.problems("test", n_problems):
        for idx in range(-1, k):
            text = task.sample_solution(p, rng)
            if rng.random() < slip:
                text = text.rsplit("#### ", 1)[0] + f"#### {int(p.answer) + 1}"
            answer = extract_answer(text)[0]
            rows.append({"problem_id": p.id, "sample_idx": idx, "text": text, "answer": answer,
                         "correct": int(answer == p.answer), "logprob": -rng.random() * 5,
                         "checkpoint_id": checkpoint_id, "step": step})
    return pd.DataFrame(rows)


EARLY, LATE = fabricated(0, 1, slip=0.7), fabricated(10, 2, slip=0.2)
BOTH = pd.concat([EARLY, LATE], ignore_index=True)


def trace_types(fig) -> list[str]:
    return [t.type for t in fig.data]


def test_fig_curves_has_a_band_and_a_line_per_metric():
    table = curve_table(EARLY, scores="logprob", n_boot=50)
    fig = viz.fig_curves(table, title="t")
    assert isinstance(fig, go.Figure) and set(trace_types(fig)) == {"scatter"}
    lines = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in lines] == ["pass@k", "maj@k", "rerank@k"]
    assert len(fig.data) == 3 * 3  # upper edge, filled lower edge, line
    assert fig.layout.xaxis.type == "log"
    assert list(fig.layout.xaxis.tickvals) == [1, 2, 4, 8]  # k = 8: no ticks at k = 1.5, 2.5...
    assert list(lines[0].y) == table[table["metric"] == "pass"]["value"].tolist()


def test_fig_checkpoint_curves_has_one_line_per_checkpoint():
    fig = viz.fig_checkpoint_curves(checkpoint_curves(BOTH, ks=[1, 2, 8], n_boot=20), metric="maj")
    assert trace_types(fig) == ["scatter", "scatter"]
    assert [t.name for t in fig.data] == ["step 0", "step 10"] and list(fig.data[0].x) == [1, 2, 8]


@pytest.mark.parametrize("ks, ticks", [([1], [1]), ([1, 2, 3], [1, 2, 3]), (range(1, 97), [1, 2, 4, 8, 16, 32, 64, 96]),
                                       ([1, 2, 4, 8, 16], [1, 2, 4, 8, 16])])
def test_the_k_axis_is_ticked_at_powers_of_two_and_the_largest_k(ks, ticks):
    assert viz._k_axis(ks) == {"title": "k", "type": "log", "tickvals": ticks}


def test_fig_training_curves_plots_each_metric_against_step():
    table = training_curves(BOTH, n_boot=20)
    fig = viz.fig_training_curves(table)
    named = {t.name: t for t in fig.data if t.name}
    assert set(named) == {"maj@1", "pass@1", "pass@8", "maj@8"}
    assert list(named["pass@8"].x) == [0, 10]


def test_fig_diversity_has_a_panel_per_measure():
    table = diversity_by_checkpoint(BOTH)
    fig = viz.fig_diversity(table, measures=["distinct_steps", "self_bleu"])
    assert trace_types(fig) == ["scatter", "scatter"]
    assert [a.text for a in fig.layout.annotations] == ["distinct_steps", "self_bleu"]
    hist = viz.fig_diversity_histogram(checkpoint_diversity(EARLY).per_problem, "distinct_answers")
    assert trace_types(hist) == ["histogram"] and len(hist.data[0].x) == 4


@pytest.mark.parametrize("kind, trace", [("icicle", "icicle"), ("sunburst", "sunburst")])
def test_fig_tree_sizes_by_count_and_colours_by_correctness(kind, trace):
    nodes = solution_tree(EARLY[EARLY["problem_id"] == "test-0"])
    fig = viz.fig_tree(nodes, kind=kind)
    assert trace_types(fig) == [trace]
    t = fig.data[0]
    assert list(t.values) == nodes["count"].tolist() and t.branchvalues == "total"
    assert list(t.parents) == nodes["parent"].tolist() and list(t.labels) == nodes["label"].tolist()
    assert list(t.marker.colors) == nodes["frac_correct"].tolist()


def test_fig_tree_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="icicle' or 'sunburst"):
        viz.fig_tree(solution_tree(EARLY[EARLY["problem_id"] == "test-0"]), kind="treemap")


def test_fig_tree_links_draws_every_edge_once():
    nodes = solution_tree(LATE[LATE["problem_id"] == "test-1"])
    fig = viz.fig_tree_links(nodes)
    assert trace_types(fig) == ["scatter", "scatter"]
    edges, points = fig.data
    assert len(edges.x) == 3 * (len(nodes) - 1)  # (parent, child, gap) per edge
    assert len(points.x) == len(nodes) and list(points.marker.color) == nodes["frac_correct"].tolist()
    assert points.mode == "markers+text"
    assert viz.fig_tree_links(nodes, max_labels=1).data[1].mode == "markers"


def test_comparison_figures():
    comparison = compare_checkpoints(EARLY, LATE, n_boot=50)
    scatter = viz.fig_solve_rates(comparison.per_problem, label_a="step 0", label_b="step 10")
    assert trace_types(scatter) == ["scatter"] * 5  # the diagonal, then gained / lost / both / neither
    assert sum(len(t.x) for t in scatter.data[1:]) == 4
    bars = viz.fig_gained_lost(comparison)
    assert trace_types(bars) == ["bar"] and sum(bars.data[0].y) == 4
    assert f"gained {comparison.gained}" in bars.layout.title.text


def test_viz_does_not_import_streamlit():
    code = "import sys, engine.viz; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
