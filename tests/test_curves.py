"""Curves over stored samples: pass@k / maj@k / rerank@k per problem, bootstrap bands, checkpoints."""

import itertools
from math import comb

import numpy as np
import pandas as pd
import pytest

from engine.algorithms.orm import rerank_choice
from engine.evaluation import (bootstrap_band, checkpoint_curves, curve_table, orm_scorer, per_problem_curves,
                               rerank_at_ks, training_curves)
from engine.store import Store


def frame(problems: dict, greedy: dict | None = None, checkpoint_id=1, step=0) -> pd.DataFrame:
    """problem_id -> [(answer, correct), ...] as a samples DataFrame; greedy: problem_id -> (answer, correct)."""
    rows = [{"problem_id": p, "sample_idx": i, "answer": a, "correct": int(c), "text": f"#### {a}",
             "logprob": -float(i), "checkpoint_id": checkpoint_id, "step": step}
            for p, samples in problems.items() for i, (a, c) in enumerate(samples)]
    rows += [{"problem_id": p, "sample_idx": -1, "answer": a, "correct": int(c), "text": f"#### {a}",
              "logprob": 0.0, "checkpoint_id": checkpoint_id, "step": step} for p, (a, c) in (greedy or {}).items()]
    return pd.DataFrame(rows)


def with_c_correct(n: int, c: int) -> list:
    return [("7", True)] * c + [("3", False)] * (n - c)


# --- pass@k ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, c", [(1, 0), (1, 1), (5, 0), (5, 5), (5, 2), (10, 3), (16, 1), (96, 7), (96, 95)])
def test_pass_matches_exact_binomials_for_every_k(n, c):
    table = per_problem_curves(frame({"p": with_c_correct(n, c)}))["pass"]
    assert list(table.columns) == list(range(1, n + 1))  # every k from 1 to n by default
    want = [1 - comb(n - c, k) / comb(n, k) for k in range(1, n + 1)]
    np.testing.assert_allclose(table.loc["p"].to_numpy(), want, rtol=1e-12, atol=1e-15)


def test_pass_edges_c0_cn_and_k_equals_n():
    table = per_problem_curves(frame({"none": with_c_correct(6, 0), "all": with_c_correct(6, 6),
                                      "one": with_c_correct(6, 1)}))["pass"]
    assert (table.loc["none"] == 0.0).all()
    assert (table.loc["all"] == 1.0).all()
    assert table.loc["one", 6] == 1.0 and table.loc["one", 1] == pytest.approx(1 / 6)


@pytest.mark.parametrize("ks", [[7], [1, 2, 9], [0], [-1]])
def test_k_outside_1_to_n_is_rejected_with_a_clear_error(ks):
    samples = frame({"a": with_c_correct(6, 2), "b": with_c_correct(8, 2)})  # n = the fewest: 6
    with pytest.raises(ValueError, match=r"k=-?\d+ is outside \[1, n\] where n=6"):
        per_problem_curves(samples, ks=ks)


def test_greedy_rows_are_left_out_of_pass_and_maj():
    samples = frame({"p": with_c_correct(4, 0)}, greedy={"p": ("7", True)})
    tables = per_problem_curves(samples, references={"p": "7"})
    assert list(tables["pass"].columns) == [1, 2, 3, 4]  # n = 4, not 5
    assert (tables["pass"].to_numpy() == 0).all() and (tables["maj"].to_numpy() == 0).all()


def test_no_sampled_rows_is_an_error():
    with pytest.raises(ValueError, match="no sampled rows"):
        per_problem_curves(frame({}, greedy={"p": ("7", True)}))


# --- maj@k -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "votes, reference, k, want",
    [
        (["1", "1", "2", "2"], "1", 4, 0.5),  # a two-way tie splits the credit
        (["1", "2", "3", None], "1", 4, 1 / 3),  # three-way tie; the abstention is no vote
        (["1", "1", "2", None], "1", 4, 1.0),
        (["2", "2", "1", "1", "1"], "1", 5, 1.0),
        ([None, None, None], "1", 3, 0.0),  # nobody answers: no winner
        (["1", "2", "2"], "1", 1, 1 / 3),  # k = 1: the fraction correct
        (["1", "2"], "1", 2, 0.5),
        # k = 2 of ["1", "1", "2"]: {1,1} wins, {1,2} twice a tie: (1 + 0.5 + 0.5) / 3
        (["1", "1", "2"], "1", 2, 2 / 3),
    ],
)
def test_maj_on_hand_made_votes(votes, reference, k, want):
    samples = frame({"p": [(v, v == reference) for v in votes]})
    table = per_problem_curves(samples, ks=[k], n_resamples=4096)["maj"]
    exact = k in (1, len(votes))
    assert table.loc["p", k] == pytest.approx(want, abs=1e-12 if exact else 0.03)


