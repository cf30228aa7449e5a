"""The Findings layer: the paper's results, and newer ones, checked against runs the user launched.

    cards(store, size)         -> [Card(finding, runs, verdict, tables), ...]  one per finding
    as_json(cards)             -> one JSON-ready object (`reasonlab findings --json`)
    suite.queue_missing(store) -> queue the runs still missing (a finished run with the same config
                                  is reused, a stopped one resumed)

engine/findings/suite.py says which runs, cards.py what each finding claims and how its verdict is
computed, stats.py the statistics, evidence.py what is read from the store, figures.py the plots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from engine.findings import suite
from engine.findings.cards import BY_KEY, FINDINGS, STATUSES, Finding, Verdict
from engine.findings.evidence import Evidence
from engine.findings.stats import Interval

__all__ = ["BY_KEY", "FINDINGS", "STATUSES", "Card", "Finding", "Verdict", "as_json", "cards", "suite"]


@dataclass
class Card:
    finding: Finding
    runs: dict  # suite key -> SuiteRun or None (not in the store yet)
    verdict: Verdict
    tables: dict  # evidence for the figure (engine/findings/figures.py)


def cards(store, size: str = "suite", base: str | Path | None = None, only=None, orm: bool | str = False) -> list[Card]:
    """Every finding's card from the store's runs of the suite at `size`. F5's rerank@K is by
    log-probability unless `orm`: True for the ORM the suite's reward=orm run trained, or an ORM
    directory (its scores of the samples are computed once and cached in the workspace)."""
    cfgs = suite.configs(base, size)
    matched = suite.match(store, cfgs)
    ev = Evidence(store, matched)
    out = []
    for finding in FINDINGS:
        if only and finding.key not in only:
            continue
        if finding.key == "F5" and orm:
            verdict, tables = finding.judge(ev, *_orm_reranker(store, matched, orm))
        else:
            verdict, tables = finding.judge(ev)
        out.append(Card(finding, {k: matched.get(k) for k in finding.runs}, verdict, tables))
    return out


def _orm_reranker(store, matched: dict, orm: bool | str):
    """(scores function, label) for F5's rerank@K by an ORM; log-probability while it has none."""
    from engine import jobs
    from engine.dashboard import orm as orms
    from engine.errors import ReasonlabError

    if orm is True:
        run = matched.get("ppo-orm")
        if run is None:
            return None, "log-probability (the ORM-reward run has not trained its ORM yet)"
        path = str(jobs.run_dir(run.run_id) / "orm")
    else:
        path = str(orm)
    try:
        path = orms.orm_path(path)
    except ReasonlabError as e:
        if orm is True:
            return None, "log-probability (the ORM-reward run has not trained its ORM yet)"
        raise ReasonlabError(f"findings: --orm: {e}") from None

    def scores(checkpoint_id: int, samples: pd.DataFrame):
        return samples["id"].map(orms.sample_scores(store, checkpoint_id, path)).to_numpy(dtype=float)

    return scores, f"the ORM {path}"


def _plain(value):
    if isinstance(value, Interval):
        return value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, pd.DataFrame):  # numpy scalars
        return _plain(value.item())
    return value


def as_json(found: list[Card]) -> dict:
    """{"findings": [{key, title, claim, source, status, verdict, numbers, runs: {key: {run_id, status}}}]}"""
    return {"findings": [{
        "key": c.finding.key, "title": c.finding.title, "claim": c.finding.claim, "source": c.finding.source,
        "status": c.verdict.status, "verdict": c.verdict.text, "numbers": _plain(c.verdict.numbers),
        "runs": {k: (None if r is None else {"run_id": r.run_id, "status": r.status, "progress": r.progress})
                 for k, r in c.runs.items()}} for c in found]}
