"""Runs and checkpoints for the dashboard: the shared store, the runs table and one run's detail
and log, evaluated checkpoints and where a new run can start. Reads only: what the run's controls
(cancel, resume, delete) and the status refresh do is in engine/dashboard/actions.py."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from engine import jobs, workspace
from engine.assets import SHIPPED_NAME
from engine.errors import ReasonlabError
from engine.store import Store


ACTIVE = ("queued", "running")
CURVE_COLUMNS = ["problem_id", "sample_idx", "answer", "correct", "logprob", "checkpoint_id", "step"]
TEXT_COLUMNS = ["id", "problem_id", "sample_idx", "text", "answer", "correct", "reward", "logprob", "n_tokens"]


# -- the store ------------------------------------------------------------------------------------

_STORES: dict[str, Store] = {}


def store_at(home: str | Path) -> Store:
    """One open store per workspace, shared by the app's sessions (Store is thread-safe)."""
    path = str(Path(home) / "store.sqlite")
    if path not in _STORES:
        _STORES[path] = Store(path)  # creates the workspace if needed
    return _STORES[path]


# -- runs -----------------------------------------------------------------------------------------


def latest_metrics(checkpoints: pd.DataFrame) -> dict[int, dict]:
    """run_id -> the metrics of its newest evaluated checkpoint."""
    out: dict[int, dict] = {}
    for _, c in checkpoints.iterrows():  # ordered by run, step
        if c["metrics"]:
            out[int(c["run_id"])] = c["metrics"]
    return out


def runs_table(store: Store) -> pd.DataFrame:
    """Every run, newest first: id, name, algo, status, progress, step, total, phase, checkpoints,
    maj@1 (of its newest evaluated checkpoint), created (local time), error. The statuses are the
    store's: actions.refresh marks the runs whose process died as interrupted."""
    runs = store.runs()
    columns = ["id", "name", "algo", "status", "progress", "step", "total", "phase", "checkpoints", "maj@1",
               "created", "error"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    checkpoints = store.checkpoints()
    latest = latest_metrics(checkpoints)
    counts = checkpoints.groupby("run_id").size()
    runs = runs.assign(
        checkpoints=[int(counts.get(r, 0)) for r in runs["id"]],
        **{"maj@1": [latest.get(int(r), {}).get("maj@1") for r in runs["id"]]},
        created=[time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in runs["created_at"]])
    runs[["name", "phase", "error"]] = runs[["name", "phase", "error"]].fillna("")
    return runs[columns].reset_index(drop=True)


def default_run(runs: pd.DataFrame) -> int:
    """Position in a `runs_table` of the newest run that has a checkpoint (else the newest)."""
    with_checkpoints = [i for i, n in enumerate(runs["checkpoints"]) if n > 0]
    return with_checkpoints[0] if with_checkpoints else 0


def run_label(run: dict | pd.Series) -> str:
    name = f" {run['name']}" if isinstance(run.get("name"), str) and run["name"] else ""
    return f"run {int(run['id'])} · {run['algo']}{name} · {run['status']}"


def run_detail(store: Store, run_id: int) -> dict:
    """The run row with eta_s (seconds left) and elapsed_s added."""
    run = store.get_run(run_id)
    if run is None:
        raise ReasonlabError(f"no run {run_id} in this workspace")
    end = run["finished_at"] or time.time()
    return {**run, "eta_s": jobs.eta_s(run),
            "elapsed_s": end - run["started_at"] if run["started_at"] else None}


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def run_metrics(store: Store, run_id: int) -> pd.DataFrame:
    """A run's logged metrics, long format (step, name, value, samples_seen, wall_time)."""
    return store.metrics(run_id)[["step", "name", "value", "samples_seen", "wall_time"]]


def run_log(store: Store, run: dict, metrics: pd.DataFrame, lines: int = 30) -> str:
    """The run's story as log lines, newest last: queued, started, every logged step with its
    main numbers, every evaluated checkpoint, how it ended."""
    def at(t):
        return time.strftime("%H:%M:%S", time.localtime(t))

    source = (run.get("config") or {}).get("source") if run["algo"] == jobs.IMPORTED else None
    events = [(run["created_at"], f"imported {run['config'].get('format')} samples from {source}" if source
               else f"queued {run['algo']} from {run['parent_checkpoint']}")]
    if run["started_at"]:
        events.append((run["started_at"], "started"))
    train = metrics[~metrics["name"].str.startswith("eval/")]
    keep = ["reward", "train/accuracy", "entropy", "policy_loss", "approx_kl", "kl_ref", "sft/loss", "tokens_per_s",
            "loss", "data/solutions", "data/train_pool", "data/skipped_lines", "score/unjudged"]
    for step, rows in train.groupby("step"):
        values = dict(zip(rows["name"], rows["value"]))
        shown = [f"{k} {_number(values[k])}" for k in keep if k in values and values[k] == values[k]
                 and (values[k] or k != "score/unjudged")]  # unjudged completions: only when there were some
        if shown:  # step 0 logs only its evaluation
            seen = int(rows["samples_seen"].max() or 0)
            events.append((rows["wall_time"].max(), " · ".join([f"step {step}", f"{seen:,} samples", *shown])))
    evals = metrics[metrics["name"].isin(["eval/maj@1"])]
    for _, e in evals.iterrows():
        events.append((e["wall_time"], f"checkpoint step {e['step']} evaluated · maj@1 {e['value']:.3f}"))
    if run["finished_at"]:
        why = f": {run['error']}" if run["error"] else ""
        events.append((run["finished_at"], f"{run['status']}{why}"))
    events.sort(key=lambda e: e[0] or 0)
    return "\n".join(f"{at(t)}  {text}" for t, text in events[-lines:])


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def worker_log_tail(lines: int = 40) -> str:
    """The last lines the background workers printed (warnings, crashes outside a run)."""
    path = workspace.home() / "logs" / "worker.log"
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - 64_000))
        text = f.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def probe_table(probes: list[dict]) -> pd.DataFrame:
    """The quickstart's probes of its base in training, one row per step: its answer and whether
    it was right, then its solution on one line."""
    return pd.DataFrame({"step": [p["step"] for p in probes], "answer": [p["answer"] for p in probes],
                         "correct": [bool(p["correct"]) for p in probes],
                         "solution": [" | ".join((p["completion"] or "").splitlines()) for p in probes]})


