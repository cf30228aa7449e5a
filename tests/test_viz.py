"""Figures: each viz function returns a go.Figure with the expected traces, fed by the analysis tables."""

import html
import random
import subprocess
import sys

import pandas as pd
import plotly.graph_objects as go
import pytest

from engine import viz
from engine.evaluation.compare import Comparison
from engine.evaluation import (checkpoint_curves, checkpoint_diversity, compare_checkpoints, curve_table,
                               diversity_by_checkpoint, solution_tree, training_curves)
from engine.tasks.multistep import MultiStep, integer_answers


def fabricated(step: int, checkpoint_id: int, slip: float, n_problems: int = 4, k: int = 8) -> pd.DataFrame:
    """Samples from the built-in task; a 'slip' makes the final answer wrong."""
    task, rng = MultiStep(), random.Random(checkpoint_id)
    rows = []
    for p in task.problems("test", n_problems):
        for idx in range(-1, k):
            text = task.sample_solution(p, rng)
            if rng.random() < slip:
                text = text.rsplit("#### ", 1)[0] + f"#### {int(p.answer) + 1}"
            answer = integer_answers(text)[0]
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


def test_fig_run_curves_gives_the_rollouts_entropy_its_own_panel_when_logged():
    logged = pd.DataFrame({"name": ["train/accuracy", "entropy", "train/accuracy", "entropy"], "step": [1, 1, 2, 2],
                           "value": [0.2, 1.9, 0.4, 1.4], "samples_seen": [8, 8, 16, 16]})
    fig = viz.fig_run_curves(logged)
    entropy = [t for t in fig.data if t.name == "entropy"]
    assert len(entropy) == 1 and list(entropy[0].y) == [1.9, 1.4] and entropy[0].xaxis == "x3"
    assert fig.layout.yaxis3.range is None  # nats, not a share: not clipped to [0, 1]
    without = viz.fig_run_curves(logged[logged["name"] != "entropy"])  # e.g. sampled with vLLM
    assert "xaxis3" not in without.layout.to_plotly_json()


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


# -- data is drawn as text ---------------------------------------------------------------------------

HOSTILE = ("<a href='https://evil.example'>link</a> <b>bold</b> <img src=x onerror=alert(1)> <script>alert(2)</script>"
           " <br><span style='color:red'>red</span><sup>2</sup> javascript:alert(3) $x^2$ **md** %{x} &amp; "
           + "long " * 400)
MARKERS = ("evil", "bold", "alert", "onerror", "color:red")


