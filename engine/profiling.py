"""Where a run's wall time goes: seconds per phase, summed over the run.

The training loops time their phases through `RunContext.phases` (a `Phases`, made new for each
run and also kept here as `current`, so that a benchmark that executes a run in its own process
reads it afterwards):

    sample      sampling the policy, answers checked (the rollouts a step or round trains on)
    score       rewards from the scores (the ORM's forward with reward=orm)
    logprobs    the policy's old, the reference's and the value head's forward passes (no gradient)
    update      the optimizer's passes: forward, backward and step of every minibatch (EI, RCRL
                and continued SFT: their fine-tuning)
    evaluate    evaluating the base and every checkpoint (and the deep evaluations)
    checkpoint  writing checkpoints
    store       writing rollouts and metrics to the store
    orm         training the ORM of a reward=orm run

Phases do not nest: a phase timed inside another is part of the outer one (the store writes of
an evaluation are evaluation time), so each second is counted at most once. Counts (`count`) hold what the rates
need, e.g. the tokens the update trained on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

PHASES = ("sample", "score", "logprobs", "update", "evaluate", "checkpoint", "store", "orm")


class Phases:
    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._active: str | None = None

    @contextmanager
    def time(self, name: str):
        """Add the seconds the block takes to phase `name` (also when it raises), unless it runs
        inside another phase's block, whose time it is."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; one of {', '.join(PHASES)}")
        if self._active is not None:
            yield
            return
        self._active, t = name, time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t
            self._active = None

    def count(self, name: str, n: int) -> None:
        self.counts[name] += int(n)

    def report(self, wall_s: float | None = None) -> dict:
        """{"wall_s", "seconds": {phase: s, ..., "other": the rest}, "share": {phase: s / wall},
        "counts"}: wall_s defaults to the time since this run's Phases was made."""
        wall = time.perf_counter() - self.started if wall_s is None else wall_s
        seconds = {p: round(self.seconds[p], 2) for p in PHASES if p in self.seconds}
        seconds["other"] = round(max(0.0, wall - sum(self.seconds.values())), 2)
        return {"wall_s": round(wall, 2), "seconds": seconds,
                "share": {p: round(s / wall, 3) if wall > 0 else 0.0 for p, s in seconds.items()},
                "counts": dict(self.counts)}


current = Phases()


def start() -> Phases:
    """A new run's phases (and `current`)."""
    global current
    current = Phases()
    return current
