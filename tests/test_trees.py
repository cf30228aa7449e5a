"""Solution trees on hand-made step lists: counts, correctness fractions, pruning, splitters, layout."""

import math
import pickle

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import dashboard
from engine.evaluation import solution_tree, tree_layout
from engine.evaluation.trees import line_steps, sentence_steps
from engine.tasks import TASKS
from tests.data_files import one_run_store, write_gsm8k


def pipes(text: str) -> list[str]:
    return text.split("|") if text else []


def samples(texts, correct, logprob=None, problem_id="p") -> pd.DataFrame:
    return pd.DataFrame({"problem_id": problem_id, "sample_idx": range(len(texts)), "text": texts,
                         "correct": correct, "logprob": logprob if logprob is not None else [-1.0] * len(texts)})


# a|b|c twice (both correct), a|b|d (wrong), a|e (correct), f (wrong)
HAND = samples(["a|b|c", "a|b|c", "a|b|d", "a|e", "f"], [1, 1, 0, 1, 0], [-1.0, -3.0, -2.0, -4.0, -10.0])


def by_path(tree: pd.DataFrame) -> dict[str, pd.Series]:
    """Nodes keyed by their label path from the root, e.g. "a/b/c"."""
    rows = {r.id: r for r in tree.itertuples()}
    out = {}
    for r in rows.values():
        path, node = [], r
        while node.parent:
            path.append(node.label)
            node = rows[node.parent]
        out["/".join(reversed(path))] = r
    return out


@pytest.mark.parametrize(
    "path, count, frac, mean_lp, members",
    [
        ("", 5, 3 / 5, -4.0, [0, 1, 2, 3, 4]),  # the root: every sample
        ("a", 4, 3 / 4, -2.5, [0, 1, 2, 3]),
        ("a/b", 3, 2 / 3, -2.0, [0, 1, 2]),
        ("a/b/c", 2, 1.0, -2.0, [0, 1]),
        ("a/b/d", 1, 0.0, -2.0, [2]),
        ("a/e", 1, 1.0, -4.0, [3]),
        ("f", 1, 0.0, -10.0, [4]),
    ],
)
def test_counts_correctness_logprob_and_members(path, count, frac, mean_lp, members):
    node = by_path(solution_tree(HAND, splitter=pipes))[path]
    assert (node.count, node.frac_correct, node.mean_logprob, node.samples) == (count, pytest.approx(frac), mean_lp, members)


def test_structure_depth_first_frequent_first_and_plotly_ready():
    tree = solution_tree(HAND, splitter=pipes, root_label="Q")
    assert tree["label"].tolist() == ["Q", "a", "b", "c", "d", "e", "f"]
    assert tree["depth"].tolist() == [0, 1, 2, 3, 3, 2, 1]
    assert tree.loc[0, "parent"] == "" and tree["id"].is_unique
    assert set(tree["parent"][1:]) <= set(tree["id"])
    # branchvalues="total" needs every node's count >= the sum of its children's
    child_sums = tree.groupby("parent")["count"].sum()
    for node_id, count in zip(tree["id"], tree["count"]):
        assert count >= child_sums.get(node_id, 0)


@pytest.mark.parametrize(
    "min_count, labels",
    [(1, ["problem", "a", "b", "c", "d", "e", "f"]), (2, ["problem", "a", "b", "c"]), (4, ["problem", "a"]),
     (6, [])],
)
def test_pruning_drops_rare_branches_with_their_subtrees(min_count, labels):
    tree = solution_tree(HAND, splitter=pipes, min_count=min_count)
    if min_count > 5:
        labels = ["problem"]  # the root always stays
    assert tree["label"].tolist() == labels


def test_examples_are_distinct_and_capped():
    tree = solution_tree(samples(["x|1", "x|2", "x|1", "x|3", "x|4"], [0] * 5), splitter=pipes, max_examples=2)
    assert by_path(tree)["x"].examples == ["x|1", "x|2"]
    assert by_path(tree)["x/1"].examples == ["x|1"]


def test_greedy_row_is_left_out_unless_asked():
    frame = pd.concat([HAND, pd.DataFrame([{"problem_id": "p", "sample_idx": -1, "text": "g", "correct": 1,
                                            "logprob": 0.0}])], ignore_index=True)
    assert "g" not in solution_tree(frame, splitter=pipes)["label"].tolist()
    with_greedy = by_path(solution_tree(frame, splitter=pipes, greedy=True))
    assert with_greedy["g"].samples == [-1] and with_greedy[""].count == 6