def strings(value, path=()):
    """Every (path, string) in a figure's dict, through lists, tuples and numpy arrays."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(v, (*path, k))
    elif isinstance(value, list | tuple) or hasattr(value, "tolist"):
        items = value.tolist() if hasattr(value, "tolist") else value
        for i, v in enumerate(items if isinstance(items, list) else [items]):
            yield from strings(v, (*path, i))


def hostile_tree() -> pd.DataFrame:
    return pd.DataFrame({"id": ["0", "1", "2"], "parent": ["", "0", "1"], "label": ["problem", HOSTILE, HOSTILE + "2"],
                         "count": [4, 4, 2], "frac_correct": [0.5, 0.5, 1.0], "mean_logprob": [-1.0, -1.0, -2.0],
                         "depth": [0, 1, 2], "samples": [[0, 1, 2, 3], [0, 1, 2, 3], [0, 1]]})


def hostile_figures() -> dict:
    curves = pd.DataFrame({"metric": [HOSTILE] * 2, "k": [1, 2], "value": [0.3, 0.5], "lo": [0.2, 0.4], "hi": [0.4, 0.6],
                           "checkpoint_id": [1, 1], "step": [0, 0], "label": [HOSTILE] * 2})
    by_checkpoint = curves.assign(metric="pass")
    runs = curves.assign(kind="maj@1", run=HOSTILE, samples_seen=[0, 10])
    per_problem = pd.DataFrame({"problem_id": [HOSTILE, "test-1"], "solve_a": [0.2, 0.5], "solve_b": [0.6, 0.5],
                                "status": ["gained", "both"], "distinct_steps": [3, 4]})
    answers = pd.DataFrame({"step": [0, 0, 2], "answer": [HOSTILE, HOSTILE + "x", "7"], "count": [3, 1, 4],
                            "correct": [True, False, False]})
    metrics = pd.DataFrame({"name": ["reward", "policy_loss"], "step": [1, 1], "value": [0.5, 0.1],
                            "samples_seen": [8, 8]})
    comparison = compare_checkpoints(EARLY, LATE, n_boot=20)
    return {
        "curves": viz.fig_curves(curves, title=HOSTILE),
        "checkpoint_curves": viz.fig_checkpoint_curves(by_checkpoint, title=HOSTILE),
        "training_curves": viz.fig_training_curves(curves, title=HOSTILE),
        "runs_training": viz.fig_runs_training(runs, title=HOSTILE),
        "diversity": viz.fig_diversity(diversity_by_checkpoint(BOTH), title=HOSTILE),
        "histogram": viz.fig_diversity_histogram(per_problem, title=HOSTILE),
        "icicle": viz.fig_tree(hostile_tree(), title=HOSTILE),
        "sunburst": viz.fig_tree(hostile_tree(), kind="sunburst", title=HOSTILE),
        "tree_links": viz.fig_tree_links(hostile_tree(), title=HOSTILE),
        "solve_rates": viz.fig_solve_rates(per_problem, title=HOSTILE, label_a=HOSTILE, label_b=HOSTILE),
        "gained_lost": viz.fig_gained_lost(comparison, title=HOSTILE),
        "run_curves": viz.fig_run_curves(metrics, title=HOSTILE),
        "run_losses": viz.fig_run_losses(metrics, title=HOSTILE),
        "answers": viz.fig_answers(answers, title=HOSTILE),
        "sft_loss": viz.fig_sft_loss([[1, 0.5]], title=HOSTILE),
        "empty": viz.empty_figure(HOSTILE, HOSTILE),
    }


@pytest.mark.parametrize("name", list(hostile_figures()))
def test_no_data_string_reaches_a_figure_as_markup(name):
    """Plotly turns tags in any drawn string into markup (a working <a href>, <b>): data reaches a
    figure with & < > as entities, and never inside a hovertemplate, where %{...} is read."""
    fig = hostile_figures()[name]
    found = [(path, s) for path, s in strings(fig.to_dict()) if any(m in s for m in MARKERS)]
    assert found, "the hostile text should be in the figure"
    for path, s in found:
        assert "<" not in s and ">" not in s, (path, s[:200])
        assert path[-1] != "hovertemplate", path
    for path, s in strings(fig.to_dict()):
        if path[-1] == "hovertemplate":
            assert "%{x} &" not in s
        else:
            assert len(html.unescape(s)) <= viz.HOVER_CHARS + 1, path  # long texts are cut to be drawn


def test_text_escapes_markup_and_cuts_long_strings():
    assert viz.text("<b>1 & 2</b>") == "&lt;b&gt;1 &amp; 2&lt;/b&gt;"
    assert viz.text("x" * 500) == "x" * viz.LABEL_CHARS + "…"
    assert viz.text(None) == "" and viz.text(3) == "3"


def test_answers_cut_to_the_same_prefix_keep_their_own_bars():
    same = "9" * 60
    counts = pd.DataFrame({"step": [0, 0], "answer": [same + "1", same + "2"], "count": [2, 1], "correct": [True, False]})
    ticks = list(viz.fig_answers(counts).data[0].x)
    assert len(set(ticks)) == 2 and ticks[0].endswith("✓")


# -- empty inputs draw an empty figure --------------------------------------------------------------

EMPTY_CASES = {
    "curves": (viz.fig_curves, ["metric", "k", "value", "lo", "hi"]),
    "checkpoint_curves": (viz.fig_checkpoint_curves, ["metric", "k", "value", "lo", "hi", "checkpoint_id", "step", "label"]),
    "training_curves": (viz.fig_training_curves, ["checkpoint_id", "step", "metric", "value", "lo", "hi", "problems"]),
    "runs_training": (viz.fig_runs_training, ["run_id", "run", "checkpoint_id", "step", "samples_seen", "metric", "kind",
                                              "value", "lo", "hi", "problems"]),
    "diversity": (lambda t: viz.fig_diversity(t, measures=["distinct_answers", "self_bleu"]),
                  ["checkpoint_id", "step", "samples", "distinct_answers", "self_bleu"]),
    "diversity_all_measures": (viz.fig_diversity, ["checkpoint_id", "step", "samples"]),
    "histogram": (viz.fig_diversity_histogram, ["problem_id", "distinct_steps"]),
    "icicle": (viz.fig_tree, list(hostile_tree().columns)),
    "sunburst": (lambda t: viz.fig_tree(t, kind="sunburst"), list(hostile_tree().columns)),
    "tree_links": (viz.fig_tree_links, list(hostile_tree().columns)),
    "solve_rates": (viz.fig_solve_rates, ["problem_id", "solve_a", "solve_b", "status"]),
    "gained_lost": (lambda t: viz.fig_gained_lost(Comparison(t, 0, 0, 1.0, 0.0, 0.0, 0.0, 0.0)), ["status"]),
    "run_curves": (viz.fig_run_curves, ["step", "name", "value", "samples_seen", "wall_time"]),
    "run_losses": (viz.fig_run_losses, ["step", "name", "value", "samples_seen", "wall_time"]),
    "answers": (viz.fig_answers, ["step", "answer", "count", "correct"]),
}


@pytest.mark.parametrize("columns", ["with its columns", "with no columns"])
@pytest.mark.parametrize("name", list(EMPTY_CASES))
def test_every_figure_draws_an_empty_table(name, columns):
    """What an analysis of nothing returns (a checkpoint whose samples a cut-short delete removed)."""
    build, names = EMPTY_CASES[name]
    fig = build(pd.DataFrame(columns=names) if columns == "with its columns" else pd.DataFrame())
    assert fig is None if name == "run_losses" else isinstance(fig, go.Figure)


def test_viz_does_not_import_streamlit():
    code = "import sys, engine.viz; sys.exit('streamlit' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
