"""What the findings read from the store, for the suite's runs: evaluated checkpoints, outcome
tables, logged metrics and rollouts. Reads only; every table is small (no sample texts)."""

from __future__ import annotations

from functools import cached_property

import pandas as pd

from engine.schema import DEEP_EVAL as DEEP
from engine.findings import stats
from engine.findings.suite import LABELS, SuiteRun

EVAL_COLUMNS = ["checkpoint_id", "step", "problem_id", "sample_idx", "correct"]


class Evidence:
    """The suite's runs in one store. `runs` maps suite keys to the stored run each uses
    (suite.match). A run counts as evidence for a verdict once it has finished."""

    def __init__(self, store, runs: dict[str, SuiteRun]):
        self.store, self.runs = store, runs
        self._outcomes: dict[tuple[int, int], pd.DataFrame] = {}
        self._checkpoints: dict[str, pd.DataFrame] = {}

    def finished(self, key: str) -> bool:
        run = self.runs.get(key)
        return run is not None and run.status == "finished"

    def label(self, key: str) -> str:
        run = self.runs.get(key)
        return f"{LABELS.get(key, key)} (run {run.run_id})" if run else LABELS.get(key, key)

    def checkpoints(self, key: str) -> pd.DataFrame:
        """A run's evaluated checkpoints in step order: checkpoint_id, step, samples_seen, metrics."""
        if key not in self._checkpoints:
            self._checkpoints[key] = self._read_checkpoints(key)
        return self._checkpoints[key]

    def _read_checkpoints(self, key: str) -> pd.DataFrame:
        run = self.runs.get(key)
        if run is None:
            return pd.DataFrame(columns=["checkpoint_id", "step", "samples_seen", "metrics"])
        ck = self.store.checkpoints(run.run_id)
        ck = ck[ck["metrics"].map(bool).astype(bool)].sort_values("step")
        seen = self.seen(key)
        return pd.DataFrame({"checkpoint_id": ck["id"].astype(int).to_numpy(), "step": ck["step"].astype(int).to_numpy(),
                             "samples_seen": [seen.get(int(s), 0 if s == 0 else None) for s in ck["step"]],
                             "metrics": ck["metrics"].to_numpy()})

    def seen(self, key: str) -> dict[int, int]:
        """step -> samples seen by then (the logged samples_seen at that step)."""
        logged = self.store.metrics(self.runs[key].run_id)
        logged = logged.dropna(subset=["samples_seen"])
        return {int(s): int(v) for s, v in logged.groupby("step")["samples_seen"].max().items()}

    def outcome(self, key: str, step: int | None = None, deep: bool = False) -> pd.DataFrame | None:
        """The outcome table (stats.outcomes) of a run's checkpoint at `step` (default: its last
        evaluated one); None when the run has no such evaluated checkpoint. deep: of its deep
        evaluation (an empty table where it has none)."""
        ck = self.checkpoints(key)
        if ck.empty:
            return None
        row = ck.iloc[-1] if step is None else ck[ck["step"] == step]
        if isinstance(row, pd.DataFrame):
            if row.empty:
                return None
            row = row.iloc[-1]
        cid = int(row["checkpoint_id"])
        cache_key = (self.runs[key].run_id, cid, deep)
        if cache_key not in self._outcomes:
            rows = self.store.sample_rows(EVAL_COLUMNS, checkpoint_id=cid, kind=DEEP if deep else "eval")
            self._outcomes[cache_key] = stats.outcomes(rows)
        return self._outcomes[cache_key]

    def final(self, key: str, deep: bool = False) -> pd.DataFrame | None:
        """A finished run's last checkpoint's outcomes (None until the run has finished)."""
        return self.outcome(key, deep=deep) if self.finished(key) else None

    def base(self, deep: bool = False) -> pd.DataFrame | None:
        """The shared base's outcomes: step 0 of any run (every run evaluates the same base on the
        same problems with the same seed)."""
        for key in self.runs:
            found = self.outcome(key, 0, deep)
            if found is not None and len(found):
                return found
        return None

    def metrics(self, key: str, names: list[str]) -> pd.DataFrame:
        """A run's logged metrics as a wide table: step, samples_seen, then one column per name."""
        run = self.runs.get(key)
        if run is None:
            return pd.DataFrame(columns=["step", "samples_seen", *names])
        logged = self.store.metrics(run.run_id, names)
        if logged.empty:
            return pd.DataFrame(columns=["step", "samples_seen", *names])
        wide = logged.pivot_table(index="step", columns="name", values="value", aggfunc="last")
        seen = logged.groupby("step")["samples_seen"].max()
        wide = wide.reindex(columns=names).assign(samples_seen=seen).reset_index()
        return wide[["step", "samples_seen", *names]]

    def rollouts(self, key: str) -> pd.DataFrame:
        run = self.runs.get(key)
        if run is None:
            return pd.DataFrame(columns=["step", "problem_id", "sample_idx", "correct"])
        return self.store.sample_rows(["step", "problem_id", "sample_idx", "correct"], run_id=run.run_id, kind="rollout")

    @cached_property
    def k(self) -> int | None:
        """The K every run's checkpoints were evaluated with (the suite shares it)."""
        base = self.base()
        return None if base is None or base.empty else int(base["n"].min())