def test_missing_logprob_and_correct_columns():
    tree = solution_tree(pd.DataFrame({"text": ["a|b", "a"]}), splitter=pipes)
    assert tree["count"].tolist() == [2, 2, 1] and (tree["frac_correct"] == 0).all()
    assert tree["mean_logprob"].map(math.isnan).all()
    assert by_path(tree)["a/b"].samples == [0]  # positions stand in for sample indices


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown splitter 'words'"):
        solution_tree(HAND, splitter="words")
    with pytest.raises(ValueError, match="min_count"):
        solution_tree(HAND, min_count=0)
    two = pd.concat([HAND, samples(["a"], [1], problem_id="q")], ignore_index=True)
    with pytest.raises(ValueError, match="one problem"):
        solution_tree(two, splitter=pipes)


# --- splitters ---------------------------------------------------------------------------------


def test_built_in_task_tree_merges_reordered_operands():
    texts = ["3 * 6 = 18\n18 + 4 = 22\n#### 22", "6 * 3 = 18\n4 + 18 = 22\n#### 22", "3 * 6 = 18\n18 - 4 = 14\n#### 14"]
    tree = by_path(solution_tree(samples(texts, [1, 1, 0])))
    assert tree["3 * 6 = 18"].count == 3
    assert tree["3 * 6 = 18/4 + 18 = 22/#### 22"].count == 2
    assert tree["3 * 6 = 18/18 - 4 = 14"].frac_correct == 0.0


def test_free_text_splitters():
    text = "First, add. Then multiply!\n\nDone? Yes"
    assert line_steps(text) == ["First, add. Then multiply!", "Done? Yes"]
    assert sentence_steps(text) == ["First, add.", "Then multiply!", "Done?", "Yes"]
    tree = solution_tree(samples([text, "First, add. Stop."], [0, 1]), splitter="sentences")
    assert by_path(tree)["First, add."].count == 2


# --- layout ------------------------------------------------------------------------------------


def test_layout_spreads_leaves_and_centres_parents():
    laid = tree_layout(solution_tree(HAND, splitter=pipes)).set_index("label")
    assert laid.loc[["c", "d", "e", "f"], "x"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert laid.loc["b", "x"] == 0.5 and laid.loc["a", "x"] == 1.25 and laid.loc["problem", "x"] == 2.125
    assert laid["y"].tolist() == laid["depth"].tolist()


def test_a_thousand_samples_of_ten_steps():
    texts = [f"s0|s1|s2|a{i % 4}|b{i % 6}|s5|s6|s7|s8|s9" for i in range(1000)]
    tree = solution_tree(samples(texts, [i % 2 for i in range(1000)]), splitter=pipes)
    assert tree.loc[0, "count"] == 1000 and tree["depth"].max() == 10
    assert (tree.groupby("depth").size().tolist()) == [1, 1, 1, 1, 4] + [12] * 6  # (i mod 4, i mod 6): 12 paths
    leaves = tree[tree["depth"] == 10]
    assert leaves["count"].sum() == 1000 and sorted(set(leaves["count"])) == [83, 84]
    # i mod 12 fixes both residues and the parity, so each path is all correct or all wrong
    assert set(leaves["frac_correct"]) == {0.0, 1.0}


# --- the run's own task splits its solutions -------------------------------------------------------

# GSM8K-style solutions: NATALIA and REWORDED compute the same results in other words; HALVES
# reaches the same answer by other calculations.
NATALIA = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
           "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72")
REWORDED = "In May she sold half of 48, so 48 / 2 = 24.\nIn all: 24 + 48 = 72 clips.\n#### 72"
HALVES = "In May she sold 48 - 12 = 36.\nAltogether 36 + 36 = 72.\n#### 72"


@pytest.fixture
def gsm8k_run(tmp_path):
    data = write_gsm8k(tmp_path / "gsm8k.jsonl")
    store, run_id = one_run_store(tmp_path / "store.sqlite", {"task": "gsm8k", "data": str(data)},
                                  [NATALIA, REWORDED, HALVES, NATALIA])
    yield store, run_id, data
    store.close()


def test_a_gsm8k_file_runs_tree_has_one_level_per_solution_line(gsm8k_run):
    store, run_id, _ = gsm8k_run
    nodes = dashboard.tree(dashboard.problem_samples(store, run_id, "eval", 0, "test-0"))
    paths = by_path(nodes)
    assert nodes["depth"].max() == 3  # two lines of working, then `#### 72`
    # the first line of NATALIA and REWORDED computes 48 / 2 = 24: one node, worded as most samples do
    assert nodes[nodes["depth"] == 1]["count"].tolist() == [3, 1]
    first = "Natalia sold 48/2 = 24 clips in May."  # calculator annotations are not shown
    assert paths[first].count == 3 and paths[first].samples == [0, 1, 3]
    assert paths[f"{first}/Natalia sold 48+24 = 72 clips altogether in April and May./#### 72"].count == 3
    assert paths["In May she sold 48 - 12 = 36./Altogether 36 + 36 = 72./#### 72"].count == 1


