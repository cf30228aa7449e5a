"""Checkpoint comparison on a constructed pair: gained / lost, McNemar, paired bootstrap, shift, diffs."""

from math import comb

import numpy as np
import pandas as pd
import pytest

from engine.evaluation import (aligned_samples, checkpoint_diversity, compare_checkpoints, diversity_change,
                               mcnemar_exact, text_diff)
from engine.evaluation.compare import paired_bootstrap, total_variation


def checkpoint(problems: dict, greedy: dict | None) -> pd.DataFrame:
    """problem_id -> list of answers (the right answer is "1"); greedy: problem_id -> answer."""
    rows = [{"problem_id": p, "sample_idx": i, "text": f"x = {a}\n#### {a}", "answer": a, "correct": int(a == "1")}
            for p, answers in problems.items() for i, a in enumerate(answers)]
    rows += [{"problem_id": p, "sample_idx": -1, "text": f"#### {a}", "answer": a, "correct": int(a == "1")}
             for p, a in (greedy or {}).items()]
    return pd.DataFrame(rows)


# greedy outcomes A -> B: 6 gained, 1 lost, 2 both, 1 neither
OUTCOMES = ["gained"] * 6 + ["lost"] + ["both"] * 2 + ["neither"]
GREEDY_A = {f"p{i}": "1" if o in ("lost", "both") else "0" for i, o in enumerate(OUTCOMES)}
GREEDY_B = {f"p{i}": "1" if o in ("gained", "both") else "0" for i, o in enumerate(OUTCOMES)}
# sampled solve rates: A 1/4 everywhere, B 3/4 everywhere
A = checkpoint({p: ["1", "0", "0", "0"] for p in GREEDY_A}, GREEDY_A)
B = checkpoint({p: ["1", "1", "1", "2"] for p in GREEDY_B}, GREEDY_B)


def test_gained_lost_and_mcnemar_on_a_constructed_pair():
    result = compare_checkpoints(A, B)
    assert (result.gained, result.lost) == (6, 1)
    assert result.per_problem.set_index("problem_id")["status"].to_dict() == {f"p{i}": o for i, o in enumerate(OUTCOMES)}
    # exact McNemar by hand: two-sided, P(X >= 6) + P(X <= 1) for X ~ Binomial(7, 1/2)
    by_hand = (comb(7, 6) + comb(7, 7) + comb(7, 0) + comb(7, 1)) / 2**7
    assert result.mcnemar_p == pytest.approx(by_hand) == 0.125
    assert result.mean_diff == pytest.approx(0.5)
    assert result.diff_lo == pytest.approx(0.5) and result.diff_hi == pytest.approx(0.5)  # no spread at all
    assert result.summary()["problems"] == 10


@pytest.mark.parametrize("gained, lost", [(0, 0), (3, 3), (10, 0), (0, 4), (12, 5)])
def test_mcnemar_matches_the_binomial_tail_by_hand(gained, lost):
    n = gained + lost
    if n == 0:
        assert mcnemar_exact(gained, lost) == 1.0
        return
    tail = sum(comb(n, i) for i in range(0, min(gained, lost) + 1)) / 2**n
    assert mcnemar_exact(gained, lost) == pytest.approx(min(1.0, 2 * tail))


def test_paired_bootstrap_interval_brackets_the_mean_and_is_seeded():
    diff = np.random.default_rng(0).normal(0.1, 0.3, size=200)
    lo, hi = paired_bootstrap(diff, seed=1)
    assert lo < diff.mean() < hi and hi - lo < 0.2
    assert paired_bootstrap(diff, seed=1) == (lo, hi)
    assert paired_bootstrap(np.full(20, -0.25)) == (pytest.approx(-0.25), pytest.approx(-0.25))


@pytest.mark.parametrize(
    "a, b, want",
    [
        (["1", "1", "2", None], ["1", "2", "2", "2"], 0.5),  # |.5-.25| + |.25-.75| + |.25-0| = 1, halved
        (["1", "2"], ["2", "1"], 0.0),
        (["1", "1"], ["2", None, None], 1.0),
        ([None, None], [None], 0.0),  # "no answer" is one bucket
    ],
)
def test_total_variation_between_answer_distributions(a, b, want):
    assert total_variation(a, b) == pytest.approx(want)


