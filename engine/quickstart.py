"""The dashboard's one-click start: queue expert iteration on the weak base model that ships with
reasonlab (engine/assets), or on one built here first (`build_base`: the SFT with its loss and
probes on Home), in a background process that outlives the browser tab that started it.

    start()   spawns `python -m engine.quickstart` and returns at once
    status()  what it is doing, from $REASONLAB_HOME/quickstart.json:
              {"phase": "starting" | "building" | "launching" | "launched" | "failed",
               "base_source": "shipped" | "built", "base": the base's path (from launching on),
               "step": 120, "steps": 2000, "run_id": 1, "error": None, "pid": ..., "started_at": ...,
               "eta_s": 410.0 (building: seconds left at the pace so far, else None),
               "loss": [[20, 2.31], ...] (building: the smoothed SFT loss at steps),
               "probes": [{"step": 100, "question", "completion", "answer", "correct"}, ...]
                         (building: the model's greedy solution to one held-out problem so far)}

The EI run it queues is an ordinary run (`reasonlab quickstart` runs the same recipe in the
terminal): the Runs page follows it like any other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine import jobs, workspace
from engine.errors import ReasonlabError
from engine.processes import pid_alive

# Expert iteration sized to show a clear gain in a few minutes on 2 CPU cores (bench/learning.py):
# wide rounds (many problems, K=8), continuing from the last policy at a gentle learning rate.
QUICKSTART_EI = ["rounds=3", "k=8", "problems_per_round=1024", "restart=false", "dedup=steps",
                 "sft_epochs=3", "lr=3e-4"]
STATUS_FILE = "quickstart.json"
LOSS_POINTS = 100  # the base's smoothed loss, kept this many times over its training
PROBES = 20  # its greedy solution to one held-out problem, this many times (a second or so in all)
BASE_NAME = "base-tiny"  # where `build_base` builds the base (and reuses it); else the shipped one
WORKING = ("starting", "building", "launching")


def status_path() -> Path:
    return workspace.home() / STATUS_FILE


def base_path() -> Path:
    return workspace.checkpoints_dir() / BASE_NAME


def base_built(base: Path) -> bool:
    """Whether the quickstart's base is a whole checkpoint. One that is not (a build cut short by
    an older reasonlab, a damaged file) is rebuilt and replaces it atomically: the workspace's
    checkpoints directory is reasonlab's own; a directory there that holds no model is refused."""
    from engine.model.checkpoint import recover
    from engine.model.validity import is_checkpoint

    recover(base)
    return is_checkpoint(base)


def status() -> dict | None:
    """The quickstart's state, or None if none was started in this workspace. A quickstart
    whose process died while working is reported failed."""
    path = status_path()
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # reported, not hidden: Home would offer a fresh start over it
        state = {"phase": "failed", "error": f"cannot read the quickstart's status file {path} "
                                             f"({getattr(e, 'strerror', None) or e}); delete it to start again"}
    state = _well_formed(state, path)
    if state.get("phase") in WORKING and not pid_alive(state.get("pid")):
        state.update(phase="failed", error="the quickstart process exited unexpectedly; "
                                           f"see {workspace.home() / 'logs' / 'quickstart.log'}")
    done, total, since = state.get("step") or 0, state.get("steps") or 0, state.get("building_since")
    state["eta_s"] = ((time.time() - since) / done * (total - done)
                      if state.get("phase") == "building" and since and 0 < done <= total else None)
    return state


def _well_formed(state, path: Path) -> dict:
    """The state with every field Home reads of the type it expects (a damaged file's odd ones dropped)."""
    if not isinstance(state, dict) or not isinstance(state.get("phase"), str):
        return {"phase": "failed", "error": f"the quickstart's status file {path} is not one it wrote; "
                                            "delete it to start again"}

    def of_type(key, types):
        value = state.get(key)
        return value if isinstance(value, types) and not isinstance(value, bool) else None

    state.update({key: of_type(key, (int, float)) for key in ("step", "steps", "building_since")})
    state.update({key: of_type(key, int) for key in ("pid", "run_id")})
    state.update({key: of_type(key, str) for key in ("base", "base_source")})
    state["loss"] = [p for p in of_type("loss", list) or [] if isinstance(p, list) and len(p) == 2]
    keys = {"step", "question", "completion", "correct"}
    state["probes"] = [p for p in of_type("probes", list) or [] if isinstance(p, dict) and keys <= p.keys()]
    return state