def test_differently_worded_same_calculations_share_a_step_signature(gsm8k_run):
    store, run_id, _ = gsm8k_run
    task = dashboard.analysis_task(store, run_id)
    assert task.name == "gsm8k"
    assert task.step_signature(NATALIA) == task.step_signature(REWORDED) == ("24", "72", "72")
    assert task.step_signature(HALVES) == ("36", "72", "72")
    assert [task.step_key(s) for s in task.steps(REWORDED)] == [("=", "24"), ("=", "72"), ("####", "72")]


def test_the_tree_of_a_cached_view_still_uses_the_runs_task(gsm8k_run):
    """Pages cache problem_samples (st.cache_data pickles it): the task spec travels with it."""
    store, run_id, _ = gsm8k_run
    samples = pickle.loads(pickle.dumps(dashboard.problem_samples(store, run_id, "eval", 0, "test-0")))
    assert dashboard.tree(samples)["depth"].max() == 3
    assert dashboard.tree(samples, task="multistep")["depth"].max() == 3  # an explicit task wins
    assert dashboard.tree(samples, task="multistep")[lambda t: t["depth"] == 1]["count"].tolist() == [2, 1, 1]


def test_a_run_whose_data_file_moved_is_still_split_by_its_task(gsm8k_run):
    store, run_id, data = gsm8k_run
    data.rename(data.with_suffix(".moved"))
    dashboard.samples._analysis_task.cache_clear()
    assert dashboard.analysis_task(store, run_id).name == "gsm8k"
    nodes = dashboard.tree(dashboard.problem_samples(store, run_id, "eval", 0, "test-0"))
    assert nodes[nodes["depth"] == 1]["count"].tolist() == [3, 1]


def test_a_gym_runs_tree_and_signature_come_from_the_gym_task(tmp_path):
    texts = ["First 5 + 3 = 8.\nThen 8 + 2 = 10.\n<answer>10</answer>",
             "We add: 3 + 5 = 8\nand 8 + 2 = 10\n<answer>10</answer>",
             "5 + 5 = 10\n<answer>10</answer>"]
    store, run_id = one_run_store(tmp_path / "store.sqlite", {"task": "gym", "gym_name": "chain_sum",
                                                                   "gym_options": {"min_terms": 2}}, texts)
    with store:
        task = dashboard.analysis_task(store, run_id)
        assert task.name == "gym"
        assert task.step_signature(texts[0]) == task.step_signature(texts[1]) == ("8", "10", "10")
        nodes = dashboard.tree(dashboard.problem_samples(store, run_id, "eval", 0, "test-0"))
        assert nodes[nodes["depth"] == 1]["count"].tolist() == [2, 1]
        assert nodes["depth"].max() == 3


@pytest.mark.parametrize("name", ["gsm8k", "svamp", "jsonl", "gym"])
def test_free_text_steps_are_lines_keyed_by_their_results(name):
    task = TASKS[name]  # the step methods read the text alone: no data file needed
    text = "Let's think.\n  3 + 4 = 7 apples \n\nthen 7*2 = <<7*2=14>>14\nso 14 #### 14\n#### 99\nQuestion: 1 + 1 = 2"
    assert task.steps(text) == ["Let's think.", "3 + 4 = 7 apples", "then 7*2 = 14", "so 14", "#### 14"]
    assert [task.step_key(s) for s in task.steps(text)] == [("text", "let's think."), ("=", "7"), ("=", "14"),
                                                            ("text", "so 14"), ("####", "14")]


WORDS = st.lists(st.text("abcdefghijklmnopqrstuvwxyz ,.;:'", min_size=1, max_size=12), max_size=3).map(" ".join)
CALCULATIONS = st.lists(st.tuples(st.integers(0, 999), st.sampled_from("+-*"), st.integers(0, 999)),
                        min_size=1, max_size=5)


APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def worded(calculations, wording) -> str:
    lines = [f"{before} {a} {op} {b} = {APPLY[op](a, b)} {after}"
             for (a, op, b), (before, after) in zip(calculations, wording)]
    a, op, b = calculations[-1]
    return "\n".join(lines + [f"#### {APPLY[op](a, b)}"])


@settings(max_examples=60, deadline=None)
@given(CALCULATIONS, st.data())
def test_two_wordings_of_the_same_calculations_are_one_path_and_one_signature(calculations, data):
    """Whatever words surround them, the same calculations in the same order are the same steps."""
    texts = [worded(calculations, data.draw(st.lists(st.tuples(WORDS, WORDS), min_size=len(calculations),
                                                     max_size=len(calculations)))) for _ in range(2)]
    task = TASKS["gsm8k"]
    assert task.step_signature(texts[0]) == task.step_signature(texts[1])
    assert [task.step_key(s) for s in task.steps(texts[0])] == [task.step_key(s) for s in task.steps(texts[1])]
    nodes = solution_tree(samples(texts, [1, 1]), splitter=task)
    assert nodes["count"].tolist() == [2] * (len(calculations) + 2)  # one path: root, a node per line, the answer