def test_answer_shift_is_averaged_over_problems():
    a = checkpoint({"x": ["1", "1", "2", None], "y": ["1", "2"]}, {"x": "1", "y": "1"})
    b = checkpoint({"x": ["1", "2", "2", "2"], "y": ["2", "1"]}, {"x": "1", "y": "1"})
    result = compare_checkpoints(a, b)
    assert result.per_problem["tv_distance"].tolist() == pytest.approx([0.5, 0.0])
    assert result.mean_tv == pytest.approx(0.25)


def test_only_common_problems_are_compared():
    a = checkpoint({"x": ["1"], "only_a": ["1"]}, {"x": "1", "only_a": "1"})
    b = checkpoint({"x": ["0"], "only_b": ["1"]}, {"x": "0", "only_b": "1"})
    result = compare_checkpoints(a, b)
    assert result.per_problem["problem_id"].tolist() == ["x"] and (result.gained, result.lost) == (0, 1)
    with pytest.raises(ValueError, match="no sampled problem in common"):
        compare_checkpoints(checkpoint({"x": ["1"]}, None), checkpoint({"y": ["1"]}, None))


def test_without_greedy_rows_the_majority_vote_decides():
    a = checkpoint({"x": ["1", "1", "2"], "y": ["1", "2"]}, None)  # x: "1" wins; y: a tie (1/2, not solved)
    b = checkpoint({"x": ["2", "2", "1"], "y": ["1", "1"]}, None)
    table = compare_checkpoints(a, b).per_problem.set_index("problem_id")
    assert table.loc["x", ["solved_a", "solved_b"]].tolist() == [True, False]
    assert table.loc["y", ["solved_a", "solved_b"]].tolist() == [False, True]


def test_diversity_change_per_measure():
    a = checkpoint({"x": ["1", "1", "1", "1"], "y": ["1", "1"]}, None)
    b = checkpoint({"x": ["1", "2", "3", "4"], "y": ["1", "2"]}, None)
    change = diversity_change(checkpoint_diversity(a).per_problem, checkpoint_diversity(b).per_problem)
    change = change.set_index("measure")
    assert change.loc["distinct_answers"].tolist() == [1.0, 3.0, 2.0]
    assert change.loc["answer_entropy", "delta"] == pytest.approx((2.0 + 1.0) / 2)
    assert change.loc["self_bleu", "delta"] < 0 and "samples" not in change.index


def test_aligned_samples_pair_greedy_then_equal_texts_then_by_index():
    a = pd.DataFrame({"problem_id": "p", "sample_idx": [-1, 0, 1, 2],
                      "text": ["g", "2 + 2 = 4\n#### 4", "same", "2 + 3 = 5\n#### 5"],
                      "answer": ["4", "4", None, "5"], "correct": [1, 1, 0, 0]})
    b = pd.DataFrame({"problem_id": "p", "sample_idx": [-1, 0, 1, 2, 3],
                      "text": ["g", "same", "2 + 2 = 4\n#### 4", "2 + 2 = 5\n#### 5", "extra"],
                      "answer": ["4", None, "4", "5", None], "correct": [1, 0, 1, 0, 0]})
    other = pd.DataFrame({"problem_id": "q", "sample_idx": [0], "text": ["q"], "answer": [None], "correct": [0]})
    table = aligned_samples(pd.concat([a, other]), b, "p")
    pairs = [tuple(None if pd.isna(i) else int(i) for i in pair) for pair in zip(table["sample_idx_a"], table["sample_idx_b"])]
    assert pairs == [(-1, -1), (0, 1), (1, 0), (2, 2), (None, 3)]
    assert table["same"].tolist() == [True, True, True, False, False]
    diff = table.loc[3, "diff"].split("\n")
    assert "- 2 + 3 = 5" in diff and "+ 2 + 2 = 5" in diff and "  #### 5" in diff


def test_text_diff_marks_removed_added_and_shared_lines():
    lines = text_diff("a\nb\nc", "a\nc\nd").split("\n")
    assert lines == ["  a", "- b", "  c", "+ d"]
