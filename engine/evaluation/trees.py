"""Solution trees: one problem's samples merged into a prefix tree of reasoning steps.

A node is a step; its children are the next steps that samples took after it; the root stands for
the problem (every sample passes through it). Two samples share a node while their step
sequences agree; the run's task says how a solution splits into steps and which steps are the
same (a GSM8K file: one step per line, the same when it computes the same results). Per node:
how many samples pass through it, the fraction of those whose final answer is correct, their
mean log-probability, a few example texts and the sample indices.

The output is a flat DataFrame that plotly's icicle / sunburst take as it is
(`ids="id", parents="parent", names="label", values="count", branchvalues="total"`): a node's
count is at least the sum of its children's, since a sample may stop at any node.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.tasks import TASKS, Task

Splitter = Callable[[str], list[str]]
COLUMNS = ["id", "parent", "label", "depth", "count", "frac_correct", "mean_logprob", "examples", "samples"]


def line_steps(text: str) -> list[str]:
    """Free text, one step per non-empty line (whitespace-stripped)."""
    return [line.strip() for line in text.split("\n") if line.strip()]


SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentence_steps(text: str) -> list[str]:
    """Free text, one step per sentence (split after . ! ? and at line breaks)."""
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


SPLITTERS: dict[str, Splitter] = {"lines": line_steps, "sentences": sentence_steps}


def _reader(splitter) -> tuple[Splitter, Callable[[str], Hashable]]:
    """(steps of a text, key of a step) for a splitter: a task (its `steps` and `step_key`), a
    task's name ("multistep": the built-in task), "lines", "sentences", or a function."""
    if isinstance(splitter, str) and splitter not in SPLITTERS:
        if splitter not in TASKS:
            raise ValueError(f"solution_tree: unknown splitter {splitter!r}; choose a task's name "
                             f"({', '.join(sorted(TASKS))}) or one of {', '.join(SPLITTERS)}")
        splitter = TASKS[splitter]  # its step methods read the text alone
    if hasattr(splitter, "steps"):
        return splitter.steps, splitter.step_key
    return (SPLITTERS[splitter] if isinstance(splitter, str) else splitter), lambda step: step


@dataclass
class _Node:
    """One node of a solution tree while the samples walk down it."""
    parent: int  # the parent's id (its index in the node list); -1 at the root
    depth: int
    wordings: Counter = field(default_factory=Counter)  # the step as the samples wrote it -> samples
    children: dict[Hashable, int] = field(default_factory=dict)  # the next step's key -> child id
    count: int = 0  # samples through the node
    n_correct: int = 0
    lp_sum: float = 0.0  # total log-probabilities of the samples that store one
    lp_n: int = 0
    examples: list[str] = field(default_factory=list)  # distinct full texts, up to max_examples
    samples: list[int] = field(default_factory=list)  # sample_idx of every sample through the node

    def visit(self, text: str, ok: bool, lp: float, idx: int, max_examples: int) -> None:
        self.count += 1
        self.n_correct += ok
        if lp == lp:  # not NaN
            self.lp_sum += lp
            self.lp_n += 1
        if len(self.examples) < max_examples and text not in self.examples:
            self.examples.append(text)
        self.samples.append(idx)


