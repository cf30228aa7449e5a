"""The findings' experiment: which runs answer which question, at one shared budget and seed,
from one base; finding them in the store (a finished run with the same config is reused, never run
twice) and queueing the ones still missing.

    configs(base, size)          -> {key: validated RunConfig}   (e.g. key "ppo-dense")
    match(store, cfgs)           -> {key: SuiteRun}              (the stored run each key uses, if any)
    queue_missing(store, size)   -> ["queued ei as run 4", "resumed grpo (run 5)", ...]

Every run of a size samples the same number of training solutions (`budget`), which is the x-axis
of the paper's sample-complexity comparisons, and is evaluated on the same test problems with the
same K, so every comparison between two runs is paired problem by problem.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from engine.config import RunConfig, config_from_dict, make_config
from engine.errors import ReasonlabError

# Order = queue order, for two lanes (lanes()): EI first, whose verdicts come first (F3, F5, F6),
# beside the longest run (it trains an ORM first); then the rest, longest first, so that the
# two lanes end together.
RUN_KEYS = ("ei", "ppo-orm", "grpo", "ppo", "rcrl", "ppo-dense", "sft")
LABELS = {"ei": "EI", "grpo": "GRPO", "ppo": "PPO (sparse)", "sft": "continued SFT", "rcrl": "RCRL",
          "ppo-dense": "PPO (dense)", "ppo-orm": "PPO (ORM reward)"}
RUN_NAME = "findings: {key}"
# The runs whose base and last checkpoint F6 compares at large k (a deep evaluation each: the base's
# is made once and copied, as every run starts from the same base).
DEEP_RUNS = ("ei", "ppo", "grpo")


@dataclass(frozen=True)
class Size:
    budget: int  # training solutions each run samples (continued SFT: reference solutions it trains on)
    eval_limit: int  # test problems every checkpoint is evaluated on (the same ones for every run)
    eval_k: int  # samples per test problem: pass@K, maj@K, rerank@K
    checkpoints: int  # checkpoints each run saves after its base (F3 needs at least 2)
    extra: tuple = ()  # config fields every run of this size sets (field=value)
    orm_steps: int = 300
    deep_k: int = 256  # F6: samples per problem of the base's and the last checkpoint's deep evaluation
    deep_limit: int = 64  # F6: its problems (the first of the test split)


SIZES = {
    # The suite a person runs from the Findings page: 2 CPU cores, see bench/findings.py.
    "suite": Size(budget=8192, eval_limit=200, eval_k=32, checkpoints=3),
    # Seconds: checks the pipeline end to end (tests, the browser test); learns nothing.
    "smoke": Size(budget=48, eval_limit=24, eval_k=4, checkpoints=2, orm_steps=4, deep_k=8, deep_limit=24,
                  extra=("max_new_tokens=24", "train_problems=64", "sample_batch_size=64")),
}


def run_settings(key: str, size: Size) -> tuple[str, list[str]]:
    """(algorithm, its config fields) of one run of the suite at a size."""
    b, c = size.budget, size.checkpoints
    shared = ["seed=0", "eval_split=test", f"eval_limit={size.eval_limit}", f"eval_k={size.eval_k}", *size.extra]
    if key in DEEP_RUNS:  # pass@k to large k at the base and the last checkpoint (F6)
        shared += [f"deep_eval_k={size.deep_k}", f"deep_eval_limit={size.deep_limit}"]
    if key in ("ei", "rcrl", "sft"):  # rounds of problems x K (the quickstart's recipe, narrower)
        k = 8 if b >= 8 * 16 * c else 2
        rounds = [f"rounds={c}", f"problems_per_round={max(1, b // (c * k))}", "sft_epochs=3", "lr=3e-4",
                  "restart=false"]
        if key == "sft":  # the same problems per round, trained on the references instead of samples
            return "sft", [*shared, *rounds]
        small = [] if b >= 1024 else ["sft_max_steps=3", "batch_size=4"]
        return key, [*shared, *rounds, f"k={k}", "dedup=steps", *small]
    algo, _, reward = key.partition("-")
    if algo in ("ppo", "grpo"):  # online steps: PPO 64 problems x 4 samples, GRPO 32 x 8 (bench/learning.py)
        prompts, n = ((64, 4) if algo == "ppo" else (32, 8)) if b >= 256 * 3 else (4, 2)
        steps = max(c, b // (prompts * n))
        fields = [f"steps={steps}", f"prompts_per_step={prompts}", f"n={n}", f"checkpoint_every={-(-steps // c)}"]
        if b < 256 * 3:
            fields.append(f"minibatch_size={prompts * n}")
        if reward:
            fields += [f"reward={reward}", f"orm_steps={size.orm_steps}"] if reward == "orm" else [f"reward={reward}"]
        return algo, [*shared, *fields]
    raise ReasonlabError(f"findings: no run {key!r} in the suite; runs: {', '.join(RUN_KEYS)}")


def default_base() -> Path:
    """The base every finding starts from: the weak base that ships with reasonlab, copied into
    the workspace on first use."""
    from engine.assets import shipped_base

    return shipped_base()


def default_base_path() -> Path:
    """Where default_base is, without copying it (the dashboard's queries only read; the page copies
    it first through engine.dashboard.actions.copy_shipped_base)."""
    from engine.assets import shipped_base_path

    return shipped_base_path()


def configs(base: str | Path | None = None, size: str = "suite", keys=RUN_KEYS) -> dict[str, RunConfig]:
    """Every run of the suite, as validated configs (a problem is an error naming the run)."""
    if size not in SIZES:
        raise ReasonlabError(f"findings: unknown size {size!r}; choose one of {', '.join(SIZES)}")
    base = default_base() if base is None else base
    out = {}
    for key in keys:
        algo, sets = run_settings(key, SIZES[size])
        try:
            out[key] = make_config(algo, base=base, sets=sets)
        except ReasonlabError as e:
            raise ReasonlabError(f"findings run {key}: {e}") from None
    return out


@dataclass
class SuiteRun:
    key: str
    run_id: int
    status: str
    progress: float
    error: str | None


# Which stored run stands for a key when several have its config: a finished one, else one on its way.
PREFERENCE = {"finished": 0, "running": 1, "queued": 2, "interrupted": 3, "cancelled": 4, "failed": 5}


def same_config(stored: dict, algo: str, cfg: RunConfig) -> bool:
    """Whether a stored run's config is this one (fields older versions lacked take their defaults)."""
    try:
        return algo == cfg.algo and dataclasses.asdict(config_from_dict(algo, stored)) == dataclasses.asdict(cfg)
    except (TypeError, KeyError):
        return False


