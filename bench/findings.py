"""The whole findings suite from the shipped base, as the Findings page's button runs it: every run
one after another (as the background worker takes them), each verdict computed as soon as the
runs it needs have finished.

Prints each run's wall time and, after each, which verdicts have appeared; then every verdict.
Targets (issue 15): the whole suite in 20 minutes or less on 2 CPU cores; a first verdict within 5.
Last line: {"size", "total_s", "first_verdict_s", "runs": {key: {"wall_s", "status", "samples"}},
            "verdicts": {F1: {"status", "text", "at_s"}}, "machine"}
Usage: python bench/findings.py [--size suite|smoke] [--base CKPT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="suite")
    p.add_argument("--base", help="default: the base that ships with reasonlab")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["REASONLAB_HOME"] = home
        from engine import findings, jobs
        from engine.findings import suite
        from engine.store import Store

        start = time.time()
        runs, verdicts = {}, {}
        with Store() as store:
            suite.queue_missing(store, args.size, args.base, spawn=False)
            by_id = {r["id"]: r["name"].split(": ", 1)[1] for r in jobs.run_rows(store)}
            while (run := store.claim_run(None, os.getpid())) is not None:
                key, began = by_id[run["id"]], time.time()
                status = jobs.execute(store, run)
                seen = store.metrics(run["id"], ["time/elapsed_s"])["samples_seen"].max()
                runs[key] = {"wall_s": round(time.time() - began, 1), "status": status,
                             "samples": None if seen != seen else int(seen)}
                if status != "finished":
                    runs[key]["error"] = store.get_run(run["id"])["error"]
                for card in findings.cards(store, args.size, args.base):
                    if card.verdict.status != "waiting" and card.finding.key not in verdicts:
                        verdicts[card.finding.key] = {"at_s": round(time.time() - start, 1)}
                print(f"{key}: {runs[key]} · verdicts so far: {sorted(verdicts)} at {time.time() - start:.0f} s",
                      file=sys.stderr, flush=True)
            total = time.time() - start
            for card in findings.cards(store, args.size, args.base):
                verdicts.setdefault(card.finding.key, {"at_s": None}).update(status=card.verdict.status,
                                                                             text=card.verdict.text)
                print(f"{card.finding.key} [{card.verdict.status}] {card.verdict.text}", file=sys.stderr)
    first = min((v["at_s"] for v in verdicts.values() if v["at_s"] is not None), default=None)
    print(json.dumps({"size": args.size, "total_s": round(total, 1), "first_verdict_s": first, "runs": runs,
                      "verdicts": verdicts, "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"}))


if __name__ == "__main__":
    main()