def test_maj_reference_from_correct_rows_equals_a_given_mapping():
    votes = {"a": [("1", True), ("2", False), ("1", True), ("3", False)],
             "b": [("5", False), ("6", False), ("5", False), ("4", True)]}
    derived = per_problem_curves(frame(votes))["maj"]
    given = per_problem_curves(frame(votes), references={"a": "1", "b": "4"})["maj"]
    pd.testing.assert_frame_equal(derived, given)
    assert derived.loc["a", 4] == 1.0 and derived.loc["b", 4] == 0.0


def test_maj_reference_from_a_problems_table():
    problems = pd.DataFrame({"problem_id": ["a"], "answer": ["2"]})  # as Store.problems returns it
    table = per_problem_curves(frame({"a": [("2", False), ("2", False), ("1", False)]}), references=problems)["maj"]
    assert table.loc["a", 3] == 1.0


def test_unsolved_problem_without_reference_scores_zero_maj():
    table = per_problem_curves(frame({"p": [("1", False)] * 3}))["maj"]
    assert (table.to_numpy() == 0).all()


# --- rerank@k ----------------------------------------------------------------------------------


def brute_force_rerank(scores, answers, correct_answer, k):
    subsets = list(itertools.combinations(range(len(scores)), k))
    return np.mean([rerank_choice([scores[i] for i in s], [answers[i] for i in s]) == correct_answer for s in subsets])


@pytest.mark.parametrize(
    "scores, answers",
    [
        ([0.1, 0.9, 0.5, 0.99, 0.5, 0.2], ["1", "2", "1", None, "3", "1"]),  # a tie and an abstention
        ([0.3, 0.3, 0.3, 0.3], ["2", "1", "1", "2"]),  # all tied: the lower sample index wins
        ([0.9, 0.1, 0.5, 0.7, 0.2], [None, None, "1", None, "2"]),
        ([1.0, 0.0, 0.5], ["1", "1", "1"]),
    ],
)
def test_rerank_is_the_exact_expectation_of_rerank_choice_over_subsets(scores, answers):
    samples = frame({"p": [(a, a == "1") for a in answers]}).assign(score=scores)
    table = per_problem_curves(samples, scores="score")["rerank"]
    for k in range(1, len(scores) + 1):
        assert table.loc["p", k] == pytest.approx(brute_force_rerank(scores, answers, "1", k), abs=1e-12)


def test_rerank_scores_as_array_and_as_function_agree():
    samples = frame({"a": [("1", True), ("2", False), ("1", True)], "b": [("4", True), ("5", False), ("5", False)]},
                    greedy={"a": ("1", True)})
    scores = np.arange(len(samples), dtype=float)[::-1].copy()
    by_array = per_problem_curves(samples, scores=scores)["rerank"]
    by_func = per_problem_curves(samples, scores=lambda df: scores[df.index.to_numpy()])["rerank"]
    pd.testing.assert_frame_equal(by_array, by_func)
    with pytest.raises(ValueError, match="one score per sample"):
        per_problem_curves(samples, scores=scores[:-1])


def test_orm_scorer_feeds_prompts_and_texts_to_the_orm():
    class FakeORM:
        def score(self, prompts, completions):
            self.seen = list(zip(prompts, completions))
            return np.array([1.0 if c == "#### 2" else 0.0 for c in completions])

    orm = FakeORM()
    samples = frame({"p": [("1", True), ("2", False), ("1", True)]})
    table = per_problem_curves(samples, scores=orm_scorer(orm, {"p": "Q?"}))["rerank"]
    assert orm.seen == [("Q?", "#### 1"), ("Q?", "#### 2"), ("Q?", "#### 1")]
    # the wrong answer "2" is top-scored: chosen whenever it is in the subset
    assert table.loc["p", 1] == pytest.approx(2 / 3) and table.loc["p", 3] == 0.0


def test_rerank_at_ks_is_the_mean_of_the_per_problem_rerank():
    samples = frame({"a": [("1", True), ("2", False), ("1", True), (None, False)],
                     "b": [("4", True), ("5", False), ("5", False), ("6", False)]}, greedy={"a": ("1", True)})
    scores = np.random.default_rng(0).random(len(samples))
    want = per_problem_curves(samples, scores=scores)["rerank"].mean()
    got = rerank_at_ks(samples, scores, [1, 2, 4])
    assert list(got) == [1, 2, 4] and all(got[k] == pytest.approx(want[k], abs=1e-12) for k in got)
    scored = []  # a scorer function sees the sampled rows only, never the greedy one
    rerank_at_ks(samples, lambda df: scored.append(df["sample_idx"].min()) or scores[df.index.to_numpy()], [1])
    assert scored == [0]


