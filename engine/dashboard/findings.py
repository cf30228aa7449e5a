"""The Findings page's data: the suite's runs and every finding's card (queueing what is missing
is actions.queue_missing)."""

from __future__ import annotations

import pandas as pd

from engine import findings
from engine.findings import suite
from engine.store import Store

SIZE_HELP = ("suite: every run at the budget the verdicts need (about 12 minutes on 2 CPU cores, two runs at a time, "
             "see bench/findings.py); "
             "smoke: seconds, checks the pipeline end to end and learns nothing")


def suite_runs(store: Store, size: str = "suite", base=None) -> pd.DataFrame:
    """One row per run of the suite: key, run (label), run_id (None: missing), status, progress,
    checkpoints (evaluated so far). Its rows change whenever a verdict or figure could: the
    cards' cache key."""
    matched = suite.match(store, suite.configs(suite.default_base_path() if base is None else base, size))
    rows = []
    for key in suite.RUN_KEYS:
        run = matched.get(key)
        ck = store.checkpoints(run.run_id) if run else None
        rows.append({"key": key, "run": suite.LABELS[key], "run_id": None if run is None else run.run_id,
                     "status": "missing" if run is None else run.status,
                     "progress": 0.0 if run is None else run.progress,
                     "checkpoints": 0 if ck is None else int(ck["metrics"].map(bool).sum()),
                     "error": None if run is None else run.error})
    return pd.DataFrame(rows)


def missing(runs: pd.DataFrame) -> list[str]:
    """Keys the button would queue or resume."""
    return runs[~runs["status"].isin(["finished", "running", "queued"])]["key"].tolist()


def cards(store: Store, size: str = "suite", base=None, orm: bool = False) -> list:
    """Every finding's card from the suite's runs (the base as in suite_runs)."""
    return findings.cards(store, size, suite.default_base_path() if base is None else base, orm=orm)


# what the button starts, in wall time on 2 CPU cores (bench/findings.py measures it)
SIZE_TIME = {"suite": "The suite takes about 12 minutes on 2 CPU cores; the first verdicts come after about 3 minutes.",
             "smoke": "The smoke size takes a few minutes and learns nothing."}


def status_counts(found: list) -> dict[str, int]:
    """How many findings are confirmed, contradicted, undecided (inconclusive, too little data or
    a table) and waiting: the page's summary."""
    statuses = [c.verdict.status for c in found]
    return {"confirmed": statuses.count("confirmed"), "contradicted": statuses.count("contradicted"),
            "undecided": sum(s in ("inconclusive", "too little data", "measured") for s in statuses),
            "waiting": statuses.count("waiting")}