def deletion_summary(store: Store, run: dict) -> str:
    """What deleting the run removes, said before the user confirms."""
    kept = "" if run["algo"] == jobs.IMPORTED else " The checkpoint it started from is kept."
    return f"Deletes {jobs.deletion_summary(store, run['id'])}.{kept} This cannot be undone."


# -- checkpoints ----------------------------------------------------------------------------------


def evaluated_checkpoints(store: Store) -> pd.DataFrame:
    """checkpoints_table's evaluated rows: the ones with samples to analyse."""
    table = checkpoints_table(store)
    return table[table["evaluated"]].reset_index(drop=True)


def checkpoints_table(store: Store, run_id: int | None = None) -> pd.DataFrame:
    """Checkpoints with their run: checkpoint_id, run_id, algo, step, path, evaluated, maj@1,
    pass@1, pass@K (K = the largest k evaluated), label ("run 3 ei · step 2"), created_at."""
    ckpts = store.checkpoints(run_id)
    columns = ["checkpoint_id", "run_id", "algo", "step", "path", "evaluated", "maj@1", "pass@1", "pass@K",
               "label", "created_at"]
    if ckpts.empty:  # typed, so that filtering on `evaluated` selects rows, not columns
        return pd.DataFrame(columns=columns).astype({"evaluated": bool})
    algos = store.runs().set_index("id")["algo"]

    def top_pass(m):
        ks = [int(k[5:]) for k in (m or {}) if k.startswith("pass@") and k[5:].isdigit()]
        return m[f"pass@{max(ks)}"] if ks else None

    table = pd.DataFrame({
        "checkpoint_id": ckpts["id"].astype(int), "run_id": ckpts["run_id"].astype(int),
        "algo": [algos.get(r, "?") for r in ckpts["run_id"]], "step": ckpts["step"].astype(int),
        "path": ckpts["path"], "evaluated": ckpts["metrics"].map(bool),
        "maj@1": ckpts["metrics"].map(lambda m: (m or {}).get("maj@1")),
        "pass@1": ckpts["metrics"].map(lambda m: (m or {}).get("pass@1")),
        "pass@K": ckpts["metrics"].map(top_pass), "created_at": ckpts["created_at"]})
    table["label"] = [f"run {r} {a} · step {s}" for r, a, s in zip(table["run_id"], table["algo"], table["step"])]
    return table[columns]


def base_checkpoints() -> list[Path]:
    """Checkpoint directories directly under the workspace's checkpoints/ (e.g. base-tiny), the
    shipped base's copy (base-shipped) first."""
    root = workspace.checkpoints_dir()
    if not root.is_dir():
        return []
    # a dot-name is a save in progress (or one a crash left): engine/model/checkpoint.py
    found = [p for p in root.iterdir() if not p.name.startswith(".") and (p / "config.json").is_file()]
    return sorted(found, key=lambda p: (p.name != SHIPPED_NAME, p.name))


def start_points(store: Store) -> list[tuple[str, str]]:
    """(label, path) of every checkpoint a run can start from: the workspace's base models (the
    shipped base's copy first, once actions.copy_shipped_base has made it), then the runs'
    checkpoints (with their maj@1), each path once."""
    found = {str(p): p.name for p in base_checkpoints()}
    table = checkpoints_table(store)
    table = table[table["algo"] != jobs.IMPORTED]  # an imported run's checkpoint row names no model
    for label, path, step, maj in zip(table["label"], table["path"], table["step"], table["maj@1"]):
        if path not in found and (step > 0 or Path(path, "config.json").is_file()):
            found[path] = label if maj is None or maj != maj else f"{label} · maj@1 {maj:.3f}"
    return [(label, path) for path, label in found.items()]
