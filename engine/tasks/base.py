"""What every task family provides: problems by split, prompts, scoring of a completion."""

from __future__ import annotations

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


class Task(Protocol):
    name: str
    splits: tuple[str, ...]

    def problems(self, split: str, n: int | None = None) -> list[Problem]:
        """The first n problems of a split (deterministic); n=None gives the split's default size."""

    def prompt(self, problem: Problem) -> str:
        """The text the model continues."""

    def sample_solution(self, problem: Problem, rng) -> str:
        """A reference solution in a random valid order (for SFT data)."""

    def step_signature(self, completion: str) -> tuple:
        """The solution's normalised step sequence (for deduplication and solution trees)."""

    def score(self, problem: Problem, completion: str) -> Score:
        """Check a completion: answer extraction, correctness, steps, dense reward."""
