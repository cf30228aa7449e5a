"""The whole findings suite from the shipped base, as the Findings page's button runs it: the
runs queued in the suite's order and trained by background workers, `lanes` at a time (the page
uses suite.lanes(): two on 2 cores, each run with one core), each verdict computed as soon as the
runs it needs have finished.

Prints each run's wall time as it ends, with the verdicts that have appeared; then every verdict.
Targets (issue 15): the whole suite in 20 minutes or less on 2 CPU cores; a first verdict within 5.
Last line: {"size", "lanes", "total_s", "first_verdict_s", "runs": {key: {"wall_s", "status",
            "samples", "ended_s"}}, "verdicts": {F1: {"status", "text", "at_s"}}, "machine"}
Usage: python bench/findings.py [--size suite|smoke] [--base CKPT] [--lanes N]
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


POLL_S = 2.0  # how often the bench reads the store (the runs train in other processes)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="suite")
    p.add_argument("--base", help="default: the base that ships with reasonlab")
    p.add_argument("--lanes", type=int, help="runs trained at once (default: the page's, suite.lanes())")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["REASONLAB_HOME"] = home
        from engine import findings, jobs
        from engine.findings import suite
        from engine.store import Store

        lanes = args.lanes or suite.lanes()
        start = time.time()
        runs, verdicts = {}, {}
        with Store() as store:
            suite.queue_missing(store, args.size, args.base, spawn=False)
            by_id = {r["id"]: r["name"].split(": ", 1)[1] for r in jobs.run_rows(store)}
            for _ in range(lanes):
                jobs.spawn_worker(max_running=lanes)
            while len(runs) < len(by_id):
                time.sleep(POLL_S)
                ended = [r for r in jobs.run_rows(store)
                         if r["id"] in by_id and by_id[r["id"]] not in runs and r["status"] not in ("queued", "running")]
                for run in ended:
                    key = by_id[run["id"]]
                    seen = store.metrics(run["id"], ["time/elapsed_s"])["samples_seen"].max()
                    runs[key] = {"wall_s": round(run["finished_at"] - run["started_at"], 1), "status": run["status"],
                                 "samples": None if seen != seen else int(seen),
                                 "ended_s": round(run["finished_at"] - start, 1)}
                    if run["status"] != "finished":
                        runs[key]["error"] = run["error"]
                if ended:
                    for card in findings.cards(store, args.size, args.base):
                        if card.verdict.status != "waiting" and card.finding.key not in verdicts:
                            verdicts[card.finding.key] = {"at_s": round(max(runs[by_id[r["id"]]]["ended_s"]
                                                                            for r in ended), 1)}
                    for run in ended:
                        key = by_id[run["id"]]
                        print(f"{key}: {runs[key]} · verdicts so far: {sorted(verdicts)}", file=sys.stderr, flush=True)
            total = max(r["ended_s"] for r in runs.values())
            for card in findings.cards(store, args.size, args.base):
                verdicts.setdefault(card.finding.key, {"at_s": None}).update(status=card.verdict.status,
                                                                             text=card.verdict.text)
                print(f"{card.finding.key} [{card.verdict.status}] {card.verdict.text}", file=sys.stderr)
    first = min((v["at_s"] for v in verdicts.values() if v["at_s"] is not None), default=None)
    print(json.dumps({"size": args.size, "lanes": lanes, "total_s": round(total, 1), "first_verdict_s": first,
                      "runs": runs, "verdicts": verdicts,
                      "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}"}))


if __name__ == "__main__":
    main()