def running() -> bool:
    state = status()
    return bool(state and state["phase"] in WORKING)


def _write(**state) -> None:
    path = status_path()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)  # atomic: a reader never sees half a file


def start(build_base: bool = False, sft_steps: int | None = None, sets: list[str] | None = None) -> dict:
    """Spawn the quickstart process; returns its first status. build_base: build the base here
    (else the shipped one). sft_steps and sets override the base's SFT steps and the EI config
    (tests use tiny ones)."""
    if running():
        raise ReasonlabError("a quickstart is already running in this workspace")
    logs = workspace.ensure_home() / "logs"
    logs.mkdir(exist_ok=True)
    args = [sys.executable, "-m", "engine.quickstart"] + (["--build-base"] if build_base else [])
    if sft_steps is not None:
        args += ["--sft-steps", str(sft_steps)]
    for item in sets or []:
        args += ["--set", item]
    with open(logs / "quickstart.log", "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True,
                                cwd=str(Path(__file__).resolve().parent.parent), env=workspace.child_env())
    # The child's first write comes after it has imported torch (seconds later).
    _write(phase="starting", pid=proc.pid, started_at=time.time(), step=0, steps=sft_steps, run_id=None, error=None,
           base_source=_source(build_base))
    return status()


def _source(build_base: bool) -> str:
    return "built" if build_base else "shipped"


def main(argv: list[str] | None = None) -> int:
    from engine.assets import shipped_base
    from engine.config import make_config
    from engine.store import Store

    ap = argparse.ArgumentParser(prog="python -m engine.quickstart")
    ap.add_argument("--build-base", action="store_true", help="build the base here instead of the shipped one")
    ap.add_argument("--sft-steps", type=int)
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args(argv)
    state = {"pid": os.getpid(), "started_at": time.time(), "step": 0, "steps": None, "run_id": None, "error": None,
             "base_source": _source(args.build_base)}
    try:
        base = base_path() if args.build_base else shipped_base()
        if args.build_base and not base_built(base):
            from engine.algorithms.sft import train_sft
            from engine.config import SFTConfig

            cfg = SFTConfig()
            if args.sft_steps:
                cfg.steps = args.sft_steps
            state.update(steps=cfg.steps, building_since=time.time())
            _write(phase="building", **state)
            last = [0.0]
            state.update(loss=[], probes=[])
            every = max(1, cfg.steps // LOSS_POINTS)

            def on_step(done: int, total: int, info: dict) -> None:
                if done % every == 0 or done == total:
                    state["loss"].append([done, round(info["loss"], 4)])
                if "probe" in info:
                    state["probes"].append(info["probe"])
                if time.time() - last[0] > 0.5 or done == total or "probe" in info:  # a few writes a second at most
                    last[0] = time.time()
                    state["step"] = done
                    _write(phase="building", **state)

            train_sft(cfg, base, progress=False, on_step=on_step, watch_every=max(1, cfg.steps // PROBES),
                      overwrite=True)
        state["base"] = str(base)
        _write(phase="launching", **state)
        cfg = make_config("ei", base=base, sets=[*QUICKSTART_EI, *args.set])
        with Store() as store:
            state["run_id"] = jobs.submit(store, cfg, name="quickstart")
        jobs.spawn_worker()
        _write(phase="launched", **state)
        return 0
    except Exception as e:  # shown on the Home page; the log keeps the traceback
        import traceback

        traceback.print_exc()
        state["error"] = str(e) if isinstance(e, ReasonlabError) else f"{type(e).__name__}: {e}"
        _write(phase="failed", **state)
        return 1


if __name__ == "__main__":
    sys.exit(main())
