"""The commands that make and manage training runs: train, runs, cancel, delete, resume, findings
and quickstart. A run is queued in the store and trained in a process of its own (engine/jobs.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.algorithms import ALGORITHMS
from engine.config import SFTConfig
from engine.errors import ReasonlabError
from engine.tasks.flags import add_task_flags, task_sets


def _train(args) -> None:
    from engine import jobs
    from engine.config import make_config
    from engine.store import Store

    sets = task_sets(args) + (args.set or [])  # --set, later, wins
    cfg = make_config(args.algo, base=args.base, sets=sets)  # refuses bad fields before any process
    acc = _launched(cfg.device, args.detach, cfg)
    if acc is not None and not acc.is_main_process:
        return _replica(acc)
    with Store() as store:
        run_id = jobs.submit(store, cfg, name=args.name, foreground=not args.detach)
        print(f"run {run_id}", flush=True)
        if args.detach:
            jobs.spawn_worker()
            return
        _follow(store, run_id, quiet=args.quiet, acc=acc)


def _launched(device: str, detach: bool, cfg=None):
    """The Accelerator of a multi-process launch (accelerate launch, torchrun), else None."""
    from engine import distributed

    if distributed.launched_world_size() == 1:
        return None
    if detach:
        raise ReasonlabError("--detach cannot be used under a multi-process launch (accelerate launch, torchrun): "
                             "its processes train the run together in the foreground; leave out --detach")
    if cfg is not None:  # before the run is queued (resume checks when the run starts)
        distributed.check_config(cfg, distributed.launched_world_size())
    acc = distributed.accelerator(device)
    return acc if acc.num_processes > 1 else None


def _replica(acc) -> None:
    """Another process of a multi-process launch: train the run rank 0 claims, print nothing."""
    from engine import distributed, jobs

    run = distributed.broadcast(None, acc)
    if run is not None:  # None: rank 0's run was cancelled while it waited in the queue
        jobs.run_replica(run, acc.process_index)


def _follow(store, run_id: int, quiet: bool, acc=None) -> None:
    """Train a claimed-in-this-process run with a progress bar; print its final summary as JSON."""
    from tqdm.auto import tqdm

    from engine import distributed, jobs

    bar = tqdm(total=1000, desc=f"run {run_id}", disable=quiet, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def on_progress(fields, phase):
        if "progress" in fields:
            bar.n = int(1000 * fields["progress"])
        bar.set_postfix_str(phase)

    # rank 0 of a multi-process launch: the other processes train the run it claims
    announce = (lambda run: distributed.broadcast(run, acc)) if acc is not None else None
    run = jobs.run_foreground(store, run_id, on_progress=on_progress, announce=announce)
    bar.close()
    print(json.dumps(_run_summary(store, run)))
    if run["status"] == "failed":
        raise ReasonlabError(f"run {run_id} failed: {run['error']}")


def _run_summary(store, run: dict) -> dict:
    from engine import jobs

    checkpoints = store.checkpoints(run["id"])
    return {"id": run["id"], "name": run["name"], "algo": run["algo"], "status": run["status"],
            "step": run["step"], "total": run["total"], "progress": run["progress"], "phase": run["phase"],
            "pid": run["pid"], "eta_s": jobs.eta_s(run), "error": run["error"],
            "checkpoints": [{"step": int(c["step"]), "path": c["path"], "metrics": c["metrics"]}
                            for _, c in checkpoints.iterrows()]}


def _runs(args) -> None:
    from engine import jobs
    from engine.store import Store

    with Store() as store:
        jobs.reconcile(store)
        rows = [_run_summary(store, r) for r in reversed(jobs.run_rows(store))]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'id':>4}  {'algo':<6} {'status':<12} {'progress':>9}  {'maj@1':>6}  phase")
    for r in rows:
        last = next((c["metrics"] for c in reversed(r["checkpoints"]) if c["metrics"]), None) or {}
        maj = f"{last['maj@1']:.3f}" if "maj@1" in last else "-"
        print(f"{r['id']:>4}  {r['algo']:<6} {r['status']:<12} {r['step']:>4}/{r['total'] or '?':<4}  {maj:>6}  "
              f"{r['error'] or r['phase'] or ''}")


def _cancel(args) -> None:
    from engine import jobs
    from engine.store import Store

    with Store() as store:
        print(jobs.cancel(store, args.run_id))


def _delete(args) -> None:
    from engine import jobs
    from engine.store import Store

    if not args.yes and not sys.stdin.isatty():
        raise ReasonlabError("delete asks before it deletes; pass --yes to delete without asking")
    with Store() as store:
        for run_id in args.run_ids:
            if args.yes or input(f"delete {jobs.deletion_summary(store, run_id)}? [y/N] ").strip().lower() in ("y", "yes"):
                print(jobs.delete(store, run_id))
            else:
                print(f"run {run_id} kept")


def _resume(args) -> None:
    import torch

    from engine import jobs
    from engine.store import Store

    # rank 0 alone reads the store; the run's device must match the launch's (RunContext checks)
    acc = _launched("cuda" if torch.cuda.is_available() else "cpu", args.detach)
    if acc is not None and not acc.is_main_process:
        return _replica(acc)
    with Store() as store:
        jobs.resume(store, args.run_id, foreground=not args.detach)
        print(f"run {args.run_id}", flush=True)
        if args.detach:
            jobs.spawn_worker()
            return
        _follow(store, args.run_id, quiet=args.quiet, acc=acc)


def _findings(args) -> None:
    from engine import findings, jobs
    from engine.store import Store

    with Store() as store:
        jobs.reconcile(store, spawn=False)
        queued = findings.suite.queue_missing(store, args.size, args.base) if args.queue else []
        cards = findings.cards(store, args.size, args.base, orm=args.orm or False)
    if args.json:
        print(json.dumps({**findings.as_json(cards), "size": args.size, "queued": queued}))
        return
    for line in queued:
        print(line)
    for card in cards:
        runs = ", ".join(f"{key} " + ("missing" if r is None else f"run {r.run_id} {r.status}")
                         for key, r in card.runs.items())
        print(f"\n{card.finding.key} {card.finding.title} [{card.verdict.status}]\n  {card.finding.claim}"
              f"\n  runs: {runs}\n  {card.verdict.text}")


def _quickstart(args) -> None:
    """The first thing to run: expert iteration on the shipped weak base (--build-base: on one
    built here first, if absent)."""
    from engine.algorithms.sft import train_sft
    from engine.assets import shipped_base
    from engine.quickstart import QUICKSTART_EI, base_built, base_path
    from engine.workspace import ensure_home

    ensure_home()
    if args.build_base:
        base = base_path()
        if not base_built(base):  # absent, or a build cut short: (re)built, replacing it atomically
            print(f"building the weak base model in {base} (5 to 10 minutes on 2 CPU cores)",
                  file=sys.stderr, flush=True)
            train_sft(SFTConfig(), base, progress=not args.quiet, overwrite=True)
    else:
        base = shipped_base()
        print(f"starting from the weak base model that ships with reasonlab (copied to {base}; "
              "--build-base builds your own)", file=sys.stderr, flush=True)
    args.algo, args.base, args.name = "ei", str(base), "quickstart"
    args.set = [*QUICKSTART_EI, *(args.set or [])]
    _train(args)


def _run_options(p: argparse.ArgumentParser, name: bool = True) -> None:
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a config field (repeatable); e.g. --set k=32 --set rounds=2")
    if name:
        p.add_argument("--name", help="a label for the run")
    p.add_argument("--detach", action="store_true", help="queue it in the background and return at once")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_train(sub) -> None:
    t = sub.add_parser("train", help="train with ei, ppo, rcrl, grpo or sft (continued SFT on the task's reference "
                                     "solutions) from a base checkpoint; writes to the store")
    t.add_argument("--algo", required=True, choices=list(ALGORITHMS))
    t.add_argument("--base", required=True, help="checkpoint to start from (e.g. from `reasonlab sft`, or any local "
                                                  "HF causal LM directory)")
    add_task_flags(t, default_task=None)
    t.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="run Python code shipped with the base (same as --set trust_remote_code=true)")
    _run_options(t)
    t.set_defaults(run=_train)


def add_runs(sub) -> None:
    r = sub.add_parser("runs", help="list runs: status, progress, checkpoints")
    r.add_argument("--json", action="store_true", help="print one JSON list")
    r.set_defaults(run=_runs)


def add_cancel(sub) -> None:
    c = sub.add_parser("cancel", help="stop a run at its next step (it keeps what it has done)")
    c.add_argument("run_id", type=int)
    c.set_defaults(run=_cancel)


def add_delete(sub) -> None:
    d = sub.add_parser("delete", help="delete stopped runs: their metrics, samples, checkpoints and files")
    d.add_argument("run_ids", type=int, nargs="+", metavar="run_id")
    d.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    d.set_defaults(run=_delete)


def add_resume(sub) -> None:
    u = sub.add_parser("resume", help="continue an interrupted, cancelled or failed run from its last checkpoint")
    u.add_argument("run_id", type=int)
    u.add_argument("--detach", action="store_true", help="queue it in the background and return at once")
    u.add_argument("--quiet", action="store_true", help="no progress bar")
    u.set_defaults(run=_resume)


def add_findings(sub) -> None:
    f = sub.add_parser("findings", help="the paper's findings and newer ones, judged from your runs of the suite")
    f.add_argument("--run", dest="queue", action="store_true", help="queue the suite's runs that are missing (reusing finished ones)")
    f.add_argument("--json", action="store_true", help="print one JSON object")
    f.add_argument("--size", default="suite", choices=["suite", "smoke"],
                   help="suite: the 2-CPU-core experiment; smoke: seconds, checks the pipeline, learns nothing")
    f.add_argument("--base", type=Path, help="start every run from this checkpoint (default: the shipped base)")
    f.add_argument("--orm", nargs="?", const=True, metavar="DIR",
                   help="rerank@K in the results table (F5) by an ORM: the one the suite's reward=orm run trained, "
                        "or DIR (default: by log-probability; scoring takes a minute or so per run, then is cached)")
    f.set_defaults(run=_findings)


def add_quickstart(sub) -> None:
    q = sub.add_parser("quickstart", help="run expert iteration on the weak base model that ships with reasonlab")
    q.add_argument("--build-base", action="store_true",
                   help="first build the base model here (5 to 10 minutes on 2 CPU cores; reused once built)")
    _run_options(q, name=False)
    q.set_defaults(run=_quickstart)
