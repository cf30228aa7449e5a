"""Outcome reward models for the dashboard: which ones the workspace holds, and their scores of
stored evaluation samples for rerank@k.

An ORM scores a checkpoint's samples once: the scores are kept under the workspace
(`cache/orm_scores/<ORM version>/<checkpoint id>.npz`, sample ids and probabilities), so a
rerender, another session or a restarted dashboard reads them back. The version hashes the ORM's
path and the stat of its weight files, so an ORM replaced in place is scored afresh; sample and
checkpoint ids are never reused (store migration 4), so a stored score always belongs to its sample.
"""

from __future__ import annotations

import hashlib
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from engine import jobs
from engine.dashboard.samples import _task_spec, analysis_task, problems_by_id
from engine.errors import ReasonlabError
from engine.model.validity import ORM_HEAD, SAFETENSORS, check_orm, is_orm
from engine.store import Store

CACHE = Path("cache") / "orm_scores"
BATCH = 256  # rows the ORM scores together on CPU
_SCORING = threading.Lock()  # one scoring pass at a time: the dashboard shares a few cores


def orms(store: Store) -> list[tuple[str, str]]:
    """(label, absolute path) of every whole ORM the store's runs have: each run's own (the one a
    reward=orm run without an `orm` trains into its directory), then every `orm` a run's config
    names; newest run first, each path once."""
    runs = store.runs().sort_values("id", ascending=False)
    runs = list(zip(runs["id"].astype(int), runs["algo"], runs["config"]))
    own = [(f"run {r} · {algo}: its own ORM", str(jobs.run_dir(r) / "orm")) for r, algo, _ in runs]
    named = [(f"run {r} · {algo}: its reward model", str(config["orm"])) for r, algo, config in runs
             if isinstance(config, dict) and config.get("orm")]
    found: dict[str, str] = {}
    for label, path in own + named:
        if path not in found and is_orm(path):
            found[path] = label
    return [(label, path) for path, label in found.items()]


def orm_path(path: str | Path) -> str:
    """A user's ORM directory as an absolute path, if it is a whole ORM (else a ReasonlabError
    naming the path and what is wrong)."""
    return str(check_orm(Path(path).expanduser().resolve()))


def orm_version(path: str | Path) -> str:
    """Changes when the ORM at `path` is replaced: its path and its head's and weights' stat."""
    parts = [str(path)]
    for name in (ORM_HEAD, SAFETENSORS):
        try:
            stat = (Path(path) / name).stat()
            parts.append(f"{name}:{stat.st_mtime_ns}:{stat.st_size}")
        except OSError:
            parts.append(f"{name}:-")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def load_orm(path: str):
    """The ORM at `path` on CPU, loaded once per version."""
    return _load(path, orm_version(path))


@lru_cache(maxsize=2)
def _load(path: str, version: str):
    from engine.algorithms.orm import OutcomeRewardModel

    return OutcomeRewardModel.load(path, device="cpu", dtype="float32")


def sample_scores(store: Store, checkpoint_id: int, path: str) -> pd.Series:
    """The ORM's probability of correctness for each sampled (not greedy) eval sample of a
    checkpoint, indexed by sample id: read from the workspace's cache, the missing ones scored."""
    version = orm_version(path)
    file = store.path.parent / CACHE / version / f"{int(checkpoint_id)}.npz"
    cached = _read(file)
    ids = store.sample_rows(["id", "sample_idx"], checkpoint_id=int(checkpoint_id), kind="eval")
    ids = ids.loc[ids["sample_idx"] >= 0, "id"].to_numpy(dtype=np.int64)
    missing = np.setdiff1d(ids, cached.index.to_numpy(dtype=np.int64))
    if len(missing):
        with _SCORING:
            cached = _read(file)  # another session may have scored them meanwhile
            missing = np.setdiff1d(ids, cached.index.to_numpy(dtype=np.int64))
            if len(missing):
                cached = pd.concat([cached, _score(store, int(checkpoint_id), path, version, set(missing.tolist()))])
                _write(file, cached)
    return cached.reindex(ids)


def _score(store: Store, checkpoint_id: int, path: str, version: str, ids: set[int]) -> pd.Series:
    """Score the given samples: the prompt each problem was sampled from, rebuilt from its run's
    task and prompt format, then the completion."""
    from engine.model.prompts import Prompter

    rows = store.sample_rows(["id", "problem_id", "split", "text"], checkpoint_id=checkpoint_id, kind="eval")
    rows = rows[rows["id"].isin(ids)]
    checkpoint = store.checkpoints().set_index("id").loc[checkpoint_id]
    run_id = int(checkpoint["run_id"])
    orm = _load(path, version)
    task_name, options = _task_spec(store, run_id)
    prompter = Prompter(analysis_task(store, run_id), orm.tokenizer,
                        _prompt_format(store, run_id, checkpoint["path"], orm.tokenizer))
    prompts = {}
    for split, part in rows.groupby("split"):
        found = problems_by_id(task_name, split, part["problem_id"].unique().tolist(), options)
        prompts.update({pid: prompter(p) for pid, p in found.items() if pid in set(part["problem_id"])})
    if lost := sorted(set(rows["problem_id"]) - set(prompts)):
        raise ReasonlabError(f"cannot rebuild the prompts of {len(lost)} problems of checkpoint {checkpoint_id} "
                             f"(e.g. {lost[0]}) from run {run_id}'s task {task_name}: has its data file moved?")
    scores = orm.score([prompts[p] for p in rows["problem_id"]], rows["text"].tolist(), batch_size=BATCH)
    return pd.Series(scores.astype(np.float64), index=rows["id"].to_numpy(dtype=np.int64))


def _prompt_format(store: Store, run_id: int, checkpoint_path: str, tokenizer) -> str:
    """The format the checkpoint was sampled with: its reasonlab.json's, else the run's resolved
    as the run resolved it, else plain."""
    from engine.model.checkpoint import read_meta
    from engine.model.prompts import PROMPT_FORMATS, resolve_format

    config = (store.get_run(run_id) or {}).get("config") or {}
    try:
        fmt = read_meta(checkpoint_path).get("prompt_format")
        if fmt in PROMPT_FORMATS[1:]:
            return fmt
        base = config.get("base") or checkpoint_path
        return resolve_format(config.get("prompt_format", "auto"), tokenizer, read_meta(base))
    except ReasonlabError:
        return "plain"


def _read(file: Path) -> pd.Series:
    try:
        with np.load(file) as data:
            return pd.Series(data["scores"], index=data["ids"])
    except (OSError, ValueError, KeyError):  # absent, or a file cut short: scored again
        return pd.Series(dtype=np.float64, index=pd.Index([], dtype=np.int64))


def _write(file: Path, scores: pd.Series) -> None:
    """Atomically: a dashboard reading it meanwhile sees the old file or the new one."""
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        np.savez(f, ids=scores.index.to_numpy(dtype=np.int64), scores=scores.to_numpy(dtype=np.float64))
    os.replace(tmp, file)
