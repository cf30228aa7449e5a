"""Deleting a big run while another trains: how long the delete takes and how long the training
run's writes wait for the store meanwhile (they give up after the store's 30 s busy timeout).

Fabricates a workspace like bench/dashboard.py's (an EI and a PPO run, each of 5 evaluated
checkpoints x 1,000 problems x (greedy + 96 samples), plus rollouts), then deletes the EI run as
`reasonlab delete` does (samples in chunks of DELETE_CHUNK, a transaction each) and the PPO run in
one transaction, each while a thread logs a metric every 50 ms as a training run does.
Last line: JSON {chunked_ / one_transaction_ samples, delete_s, longest_write_wait_s, and their wait ratio}.
Usage: python bench/delete.py [--problems 1000] [--k 96]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=1000)
    ap.add_argument("--k", type=int, default=96)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="reasonlab-bench-delete-")) / "home"
    os.environ["REASONLAB_HOME"] = str(home)
    from tests.dashboard_store import fabricate_store
    from engine.store import DELETE_CHUNK, Store

    t = time.time()
    ids = fabricate_store(home, problems=args.problems, k=args.k)
    print(f"fabricated {ids['samples']:,} samples in {time.time() - t:.0f} s", flush=True)
    with Store() as s:
        trainer = s.create_run("grpo", {"base": "b"}, status="running")
    results = {}
    # the EI run in chunks (as `reasonlab delete` does), the PPO run in one transaction, to compare
    for name, run_id, chunk in (("chunked", ids["runs"]["ei"], DELETE_CHUNK), ("one_transaction", ids["runs"]["ppo"], 10**12)):
        waits, stop = [], threading.Event()

        def train():  # a training run logging as it goes, through its own connection
            with Store() as s:
                step = 0
                while not stop.is_set():
                    started = time.perf_counter()
                    s.log_metrics(trainer, step, {"reward": 0.5})
                    waits.append(time.perf_counter() - started)
                    step += 1
                    stop.wait(0.05)

        thread = threading.Thread(target=train)
        thread.start()
        time.sleep(0.5)
        with Store() as s:
            samples = s.run_footprint(run_id)["samples"]
            t = time.perf_counter()
            assert s.delete_run(run_id, chunk=chunk)
            took = time.perf_counter() - t
        time.sleep(0.5)
        stop.set()
        thread.join()
        results[name] = {"samples": samples, "delete_s": round(took, 2), "longest_write_wait_s": round(max(waits), 3)}
        print(name, results[name], flush=True)
    print(json.dumps({**{f"{name}_{k}": v for name, r in results.items() for k, v in r.items()},
                      "wait_ratio_one_transaction_over_chunked": round(results["one_transaction"]["longest_write_wait_s"]
                                                                       / results["chunked"]["longest_write_wait_s"], 1)}))


if __name__ == "__main__":
    main()
