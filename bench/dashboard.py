"""Dashboard speed and memory on a store of about 1,000,000 samples.

Fabricates a realistic workspace (tests/dashboard_store.py, in a child process, so its memory is not
counted): an EI run (5 evaluated checkpoints), a PPO run (5 checkpoints, losses and KL logged), a
failed GRPO run, 1,000 test problems x (greedy + 96 samples) per checkpoint, plus training rollouts.
Texts come from the built-in task: valid solutions in several orders, arithmetic slips carried
through, solutions cut before the answer; later checkpoints slip less and vary less, as training does.

Then renders every page with Streamlit's AppTest in this process, once cold (caches empty) and
once warm, and prints per-page times; then times the full-text index's build and typical searches
(a word, a number, an expression, filters only; over one run and over all runs). Last line: JSON
{"slowest_page_s": (warm), "rss_mb": (peak resident memory of the rendering process),
"slowest_search_s", "search": {...}, ...}.
Usage: python bench/dashboard.py [--problems 1000] [--k 96] [--search-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from engine.store import Store  # noqa: E402
from tests.dashboard_store import fabricate_store  # noqa: E402

# (page, query parameters): each page as it opens, and Runs on the PPO run (losses, 80 logged steps)
PAGES = [("pages/home.py", {}), ("pages/launch.py", {}), ("pages/runs.py", {}), ("pages/runs.py", {"run": "2"}),
         ("pages/solutions.py", {}), ("pages/search.py", {"q": "12 + 5"}), ("pages/pass_at_k.py", {}),
         ("pages/diversity.py", {}), ("pages/compare.py", {})]


def render(pages: list[tuple[str, dict]]) -> dict:
    """Seconds per page: its first render (cold: the caches it needs are empty), then a rerun in
    the same session (warm: what every click and every live refresh costs)."""
    from streamlit.testing.v1 import AppTest

    def timed(at) -> float:
        start = time.perf_counter()
        at.run()
        if at.exception:
            raise SystemExit(f"{page}: {at.exception[0].message}")
        return round(time.perf_counter() - start, 3)

    times = {}
    for page, query in pages:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
        opening = timed(at)  # the app opens on Home
        if page != "pages/home.py":
            at.switch_page(page)
            at.query_params.update(query)
        row = {"cold": opening if page == "pages/home.py" else timed(at), "warm": timed(at)}
        name = Path(page).stem + "".join(f"?{k}={v}" for k, v in query.items())
        times[name] = row
        print(f"{name:16s} cold {row['cold']:6.2f}s  warm {row['warm']:6.3f}s", flush=True)
    return times


# Searches as a person types them (engine/search.py): name -> search() arguments, each timed over one
# run (the EI run, ~half the samples) and over all runs.
SEARCHES = {"word": {"text": "carry"}, "number": {"text": "17"}, "expression": {"text": "12 + 5"},
            "common number": {"text": "5"}, "symbols only": {"text": "####"},
            "filters only": {"correct": False, "reward_max": 0.5, "step_min": 1}}
WORDS = "I forgot to carry the one"  # the built-in task writes no words; a tenth of the samples get these


def search_figures(home: str | Path, runs: dict) -> dict:
    """Seconds to build the full-text index from scratch (what migration 5 does to an existing
    store), to give a tenth of the samples a line of words, then per search (best of 3)."""
    from engine.search import search

    with Store(Path(home) / "store.sqlite") as s:
        start = time.perf_counter()
        with s._write() as conn:
            conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('rebuild')")
        figures = {"fts_rebuild_s": round(time.perf_counter() - start, 2)}
        start = time.perf_counter()
        with s._write() as conn:  # through the update trigger, as a change of text goes
            conn.execute("UPDATE samples SET text = ? || char(10) || text WHERE id % 10 = 0", (WORDS,))
        figures["words_added_s"] = round(time.perf_counter() - start, 2)
        figures["index_mb"] = round(sum(r[0] for r in s._conn.execute(
            "SELECT SUM(pgsize) FROM dbstat WHERE name LIKE 'samples_fts%'")) / 2**20, 1) if _has_dbstat(s) else None
        for name, args in SEARCHES.items():
            for scope, run_id in (("one run", runs["ei"]), ("all runs", None)):
                best, found = float("inf"), None
                for _ in range(3):
                    start = time.perf_counter()
                    found = search(s, run_id=run_id, **args)
                    best = min(best, time.perf_counter() - start)
                figures[f"{name}, {scope}"] = {"s": round(best, 3), "matches": found.matches, "groups": found.groups_total}
                print(f"search {name + ', ' + scope:28s} {best:6.3f}s  {found.matches:>9,} samples "
                      f"{found.groups_total:>6,} groups", flush=True)
    return figures


def _has_dbstat(store) -> bool:
    try:
        store._conn.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except sqlite3.OperationalError:  # SQLite built without it
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--k", type=int, default=96)
    ap.add_argument("--search-only", action="store_true", help="time the searches, not the pages")
    ap.add_argument("--build", help=argparse.SUPPRESS)  # internal: fabricate into this directory
    args = ap.parse_args()
    if args.build:
        start = time.perf_counter()
        counts = fabricate_store(args.build, args.problems, args.k)
        print(f"store: {counts['samples']:,} samples in {time.perf_counter() - start:.0f}s "
              f"({os.path.getsize(Path(args.build) / 'store.sqlite') / 2**20:.0f} MB)", flush=True)
        (Path(args.build) / "runs.json").write_text(json.dumps(counts["runs"]))
        return

    with tempfile.TemporaryDirectory() as home:
        subprocess.run([sys.executable, __file__, "--build", home, "--problems", str(args.problems), "--k", str(args.k)],
                       check=True)
        os.environ["REASONLAB_HOME"] = home
        os.chdir(ROOT)
        times = {} if args.search_only else render(PAGES)
        searches = search_figures(home, json.loads((Path(home) / "runs.json").read_text()))
        with Store() as s:
            samples = s._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    timed = {k: v["s"] for k, v in searches.items() if isinstance(v, dict)}
    pages = {}
    if times:
        slowest = max(times, key=lambda p: times[p]["warm"])
        pages = {"slowest_page_s": times[slowest]["warm"], "slowest_page": slowest, "rss_mb": round(rss_mb),
                 "slowest_cold_s": max(t["cold"] for t in times.values())}
    print(json.dumps({**pages, "samples": samples, "slowest_search_s": max(timed.values()),
                      "slowest_search": max(timed, key=timed.get), "pages": times, "search": searches}))


if __name__ == "__main__":
    main()
