"""`reasonlab` command line. Errors a user can fix print one line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from engine.algorithms import ALGORITHMS
from engine.config import SAMPLERS, EvalConfig, SFTConfig, field_docs
from engine.errors import ReasonlabError
from engine.model.checkpoint import DTYPES
from engine.model.prompts import PROMPT_FORMATS
from engine.tasks.flags import add_task_flags, eval_task, task_sets, task_spec

SFT_FLAGS = ("steps", "batch_size", "lr", "carry_slips", "stops_short")  # SFTConfig fields `reasonlab sft` sets
EVAL_FLAGS = ("split", "k", "limit", "temperature", "top_p", "max_new_tokens", "seed")  # EvalConfig's, `eval`


def _sft(args) -> None:
    from engine import jobs
    from engine.algorithms.sft import train_sft
    from engine.model.checkpoint import check_writable
    from engine.model.presets import PRESETS
    from engine.workspace import checkpoints_dir, ensure_home

    if args.preset not in PRESETS:  # before anything slow
        raise ReasonlabError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = SFTConfig(task=task_spec(args), preset=args.preset, seed=args.seed)
    if cfg.task.name != "multistep":  # the imperfect teacher's habits belong to the built-in task
        cfg.carry_slips = cfg.stops_short = 0.0
    for field in SFT_FLAGS:
        if getattr(args, field) is not None:
            setattr(cfg, field, getattr(args, field))
    cfg.validate()
    if args.out:
        out = Path(args.out).expanduser().resolve()  # printed and stored: the same from any directory
    else:
        out = checkpoints_dir() / f"base-{cfg.preset}"
        ensure_home()
    check_writable(out)
    if args.overwrite:  # never a checkpoint a stored run starts from or reranks with
        jobs.check_unused(out)
    summary = train_sft(cfg, out, progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps({"checkpoint": str(out), **summary}))


def _eval(args) -> None:
    from engine.evaluation.evaluate import evaluate
    from engine.limits import check_eval_flags
    from engine.model.checkpoint import check_checkpoint, load_checkpoint, load_tokenizer, read_meta, torch_dtype
    from engine.model.prompts import resolve_format

    check_eval_flags(args.batch_size, args.max_new_tokens, args.vllm_memory, args.device)  # what EvalConfig does not hold
    args.checkpoint = args.checkpoint.expanduser().resolve()
    meta = read_meta(args.checkpoint)
    cfg = EvalConfig(task=eval_task(args, meta), **{name: getattr(args, name) for name in EVAL_FLAGS})
    cfg.validate()  # before the slow imports and the model load: reads the data files
    check_checkpoint(args.checkpoint)  # a truncated or half-written one, before the slow imports
    if args.orm is not None:
        args.orm = _orm_dir(args.orm)
    if args.sampler == "vllm":  # vLLM loads the weights itself; only the tokenizer is needed here
        from engine.sampling.vllm_sampler import VLLMSampler, vllm_device

        tokenizer = load_tokenizer(args.checkpoint, trust_remote_code=args.trust_remote_code)
        device = vllm_device() or args.device
        memory = args.vllm_memory or (0.3 if device == "cpu" else 0.9)  # RAM is shared with the rest
        dtype = str(torch_dtype(args.dtype, device)).removeprefix("torch.")  # auto as the torch sampler takes it
        sampler = VLLMSampler(args.checkpoint, tokenizer, dtype=dtype, gpu_memory=memory,
                              seed=args.seed, trust_remote_code=args.trust_remote_code)
    else:
        from engine.sampling.torch_sampler import TorchSampler

        model, tokenizer = load_checkpoint(args.checkpoint, device=args.device, dtype=args.dtype,
                                           trust_remote_code=args.trust_remote_code)
        sampler = TorchSampler(model, tokenizer, batch_size=args.batch_size)
    cfg.prompt_suffix = meta.get("prompt_suffix", "")  # RCRL: condition on <|good|>
    cfg.prompt_format = resolve_format(args.prompt_format, tokenizer, meta)
    orm = None
    if args.orm is not None:  # loaded before sampling, so that a bad one fails at once
        from engine.algorithms.orm import OutcomeRewardModel

        orm = OutcomeRewardModel.load(args.orm, device=args.device, dtype=args.dtype,
                                      trust_remote_code=args.trust_remote_code)
    metrics, _ = evaluate(sampler, cfg, orm=orm)
    if metrics["skipped_lines"]:
        print(f"reasonlab: skipped {metrics['skipped_lines']} malformed lines of the data files", file=sys.stderr)
    named = {"orm": str(args.orm)} if args.orm is not None else {}
    metrics = {"checkpoint": str(args.checkpoint), **named, **metrics}
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>16}  {value:.4f}" if isinstance(value, float) else f"{key:>16}  {value}")


def _orm_dir(path: Path) -> Path:
    """eval --orm: the absolute path, if it is a whole outcome reward model (cheap checks, no torch)."""
    from engine.model.validity import check_orm

    path = path.expanduser().resolve()
    try:
        return check_orm(path)
    except ReasonlabError as e:
        raise ReasonlabError(f"eval: --orm {path}: {e}") from None


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


def _report(args) -> None:
    from engine import jobs
    from engine.report import write_report
    from engine.store import Store

    with Store() as store:
        jobs.reconcile(store, spawn=False)  # a run whose process died shows as interrupted
        path = write_report(store, args.run_ids, args.out, problems=args.problem, replace=args.force)
    print(f"{path}  {path.stat().st_size / 2**20:.1f} MB")


def _export(args) -> None:
    from engine.export import export_run
    from engine.store import Store

    with Store() as store:
        rows, out = export_run(store, args.run_id, args.what, args.out, fmt=args.format, force=args.force)
    print(f"wrote {rows:,} rows ({args.what} of run {args.run_id}) to {out}")


def _import(args) -> None:
    from engine.imports import import_file
    from engine.store import Store

    with Store() as store:
        made = import_file(store, args.file, format=args.format, task=args.task, split=args.split, name=args.name)
    print(f"run {made.run_id}")
    print("\n".join(made.summary()))


def _notes(args) -> None:
    from engine.store import Store

    with Store() as store:
        if args.action == "add":
            sample = (None if args.sample is None else
                      store.sample_id(args.run_id, args.problem_id, args.sample, args.step, args.kind))
            note = store.add_note(args.text, args.tag, run_id=args.run_id, problem_id=args.problem_id, sample_id=sample)
            print(f"note {note}")
            return
        if args.action == "delete":
            store.delete_note(args.note_id)
            print(f"note {args.note_id} deleted")
            return
        table = store.notes(run_id=args.in_run, problem_ids=args.problem, contains=args.contains)
    if args.json:
        print(table.to_json(orient="records"))
        return
    for _, n in table.iterrows():
        on = f"sample {int(n['sample_id'])}" if n["sample_id"] == n["sample_id"] and n["sample_id"] is not None else "problem"
        print(f"{n['id']:>4}  {n['problem_id']} ({on})  [{n['tag'] or ''}]  {n['text']}")


def _rescore(args) -> None:
    from engine import rescore
    from engine.store import Store

    rescore.check_scorer(args.scorer)  # before opening anything
    with Store() as store:
        bar = None
        if not args.json and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=0, unit="samples", desc=f"re-scoring run {args.run_id}", file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            rescoring_id = rescore.rescore(store, args.run_id, args.scorer, progress=progress if bar else None)
        finally:
            if bar is not None:
                bar.close()
        row = rescore.rescoring(store, rescoring_id)
        table = rescore.metrics_before_after(store, args.run_id, rescoring_id)
        changes = rescore.verdict_changes(store, rescoring_id)
    summary = {"rescoring": rescoring_id, "run": args.run_id, "scorer": args.scorer, "samples": int(row["samples"]),
               "unscored": int(row["unscored"])}
    if args.json:  # via pandas' JSON: NaN (a metric one scoring lacks) becomes null
        print(json.dumps({**summary, "changes": json.loads(changes.to_json(orient="records")),
                          "metrics": json.loads(table.to_json(orient="records"))}))
        return
    print(f"re-scoring {rescoring_id} of run {args.run_id} ({args.scorer}): {summary['samples']:,} samples judged"
          + (f", {summary['unscored']:,} left unscored (their problems could not be rebuilt)" if summary["unscored"] else ""))
    for kind, n, lost, gained in changes.itertuples(index=False):
        print(f"  {kind}: {n:,} samples, {lost:,} right -> wrong, {gained:,} wrong -> right")
    print(table.to_string(index=False, float_format="{:.3f}".format) if not table.empty else
          "no evaluated checkpoint among the judged samples: no metrics to compare")


def _search(args) -> None:
    from engine.search import search
    from engine.store import Store

    steps = (args.step, args.step) if args.step is not None else (args.min_step, args.max_step)
    if args.step is not None and (args.min_step is not None or args.max_step is not None):
        raise ReasonlabError("search: give --step, or --min-step/--max-step, not both")
    with Store() as store:
        result = search(store, args.text, run_id=args.run_id, kind=args.kind, answer=args.answer, correct=args.correct,
                        reward_min=args.min_reward, reward_max=args.max_reward, length_min=args.min_length,
                        length_max=args.max_length, step_min=steps[0], step_max=steps[1], limit=args.limit)
    print(json.dumps(result.as_json()) if args.json else "\n".join(result.lines()))


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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reasonlab", description="RL fine-tuning of language models on math reasoning.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sft", help="train a base model from scratch on a task's reference solutions")
    s.add_argument("--preset", default=SFTConfig.preset, help=field_docs(SFTConfig)["preset"])
    s.add_argument("--out", help="checkpoint directory (default: $REASONLAB_HOME/checkpoints/base-PRESET)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoint already in --out (never one a stored run uses)")
    add_task_flags(s, default_task=None)
    _config_flags(s, SFTConfig, SFT_FLAGS, defaults=False)  # a task other than multistep has no teacher habits
    _config_flags(s, SFTConfig, ("seed",))
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(run=_sft)

    e = sub.add_parser("eval", help="maj@1 (greedy), pass@k and maj@k (with --orm, rerank@k) of a checkpoint")
    e.add_argument("checkpoint", type=Path)
    add_task_flags(e, default_task=None)
    _config_flags(e, EvalConfig, EVAL_FLAGS)
    e.add_argument("--batch-size", type=int, default=512, help="rows decoded together (torch sampler)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--sampler", default="torch", choices=SAMPLERS,
                   help="vllm: sample with vLLM (pip install 'reasonlab[gpu]' on a CUDA GPU, or vLLM's CPU build)")
    e.add_argument("--vllm-memory", type=float,
                   help="share of the GPU's memory vLLM may take (default 0.9; of RAM with vLLM's CPU build: 0.3)")
    e.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="auto: bfloat16 on a CUDA device that supports it, else float32")
    e.add_argument("--prompt-format", default="auto", choices=PROMPT_FORMATS,
                   help="auto: the checkpoint's own, else chat with a chat template, else plain (reasonlab models) "
                        "or few_shot")
    e.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the checkpoint")
    e.add_argument("--orm", type=Path, metavar="DIR",
                   help="an outcome reward model (e.g. runs/NNNNN/orm of a reward=orm run): adds rerank@k, the "
                        "answer of the sample it scores highest among k")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(run=_eval)

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

    r = sub.add_parser("runs", help="list runs: status, progress, checkpoints")
    r.add_argument("--json", action="store_true", help="print one JSON list")
    r.set_defaults(run=_runs)

    c = sub.add_parser("cancel", help="stop a run at its next step (it keeps what it has done)")
    c.add_argument("run_id", type=int)
    c.set_defaults(run=_cancel)

    d = sub.add_parser("delete", help="delete stopped runs: their metrics, samples, checkpoints and files")
    d.add_argument("run_ids", type=int, nargs="+", metavar="run_id")
    d.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    d.set_defaults(run=_delete)

    u = sub.add_parser("resume", help="continue an interrupted, cancelled or failed run from its last checkpoint")
    u.add_argument("run_id", type=int)
    u.add_argument("--detach", action="store_true", help="queue it in the background and return at once")
    u.add_argument("--quiet", action="store_true", help="no progress bar")
    u.set_defaults(run=_resume)

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

    x = sub.add_parser("export", help="write a run's samples, rollouts, metrics, curves or checkpoints to a "
                                      "parquet, csv or jsonl file")
    x.add_argument("run_id", type=int)
    x.add_argument("--what", default="samples", metavar="WHAT",
                   help="samples (evaluation, the default), rollouts (training), metrics, curves (pass@k / maj@k "
                        "with bands), checkpoints or notes (written in the run or on its problems)")
    x.add_argument("--format", metavar="FORMAT", help="parquet, csv or jsonl (default: from --out's extension)")
    x.add_argument("--out", required=True, type=Path, help="the file to write, e.g. run-3-samples.parquet")
    x.add_argument("--force", action="store_true", help="replace --out if it exists")
    x.set_defaults(run=_export)

    i = sub.add_parser("import", help="load samples made elsewhere (lm-eval --log_samples, or plain JSONL) as an "
                                      "evaluation-only run, for every analysis page")
    i.add_argument("file", type=Path, help="lm-eval's samples_<task>_<date>.jsonl, or JSONL of {problem_id or question, "
                                           "completion, answer?, correct?, greedy?}")
    i.add_argument("--format", choices=["lm-eval", "jsonl"], help="default: detected from the first line")
    i.add_argument("--task", choices=["gsm8k", "jsonl", "multistep"],
                   help="scores samples that carry no `correct` (default: gsm8k for lm-eval; for JSONL, multistep "
                        "when every line names a built-in problem id, else jsonl)")
    i.add_argument("--split", help="the split the problems are from (default: test; multistep: the ids' own)")
    i.add_argument("--name", help="a label for the run (default: the file's name)")
    i.set_defaults(run=_import)

    n = sub.add_parser("notes", help="tag or annotate a problem or a sample; list and delete notes")
    actions = n.add_subparsers(dest="action", required=True)
    na = actions.add_parser("add", help="a note on a problem (of a run's samples), or on one of its samples")
    na.add_argument("run_id", type=int)
    na.add_argument("problem_id", help="e.g. test-17")
    na.add_argument("text", nargs="?", default="", help="the note (optional with --tag)")
    na.add_argument("--tag", help='a short label, e.g. "good example for class"')
    na.add_argument("--sample", type=int, metavar="IDX", help="on this sample of the problem (-1: the greedy one)")
    na.add_argument("--step", type=int, help="the sample's step (default: the run's last)")
    na.add_argument("--kind", default="eval", choices=["eval", "rollout", "eval_deep"], help="the sample's kind")
    nl = actions.add_parser("list", help="notes, oldest first")
    nl.add_argument("--run", dest="in_run", type=int, help="those written in this run or on its problems")
    nl.add_argument("--problem", action="append", metavar="ID", help="on this problem (repeatable)")
    nl.add_argument("--contains", help="text or tag containing this (any case)")
    nl.add_argument("--json", action="store_true", help="print one JSON list")
    nd = actions.add_parser("delete", help="delete a note")
    nd.add_argument("note_id", type=int)
    for action in (na, nl, nd):
        action.set_defaults(run=_notes)

    q = sub.add_parser("quickstart", help="run expert iteration on the weak base model that ships with reasonlab")
    q.add_argument("--build-base", action="store_true",
                   help="first build the base model here (5 to 10 minutes on 2 CPU cores; reused once built)")
    _run_options(q, name=False)
    q.set_defaults(run=_quickstart)

    o = sub.add_parser("report", help="one self-contained HTML file of runs to share (no server needed): config, "
                                      "curves, findings figures, solution trees and samples")
    o.add_argument("run_ids", type=int, nargs="+", metavar="run_id",
                   help="the runs, each in a section of its own (`reasonlab runs` lists them)")
    o.add_argument("--out", required=True, type=Path, help="the HTML file to write, e.g. report.html")
    o.add_argument("--problem", action="append", metavar="ID",
                   help="a problem to show in each run, e.g. test-17 (repeatable; default: the 3 with the most "
                        "distinct answers at each run's last checkpoint)")
    o.add_argument("--force", action="store_true", help="replace --out if it exists")
    o.set_defaults(run=_report)

    rs = sub.add_parser("rescore", help="score a run's stored samples again with another answer extraction or the "
                                        "task's current code, without resampling; prints metrics before and after")
    rs.add_argument("run_id", type=int)
    rs.add_argument("--scorer", required=True, metavar="|".join(["strict", "flexible", "math-verify", "task"]),
                    help="strict: only a `#### N` line counts; flexible: the last number; math-verify: equivalent "
                         "answers (1/2 = 0.5); task: the run's task as its code is now. The stored scores are kept; "
                         "each re-scoring is stored beside them")
    rs.add_argument("--json", action="store_true", help="one JSON object: the re-scoring, its changed verdicts, "
                                                        "the metrics before and after")
    rs.set_defaults(run=_rescore)

    se = sub.add_parser("search", help="search every sample (text, answer, correctness, reward, length, step), "
                                       "grouped by problem; each group names its view on the Solutions page")
    se.add_argument("text", nargs="?", help="text the solution contains, as written: whole words and numbers (any "
                                            "case), symbols as typed (12+5 finds '12 + 5'); no operators")
    se.add_argument("--run", dest="run_id", type=int, metavar="ID", help="only this run (default: every run)")
    se.add_argument("--kind", choices=["eval", "rollout", "eval_deep"], help="evaluation samples or training rollouts")
    se.add_argument("--answer", help="the extracted final answer, exactly")
    right = se.add_mutually_exclusive_group()
    right.add_argument("--correct", dest="correct", action="store_const", const=True, help="only correct samples")
    right.add_argument("--wrong", dest="correct", action="store_const", const=False, help="only wrong (or unscored) ones")
    se.add_argument("--min-reward", type=float)
    se.add_argument("--max-reward", type=float)
    se.add_argument("--min-length", type=int, help="tokens")
    se.add_argument("--max-length", type=int, help="tokens")
    se.add_argument("--step", type=int, help="only this step (checkpoint step for eval, training step for rollouts)")
    se.add_argument("--min-step", type=int)
    se.add_argument("--max-step", type=int)
    se.add_argument("--limit", type=int, default=100, help="groups to print, most matches first (default 100)")
    se.add_argument("--json", action="store_true", help="print one JSON object")
    se.set_defaults(run=_search)
    return p


def _config_flags(p: argparse.ArgumentParser, cls, names: tuple[str, ...], defaults: bool = True) -> None:
    """One flag per field of a config dataclass (`-k` for k, else --field-name): its type, default
    and help from the dataclass (`defaults=False`: None when not given, the default only in the help)."""
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        kind = next(t for t in typing.get_args(hints[name]) or (hints[name],) if t is not type(None))
        default = fields[name].default
        shown = "" if default is None else f" (default {default})"
        p.add_argument("-k" if name == "k" else f"--{name.replace('_', '-')}", type=kind,
                       default=default if defaults else None, help=docs[name].replace("%", "%%") + shown)


def _run_options(p: argparse.ArgumentParser, name: bool = True) -> None:
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a config field (repeatable); e.g. --set k=32 --set rounds=2")
    if name:
        p.add_argument("--name", help="a label for the run")
    p.add_argument("--detach", action="store_true", help="queue it in the background and return at once")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except ReasonlabError as e:
        print(f"reasonlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reasonlab: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