def match(store, cfgs: dict[str, RunConfig]) -> dict[str, SuiteRun]:
    """The stored run each key of the suite uses: same algorithm and config. Keys with none are absent."""
    from engine.jobs import run_rows

    found: dict[str, SuiteRun] = {}
    rows = [r for r in run_rows(store) if r["status"] in PREFERENCE and isinstance(r["config"], dict)]
    for key, cfg in cfgs.items():
        same = [r for r in rows if same_config(r["config"], r["algo"], cfg)]
        if same:
            best = min(same, key=lambda r: (PREFERENCE[r["status"]], -r["id"]))
            found[key] = SuiteRun(key, best["id"], best["status"], float(best["progress"] or 0.0), best["error"])
    return found


def queue_missing(store, size: str = "suite", base: str | Path | None = None, spawn: bool = True) -> list[str]:
    """Queue every run of the suite that the store lacks; resume the ones that stopped early
    (cancelled, interrupted, failed) instead of starting them again. Every config is validated
    before anything is queued. Returns what was done, one line per run."""
    from engine import jobs

    cfgs = configs(base, size)
    found = match(store, cfgs)
    done = []
    for key, cfg in cfgs.items():
        run = found.get(key)
        if run is not None and run.status in ("finished", "running", "queued"):
            continue
        if run is not None:
            try:
                jobs.resume(store, run.run_id)
                done.append(f"resumed {key} (run {run.run_id})")
                continue
            except ReasonlabError as e:  # e.g. its checkpoints were deleted: start it afresh
                done.append(f"{key}: run {run.run_id} cannot be resumed ({e}); starting a new one")
        run_id = jobs.submit(store, cfg, name=RUN_NAME.format(key=key))
        done.append(f"queued {key} as run {run_id}")
    if done and spawn:
        n = lanes()
        for _ in range(n):
            jobs.spawn_worker(max_running=n)
    return done


def lanes() -> int:
    """How many of the suite's runs train at once: two where there are two cores or more (each with
    its share of them, jobs.share_cores: about 1.3x the throughput of one at a time on 2 cores), or
    $REASONLAB_MAX_RUNNING if it allows more."""
    from engine import workspace

    return max(workspace.max_running(), min(2, workspace.cores()))
