"""Training runs as background OS processes, with their state in the store.

A run is a row in the store: queued -> running -> finished | failed | cancelled | interrupted.
It trains in its own process, so it outlives the dashboard or terminal that started it:

- `submit` validates the config (before any process starts) and queues the run.
- A worker (`python -m engine.jobs`, started detached) claims queued runs oldest first, at most
  $REASONLAB_MAX_RUNNING at a time (default 1), and trains them one after another until the queue is
  empty. With several at a time (one worker each), every run takes its share of the cores. A
  foreground `reasonlab train` waits for its turn in the same queue and trains in its own process.
- While it trains, a thread writes a heartbeat every HEARTBEAT_S. `reconcile` marks a running run
  whose process has died (SIGKILL, OOM, power loss) or whose heartbeat is stale as interrupted.
- `delete` removes a stopped run, its store rows and its directory; never a running one, nor one
  whose checkpoints another run starts from. The run is "deleting" while its samples go.
- `cancel` asks the loop to stop (it saves what it has). The heartbeat thread reads the flag every
  CANCEL_POLL_S into the run's stop signal (which SIGTERM sets too), and sampling, fine-tuning and
  evaluation check that signal per decode or optimizer step, so even a long phase stops within
  seconds (not a vLLM generate call in progress; a multi-process launch stops together at its
  next step). `resume` queues an interrupted, cancelled or failed run again, and the loop
  continues from its last checkpoint with the same config and seed, after the store forgets what
  was logged after that checkpoint.
- Under a multi-process launch (`accelerate launch -m engine.cli train ...`), rank 0 queues and
  claims the run as above and tells the other processes which run it claimed; they train it with
  it (`run_replica`) and never touch the store. One that crashes leaves its traceback in the run's
  directory, and the run fails with that error (`process_failure`), whether rank 0 records the
  end or `reconcile` finds rank 0 killed by the launcher.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from engine import workspace
from engine.config import RunConfig, config_from_dict
from engine.algorithms import ALGORITHMS
from engine.errors import ReasonlabError
from engine.processes import pid_alive
from engine.store import Store

HEARTBEAT_S = 5.0
CANCEL_POLL_S = 1.0  # how often a running job reads its cancel flag (a long phase stops within about this)
STALE_S = 60.0  # a heartbeat older than this means the process is gone (or hung)
RESUMABLE = ("interrupted", "cancelled", "failed")
IMPORTED = "import"  # the algo of runs engine/imports.py makes: samples only, nothing trains or resumes


def run_dir(run_id: int) -> Path:
    return workspace.home() / "runs" / f"{run_id:05d}"


def total_of(cfg: RunConfig) -> int:
    return getattr(cfg, "rounds", None) or getattr(cfg, "steps")


def submit(store: Store, cfg: RunConfig, name: str | None = None, foreground: bool = False) -> int:
    """Queue a run of a validated config. A foreground run is owned by this process (its pid is
    recorded) so a worker never takes it; a detached one waits for any worker."""
    cfg.validate()
    workspace.max_running()  # a bad REASONLAB_MAX_RUNNING is refused before the run is queued
    run_id = store.create_run(cfg.algo, dataclasses.asdict(cfg), name=name, total=total_of(cfg),
                              parent_checkpoint=cfg.base)
    if foreground:
        store.update_run(run_id, pid=os.getpid())
    return run_id


def reconcile(store: Store, spawn: bool = True) -> list[int]:
    """Mark runs whose process is gone as interrupted; start a worker if queued runs wait for one.
    Returns the ids of the runs it marked (as interrupted, or failed: see process_failure)."""
    now = time.time()
    marked = []
    for run in run_rows(store):
        pid = run["pid"]
        if run["status"] == "running":
            stale = run["heartbeat_at"] is not None and now - run["heartbeat_at"] > STALE_S
            if not pid_alive(pid) or stale:
                why = f"heartbeat stale for {now - run['heartbeat_at']:.0f} s" if stale else f"process {pid} died"
                # a launch whose other process crashed, then the launcher killed rank 0: failed
                fields = process_failure(run["id"]) or {"status": "interrupted",
                                                         "error": f"interrupted at step {run['step']}: {why}"}
                store.update_run(run["id"], finished_at=now, **fields)
                marked.append(run["id"])
        elif run["status"] == "queued" and pid is not None and not pid_alive(pid):
            store.update_run(run["id"], status="interrupted", finished_at=now,
                             error="the foreground `reasonlab train` waiting for this run exited")
            marked.append(run["id"])
    if spawn:
        runs = run_rows(store)
        waiting = [r for r in runs if r["status"] == "queued" and r["pid"] is None]
        if waiting and sum(r["status"] == "running" for r in runs) < workspace.max_running():
            spawn_worker()
    return marked


def run_rows(store: Store) -> list[dict]:
    """All runs as plain dicts, oldest first (None where the store has NULL)."""
    df = store.runs().sort_values("id")
    rows = df.astype(object).where(df.notna(), None).to_dict("records")
    for r in rows:
        for key in ("id", "pid", "step", "total", "cancel_requested"):
            if r.get(key) is not None:
                r[key] = int(r[key])
    return rows


def spawn_worker(max_running: int | None = None) -> int:
    """Start a detached worker process (its own session, so it survives the caller). With
    `max_running`, it trains up to that many runs at once with other workers (instead of
    $REASONLAB_MAX_RUNNING): start as many workers."""
    logs = workspace.ensure_home() / "logs"
    logs.mkdir(exist_ok=True)
    log = open(logs / "worker.log", "ab")
    env = workspace.child_env()
    if max_running is not None:
        env["REASONLAB_MAX_RUNNING"] = str(max_running)
    proc = subprocess.Popen([sys.executable, "-m", "engine.jobs"], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                            cwd=str(Path(__file__).resolve().parent.parent), env=env)
    log.close()
    return proc.pid


def worker(store: Store) -> None:
    """Train queued runs, oldest first, until none is left that this worker may take."""
    while True:
        reconcile(store, spawn=False)
        run = store.claim_run(None, os.getpid(), workspace.max_running())
        if run is None:
            return
        execute(store, run)


def run_foreground(store: Store, run_id: int, on_progress=None, poll_s: float = 1.0, announce=None) -> dict:
    """Wait for this run's turn in the queue, then train it in this process. Returns the run row.
    `announce(run or None)` tells the other processes of a multi-process launch what was claimed."""
    announce = announce or (lambda run: None)
    while True:
        reconcile(store, spawn=True)  # older detached runs need a worker, or we wait forever
        run = store.claim_run(run_id, os.getpid(), workspace.max_running())
        if run is not None:
            for old in process_errors(run_id):  # from an earlier launch of this run
                old.unlink()
            announce(run)
            execute(store, run, on_progress=on_progress)
            return store.get_run(run_id)
        current = store.get_run(run_id)
        if current["status"] != "queued":  # cancelled while waiting
            announce(None)
            return current
        if on_progress is not None:
            on_progress(current, "waiting for earlier runs to finish")
        time.sleep(poll_s)


def share_cores() -> int:
    """The torch threads of a run: every core when runs train one at a time, its share of them when
    $REASONLAB_MAX_RUNNING allows several at once. Two runs of two threads each on 2 cores contend;
    with one thread each they train about 1.3x faster together than one after the other (the tiny
    model's ops are too small to keep two threads busy). Returns the number of threads."""
    import torch

    running = workspace.max_running()
    if running > 1:
        torch.set_num_threads(max(1, workspace.cores() // running))
    return torch.get_num_threads()


def execute(store: Store, run: dict, on_progress=None) -> str:
    """Train one claimed run to its end; record how it ended. Returns the final status."""
    run_id = run["id"]
    share_cores()
    cfg = config_from_dict(run["algo"], run["config"])
    from engine.algorithms.context import RunContext
    from engine.sampling.base import Cancelled

    ctx = RunContext(store, run_id, cfg, run_dir(run_id))
    ctx.on_progress = on_progress
    # Resume: forget what was logged after the last checkpoint that can be resumed from (or
    # everything, if there is none), so metrics continue without duplicates.
    point = ctx.resume_point()
    store.truncate_run(run_id, point[0] if point else -1)

    stop = threading.Event()

    def beat():
        # also turns a `reasonlab cancel` into ctx.stop_signal, which the long phases (sampling,
        # fine-tuning, evaluation) read between tokens and optimizer steps
        last = time.time()
        while not stop.wait(CANCEL_POLL_S):
            try:
                ctx.poll_cancel()
                if time.time() - last >= HEARTBEAT_S:
                    last = time.time()
                    store.heartbeat(run_id)
            except Exception:  # a locked store for 30 s: the next beat will do
                pass

    beating = threading.Thread(target=beat, name=f"reasonlab-heartbeat-{run_id}", daemon=True)
    beating.start()
    # SIGTERM (e.g. `kill PID`) stops the run like a cancel. The handler only sets a flag: it runs
    # on the main thread, which may be holding the store's lock at that moment.
    previous = signal.signal(signal.SIGTERM, lambda *_: ctx.stop_signal.set()) \
        if threading.current_thread() is threading.main_thread() else None
    fields: dict = {}
    try:
        ALGORITHMS[run["algo"]].train(ctx, cfg)
        cancelled = store.get_run(run_id)["cancel_requested"] or ctx.stop_signal.is_set()
        fields = {"status": "cancelled" if cancelled else "finished"}
        if not cancelled:
            fields.update(progress=1.0, phase="done")
    except Cancelled:  # stopped inside a long phase: like a cancel between steps, what was saved stays
        fields = {"status": "cancelled"}
    except ReasonlabError as e:
        fields = {"status": "failed", "error": str(e)}
    except KeyboardInterrupt:
        fields = {"status": "interrupted", "error": "interrupted by the user (Ctrl-C)"}
    except BaseException as e:  # a crash: keep the traceback for the dashboard
        fields = {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        # under a multi-process launch, rank 0's error (a collective that lost its peer) is most
        # likely the echo of another process's: record that one
        fields.update(process_failure(run_id) or {})
    finally:
        # Joined, not left to die with the interpreter: a daemon thread still inside a store read
        # when Python shuts down is torn down mid-call, and that aborted a finished run's process
        # ("terminate called without an active exception", exit -6) after its result was printed.
        stop.set()
        beating.join()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if fields.get("status") == "cancelled":
            fields["cancel_requested"] = 1
        store.update_run(run_id, finished_at=time.time(), heartbeat_at=time.time(), **fields)
    return fields["status"]


def run_replica(run: dict, rank: int) -> None:
    """Train rank 0's claimed run as another process of a multi-process launch: the same loop on
    this process's share, with no store (rank 0 records how the run ends). A crash here leaves its
    traceback in the run's directory, where rank 0 (or, if the launcher killed rank 0 first, the
    next `reconcile`) finds it and records it as the run's error."""
    from engine.algorithms.context import RunContext

    cfg = config_from_dict(run["algo"], run["config"])
    ctx = RunContext(None, run["id"], cfg, run_dir(run["id"]))
    try:
        ALGORITHMS[run["algo"]].train(ctx, cfg)
    except BaseException:
        path = run_dir(run["id"]) / f"process-{rank}.error"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc())
        raise


def process_errors(run_id: int) -> list[Path]:
    """Tracebacks the other processes of a multi-process launch left for this run, by rank."""
    return sorted(run_dir(run_id).glob("process-*.error"), key=lambda p: int(p.stem.split("-")[1]))


def process_failure(run_id: int) -> dict | None:
    """The run's error and traceback from the first process of its launch that crashed, if any."""
    for path in process_errors(run_id):
        tb = path.read_text()
        last = tb.strip().splitlines()[-1] if tb.strip() else "no traceback"
        return {"status": "failed", "error": f"process {path.stem.split('-')[1]} of the launch failed: {last}",
                "traceback": tb}
    return None


def cancel(store: Store, run_id: int) -> str:
    """Cancel a queued run at once, or ask a running one to stop at its next step."""
    run = _get(store, run_id)
    if run["status"] == "queued" or run["status"] == "interrupted":
        store.update_run(run_id, status="cancelled", cancel_requested=1, finished_at=time.time())
        return f"run {run_id} cancelled"
    if run["status"] == "running":
        store.update_run(run_id, cancel_requested=1)
        return f"run {run_id} will stop at its next step (it keeps what it has done)"
    raise ReasonlabError(f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")


def resume(store: Store, run_id: int, foreground: bool = False) -> None:
    """Queue an interrupted, cancelled or failed run again; it continues from its last checkpoint."""
    reconcile(store, spawn=False)
    run = _get(store, run_id)
    if run["algo"] not in ALGORITHMS:  # an imported run (or one of an algorithm since removed)
        raise ReasonlabError(f"run {run_id} is {_what(run)}: it has no training to resume")
    if run["status"] not in RESUMABLE:
        raise ReasonlabError(f"run {run_id} is {run['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
    config_from_dict(run["algo"], run["config"]).validate()  # e.g. its base was deleted since
    missing = missing_checkpoints(store, run_id)
    if missing:  # resuming would forget every result logged since the base and retrain from it
        raise ReasonlabError(f"run {run_id} cannot be resumed: its checkpoint{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing or damaged; "
                             "restore them, or start a new run")
    store.update_run(run_id, status="queued", cancel_requested=0, error=None, traceback=None, finished_at=None,
                     pid=os.getpid() if foreground else None)


def can_resume(run: dict) -> bool:
    """Whether `resume` would take the run: it stopped early, and trains (an imported run does not)."""
    return run["status"] in RESUMABLE and run["algo"] in ALGORITHMS


def _what(run: dict) -> str:
    if run["algo"] == IMPORTED:
        source = (run.get("config") or {}).get("source")
        return f"imported samples ({source})" if source else "imported samples"
    return f"a run of algorithm {run['algo']!r}, which this reasonlab does not have"


def missing_checkpoints(store: Store, run_id: int) -> list[str]:
    """The checkpoints a run saved (step 0, its base, aside: validate checks it) that are gone or
    no longer whole. A run that saved none yet has none missing: it resumes from its base."""
    from engine.model.validity import is_checkpoint

    return [f"{row['path']} (step {int(row['step'])})" for _, row in store.checkpoints(run_id).iterrows()
            if row["step"] > 0 and not is_checkpoint(row["path"])]


def runs_using(store: Store, path: str | Path) -> list[int]:
    """Runs whose config names `path` or a path inside it (as a base, a reward model, data)."""
    folder = Path(path).expanduser()
    return [r["id"] for r in run_rows(store) if _mentions(r["config"], folder)]


def check_unused(path: str | Path) -> None:
    """Refuse to replace a checkpoint directory that a stored run starts from or reranks with."""
    if not workspace.store_path().is_file():
        return
    with Store() as store:
        users = runs_using(store, path)
    if users:
        raise ReasonlabError(f"checkpoint {path} is used by run{'s' if len(users) > 1 else ''} "
                             f"{', '.join(map(str, users))} (as a base or reward model); refusing to overwrite it, "
                             "even with --overwrite: choose another --out")


def deletion_summary(store: Store, run_id: int) -> str:
    """What deleting a run removes, for the user to confirm: "run 3 (ei, finished): its 4
    checkpoints, 12,288 samples and 310 logged values, and its directory /…/runs/00003"."""
    run = _get(store, run_id)
    footprint = store.run_footprint(run_id)
    kept = (f" (the imported file {run['config']['source']} is kept)"
            if run["algo"] == IMPORTED and (run.get("config") or {}).get("source") else "")
    notes = store.notes(run_id=run_id)
    on_samples = int((notes["sample_id"].notna() & (notes["run_id"] == run_id)).sum())
    noted = (f", {on_samples} note{'s' * (on_samples != 1)} on its samples (notes on problems stay)"
             if on_samples else "")
    return (f"run {run_id} ({run['algo']}, {run['status']}): its {footprint['checkpoints']} checkpoints, "
            f"{footprint['samples']:,} samples{noted} and {footprint['metrics']:,} logged values, and its directory "
            f"{run_dir(run_id)}{kept}")


def delete(store: Store, run_id: int) -> str:
    """Delete a run that has stopped: its rows in the store (metrics, checkpoints, samples) and its
    directory (checkpoints, log). The checkpoint it started from is left alone. Refused, naming the
    reason, for a queued or running run and for a run whose checkpoints other runs start from."""
    reconcile(store, spawn=False)  # a run whose process died is interrupted, so deletable
    run = _get(store, run_id)
    if run["status"] in ("queued", "running"):
        raise ReasonlabError(f"run {run_id} is {run['status']}; cancel it first (reasonlab cancel {run_id}) "
                             "and delete it once it has stopped")
    folder = run_dir(run_id)
    users = [r["id"] for r in run_rows(store) if r["id"] != run_id and _mentions(r["config"], folder)]
    if users:
        names = ", ".join(map(str, users))
        raise ReasonlabError(f"run {run_id}'s checkpoints are used by run{'s' if len(users) > 1 else ''} {names} "
                             f"(as a base or reward model); delete {'those' if len(users) > 1 else 'that run'} first")
    footprint = store.run_footprint(run_id)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    if not store.delete_run(run_id):  # resumed or deleted by someone else since the checks above
        raise ReasonlabError(f"run {run_id} changed while it was being deleted; look at it again")
    n = footprint["checkpoints"]
    message = (f"run {run_id} deleted: {n} checkpoint{'' if n == 1 else 's'}, {footprint['samples']:,} samples, "
               f"{size / 2**20:.1f} MB of files")
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as e:
        message += f"; could not remove {folder} ({e.strerror}): delete it by hand"
    return message


def _mentions(value, folder: Path) -> bool:
    """Whether a config (nested dicts and lists of strings) names a path inside `folder`."""
    if isinstance(value, dict):
        return any(_mentions(v, folder) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_mentions(v, folder) for v in value)
    if isinstance(value, str) and value:
        try:
            return Path(value).expanduser().resolve().is_relative_to(folder.resolve())
        except (OSError, ValueError):
            return False
    return False


def _get(store: Store, run_id: int) -> dict:
    run = store.get_run(run_id)
    if run is None:
        raise ReasonlabError(f"no run {run_id} in {store.path}")
    return run


def eta_s(run: dict, now: float | None = None) -> float | None:
    """Seconds left, from the share done so far and the time it took (None until there is a share)."""
    if run["status"] != "running" or not run["started_at"] or not run["progress"]:
        return None
    elapsed = (now or time.time()) - run["started_at"]
    return elapsed * (1 - run["progress"]) / run["progress"]


if __name__ == "__main__":
    try:
        with Store() as s:
            worker(s)
    except ReasonlabError as e:
        print(f"reasonlab worker: error: {e}", file=sys.stderr)
        sys.exit(2)