# --- bootstrap bands and tables ----------------------------------------------------------------


def test_bootstrap_band_of_two_problems_spans_the_resampled_means():
    mean, lo, hi = bootstrap_band(np.array([0.0, 1.0]), n_boot=4000, ci=0.9, seed=0)
    # resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    assert (mean, lo, hi) == (0.5, 0.0, 1.0)
    mean, lo, hi = bootstrap_band(np.array([0.0, 1.0]), n_boot=4000, ci=0.4, seed=0)
    assert lo == hi == 0.5


def test_bootstrap_band_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(1).random((50, 3))
    first = bootstrap_band(values, seed=3)
    again = bootstrap_band(values, seed=3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    mean, lo, hi = first
    np.testing.assert_allclose(mean, values.mean(0))
    assert (lo < mean).all() and (mean < hi).all() and (hi - lo < 0.4).all()


def test_curve_table_is_long_format_with_bands():
    samples = frame({f"p{i}": with_c_correct(8, i) for i in range(9)})
    table = curve_table(samples, ks=[1, 4, 8], scores="logprob", n_boot=200)
    assert set(table["metric"]) == {"pass", "maj", "rerank"}
    assert list(table.columns) == ["metric", "k", "value", "lo", "hi", "problems"]
    assert (table["problems"] == 9).all()
    assert ((table["lo"] <= table["value"] + 1e-12) & (table["value"] <= table["hi"] + 1e-12)).all()
    pass1 = table[(table["metric"] == "pass") & (table["k"] == 1)]["value"].item()
    assert pass1 == pytest.approx(np.mean([i / 8 for i in range(9)]))
    # k = n: maj is exact, rerank (scores fall with sample index) picks sample 0
    rows = table.set_index(["metric", "k"])["value"]
    assert rows["maj", 8] == pytest.approx(np.mean([i > 4 or (i == 4) * 0.5 for i in range(9)]))
    assert rows["rerank", 8] == pytest.approx(8 / 9)


def test_checkpoint_and_training_curves():
    early = frame({"a": with_c_correct(4, 1), "b": with_c_correct(4, 0)}, greedy={"a": ("3", False), "b": ("3", False)},
                  checkpoint_id=1, step=0)
    late = frame({"a": with_c_correct(4, 4), "b": with_c_correct(4, 1)}, greedy={"a": ("7", True), "b": ("3", False)},
                 checkpoint_id=2, step=10)
    samples = pd.concat([late, early], ignore_index=True)
    by_k = checkpoint_curves(samples, n_boot=100)
    assert sorted(by_k["step"].unique()) == [0, 10] and len(by_k) == 2 * 2 * 4  # 2 ckpts x pass, maj x 4 ks
    over_steps = training_curves(samples, n_boot=100).set_index(["step", "metric"])["value"]
    assert set(over_steps.index.get_level_values("metric")) == {"maj@1", "pass@1", "pass@4", "maj@4"}
    assert over_steps[0, "maj@1"] == 0.0 and over_steps[10, "maj@1"] == 0.5  # greedy accuracy
    assert over_steps[0, "pass@1"] == pytest.approx(1 / 8) and over_steps[10, "pass@1"] == pytest.approx(5 / 8)
    assert over_steps[0, "pass@4"] == 0.5 and over_steps[10, "pass@4"] == 1.0


def test_curves_from_a_store_query(tmp_path):
    with Store(tmp_path / "store.sqlite") as store:
        run = store.create_run("ei", {})
        ckpt = store.add_checkpoint(run, 0, tmp_path / "ckpt")
        rows = [{"run_id": run, "checkpoint_id": ckpt, "step": 0, "kind": "eval", "task": "multistep",
                 "split": "test", "problem_id": "test-0", "sample_idx": i, "text": f"#### {a}", "answer": a,
                 "correct": int(a == "5"), "logprob": -1.0} for i, a in enumerate(["5", "5", "6", None])]
        store.add_samples(rows)
        samples = store.samples(checkpoint_id=ckpt, problem_id="test-0")
    table = curve_table(samples, n_boot=50).set_index(["metric", "k"])["value"]
    assert table["pass", 1] == pytest.approx(0.5) and table["pass", 3] == 1.0
    assert table["maj", 4] == 1.0  # "5" has two votes, "6" one, None abstains