def solution_tree(samples: pd.DataFrame, splitter: str | Splitter | Task = "multistep", min_count: int = 1,
                  max_examples: int = 3, greedy: bool = False, root_label: str = "problem") -> pd.DataFrame:
    """The prefix tree of one problem's samples (columns text, correct; logprob and sample_idx
    when present) as one row per node, in depth-first order with frequent branches first:

        id, parent   str; the root's parent is "" (plotly's convention)
        label        the step (the root: root_label); when several wordings share a node (the
                     task's step_key), the most frequent one
        depth        0 at the root
        count        samples through the node
        frac_correct fraction of them whose final answer is correct
        mean_logprob their mean total log-probability (NaN when none is stored): samples store
                     one log-probability per solution, not per step
        examples     up to max_examples distinct full texts of samples through the node
        samples      their sample_idx values, all of them

    splitter: the run's task (its `steps` split a text, its `step_key` says which steps are one
    node), a task's name ("multistep": the built-in task's normalised steps), "lines",
    "sentences" or any function text -> list of step strings. Nodes with count < min_count are
    pruned together with their subtrees. The greedy row (sample_idx -1) is left out unless greedy=True.
    """
    split, key = _reader(splitter)
    if min_count < 1:
        raise ValueError(f"solution_tree: min_count must be >= 1, got {min_count}")
    if "problem_id" in samples.columns and samples["problem_id"].nunique() > 1:
        raise ValueError(f"solution_tree: expected the samples of one problem, got "
                         f"{samples['problem_id'].nunique()} problems")
    if "sample_idx" in samples.columns:
        if not greedy:
            samples = samples[samples["sample_idx"] >= 0]
        indices = samples["sample_idx"].astype(int).tolist()
    else:
        indices = list(range(len(samples)))
    texts = samples["text"].tolist()
    correct = (samples["correct"].fillna(0) == 1).tolist() if "correct" in samples.columns else [False] * len(texts)
    logprobs = samples["logprob"].astype(float).tolist() if "logprob" in samples.columns else [np.nan] * len(texts)

    # 1) walk every sample down the tree, creating nodes as paths diverge (a node's id: its index)
    nodes = [_Node(parent=-1, depth=0, wordings=Counter([root_label]))]
    for text, ok, lp, idx in zip(texts, correct, logprobs, indices):
        at = 0
        nodes[at].visit(text, ok, lp, idx, max_examples)
        for step in split(text):
            child = nodes[at].children.setdefault(key(step), len(nodes))
            if child == len(nodes):
                nodes.append(_Node(parent=at, depth=nodes[at].depth + 1))
            at = child
            nodes[at].wordings[step] += 1
            nodes[at].visit(text, ok, lp, idx, max_examples)

    # 2) prune (a kept node's parent has a count at least as large, so the tree stays connected)
    # and order depth-first, frequent children first
    order, stack = [], [0]
    while stack:
        at = stack.pop()
        order.append(at)
        kept = [c for c in nodes[at].children.values() if nodes[c].count >= min_count]
        stack.extend(sorted(kept, key=lambda c: (nodes[c].count, -c)))  # popped most frequent first
    rows = [nodes[i] for i in order]
    return pd.DataFrame({
        "id": [str(i) for i in order],
        "parent": ["" if n.parent < 0 else str(n.parent) for n in rows],
        "label": [n.wordings.most_common(1)[0][0] for n in rows],  # ties: the first seen
        "depth": [n.depth for n in rows],
        "count": [n.count for n in rows],
        "frac_correct": [n.n_correct / n.count if n.count else np.nan for n in rows],
        "mean_logprob": [n.lp_sum / n.lp_n if n.lp_n else np.nan for n in rows],
        "examples": [n.examples for n in rows],
        "samples": [n.samples for n in rows],
    }, columns=COLUMNS)


def tree_layout(nodes: pd.DataFrame) -> pd.DataFrame:
    """x, y positions for a node-link drawing of a `solution_tree`: y = depth (root at 0), leaves
    spread at x = 0, 1, 2, ... in the table's depth-first order, and each inner node centred over
    its first and last child. Returns the nodes with x and y columns added."""
    ids = nodes["id"].tolist()
    kids: dict[str, list[str]] = {}
    for node, parent in zip(ids, nodes["parent"]):
        if parent:
            kids.setdefault(parent, []).append(node)
    leaves = [node for node in ids if node not in kids]
    x = {node: float(i) for i, node in enumerate(leaves)}
    for node in reversed(ids):  # children come after their parent in depth-first order
        if node in kids:
            x[node] = (x[kids[node][0]] + x[kids[node][-1]]) / 2
    return nodes.assign(x=[x[n] for n in ids], y=nodes["depth"].astype(float))
