"""The commands that read and move stored samples: export, import, notes, report, rescore and search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.errors import ReasonlabError


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


def add_export(sub) -> None:
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


def add_import(sub) -> None:
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


def add_notes(sub) -> None:
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


def add_report(sub) -> None:
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


def add_rescore(sub) -> None:
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


def add_search(sub) -> None:
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
