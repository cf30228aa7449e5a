"""`reasonlab` command line. Errors a user can fix print one line and exit 2, never a traceback.

    models.py   sft, eval
    runs.py     train, runs, cancel, delete, resume, findings, quickstart
    samples.py  export, import, notes, report, rescore, search

Each command is one `add_<command>(sub)` (its flags, and its handler as `run`) in its group's module.
"""

from __future__ import annotations

import argparse
import sys

from engine.cli import models, runs, samples
from engine.errors import ReasonlabError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reasonlab", description="RL fine-tuning of language models on math reasoning.")
    sub = p.add_subparsers(dest="command", required=True)
    models.add_sft(sub)
    models.add_eval(sub)
    runs.add_train(sub)
    runs.add_runs(sub)
    runs.add_cancel(sub)
    runs.add_delete(sub)
    runs.add_resume(sub)
    runs.add_findings(sub)
    samples.add_export(sub)
    samples.add_import(sub)
    samples.add_notes(sub)
    runs.add_quickstart(sub)
    samples.add_report(sub)
    samples.add_rescore(sub)
    samples.add_search(sub)
    return p


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

