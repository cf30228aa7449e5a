"""What every task family provides: problems by split, prompts, scoring of a completion."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Problem:
    id: str  # unique within (task, split), e.g. "test-17"
    question: str
    answer: str  # the reference final answer, normalised
    reference: str  # one reference solution, in the task's solution format
    data: Any = None  # task-specific structure (e.g. the expression DAG)


@dataclass(frozen=True)
class Score:
    """How one completion fares on one problem. `correct` is the task accuracy (sparse reward)."""

    answer: str | None  # strict extraction (`#### N`), None when absent
    answer_lenient: str | None  # last number in the text, reported separately
    correct: bool  # strict answer equals the reference
    correct_lenient: bool
    steps_total: int = 0  # lines that parse as `a op b = c`
    steps_valid: int = 0  # ... whose arithmetic is right
    malformed_lines: int = 0  # lines that are neither a step nor the final-answer line
    dense: float = 0.0  # share of the reference's intermediate results the solution reaches
    extra: dict = field(default_factory=dict)
    unjudged: bool = False  # scoring raised (score_safely): counted incorrect, logged as score/unjudged


def score_safely(task, problem: Problem, completion: str) -> Score:
    """The task's score of a completion; a completion the task cannot judge (its scoring raised)
    is incorrect and marked unjudged, so no model text fails a run, nor its resume."""
    try:
        return task.score(problem, completion)
    except Exception as e:  # RecursionError, ValueError, MemoryError, ... on text no one foresaw
        return Score(answer=None, answer_lenient=None, correct=False, correct_lenient=False, unjudged=True,
                     extra={"score_error": f"{type(e).__name__}: {str(e)[:200]}"})


class Task(Protocol):
    name: str
    splits: tuple[str, ...]

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        """The first n problems of a split (deterministic); n=None gives the split's default size."""

    def prompt(self, problem: Problem) -> str:
        """The text the model continues."""

    def sample_solution(self, problem: Problem, rng) -> str:
        """A reference solution in a random valid order (for SFT data)."""

    # How the task's solutions split into steps, for analysis (solution trees, distinct step
    # sequences, EI's dedup=steps). They read the text alone, never the task's data, so a
    # dashboard can split a run's solutions even when its data file has since moved.

    def steps(self, completion: str) -> list[str]:
        """The solution's steps as display labels, one per solution-tree level, in order."""

    def step_key(self, step: str) -> Hashable:
        """What identifies one step of `steps`: steps with one key are one tree node."""

    def step_signature(self, completion: str) -> tuple:
        """The solution's normalised step sequence and final answer: solutions that share it
        count as one in deduplication and in distinct step sequences."""

    def score(self, problem: Problem, completion: str) -> Score:
        """Check a completion: answer extraction, correctness, steps, dense reward."""
