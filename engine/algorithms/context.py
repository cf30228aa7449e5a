"""The job around a training loop: the store (metrics, rollouts, progress, checkpoints and their
evaluation), the cancel check and the state a resumed run continues from.

Under a multi-process launch (engine/distributed.py) every process runs the same loop with its own
RunContext; only rank 0's has a store, and the context's methods say which are collective.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from engine import distributed, profiling
from engine.algorithms.rollout import Rollout, train_pool
from engine.config import EvalConfig
from engine.evaluation.evaluate import evaluate
from engine.model.checkpoint import read_meta, save_checkpoint
from engine.model.prompts import Prompter, resolve_format
from engine.schema import DEEP_EVAL as DEEP
from engine.sampling import make_sampler
from engine.tasks.base import Problem

STATE_FILE = "trainer_state.pt"
# The second, larger evaluation of the base and the last checkpoint (deep_eval_k > 0): its samples
# are stored with kind DEEP, apart from the evaluation at every checkpoint (kind "eval"), and its
# metrics in the checkpoint's under DEEP_PREFIX + name ("deep/pass@256", "deep/k", "deep/eval_key"...).
DEEP_PREFIX = "deep/"


class RunContext:
    """The job around a training loop. Loops report through it and never touch the store's
    schema; `ctx.stop_requested()` is how `reasonlab cancel` reaches them between steps, and
    `ctx.interrupt` inside a long phase (sampling, fine-tuning, evaluation).

    Several processes: every rank builds one (store None except on rank 0). `log`, `gather`,
    `stop_requested`, `save` and `evaluate_base` are collective (every rank calls them at the same
    point of the loop); `progress` and `log_rollouts` write on rank 0 and do nothing elsewhere."""

    def __init__(self, store, run_id: int, cfg, run_dir: Path):
        self.store, self.run_id, self.cfg, self.run_dir = store, run_id, cfg, Path(run_dir)
        self.acc = distributed.accelerator(cfg.device)  # one process: no process group, prepare() is a no-op
        self.rank, self.world, self.is_main = self.acc.process_index, self.acc.num_processes, self.acc.is_main_process
        distributed.check_config(cfg, self.world)
        self.task = cfg.task.build()
        self.prompter: Prompter | None = None  # set by use_tokenizer, once the loop has loaded the model
        self.samples_seen = 0  # sampled solutions so far: the paper's sample-complexity axis
        self.started = time.time()
        self.meta: dict = {}  # extra checkpoint metadata, e.g. RCRL's prompt suffix
        self.on_progress = None  # a foreground run's progress bar: on_progress(run_fields, phase)
        self.stop_signal = threading.Event()  # set by the job's SIGTERM handler and by poll_cancel
        self.phases = profiling.start()  # where the run's time goes (the loops time their phases)
        self._resume = self._find_resume_point()

    def use_tokenizer(self, tokenizer) -> None:
        """Fix the prompt format for this run (recorded in every checkpoint's reasonlab.json), and
        report malformed lines of the data files that skip_bad left out."""
        fmt = resolve_format(self.cfg.prompt_format, tokenizer, read_meta(self.cfg.base))
        self.meta["prompt_format"] = fmt
        self.prompter = Prompter(self.task, tokenizer, fmt)
        skipped = getattr(self.task, "skipped", [])
        if self.resume_point() is None:  # a resumed run logged these the first time
            start = {"data/train_pool": len(train_pool(self.task, self.cfg))}  # distinct training problems
            self.log(0, {**start, "data/skipped_lines": len(skipped)} if skipped else start)

    @property
    def stop(self) -> tuple[str, ...]:
        """Strings that end a sampled solution in this run's prompt format (few-shot: `Question:`)."""
        return self.prompter.stop if self.prompter is not None else ()

    def prompt(self, problem: Problem) -> str:
        """The text the policy continues for a problem (before any RCRL return token)."""
        return self.prompter(problem) if self.prompter is not None else self.task.prompt(problem)

    # -- progress -------------------------------------------------------------------------------
    def progress(self, step: int, total: int, fraction: float, phase: str) -> None:
        """fraction: of the whole run (0..1), for the progress bar and ETA."""
        if not self.is_main:
            return
        fields = {"step": step, "total": total, "progress": min(max(fraction, 0.0), 1.0), "phase": phase}
        self.store.update_run(self.run_id, heartbeat_at=time.time(), **fields)
        if self.on_progress is not None:
            self.on_progress(fields, phase)

    @property
    def interrupt(self) -> threading.Event | None:
        """The event long phases check per decode step or optimizer step (sampling, fine-tuning,
        evaluation, ORM training), raising base.Cancelled once it is set. None under a
        multi-process launch: its processes must stop together, at the collective check between
        steps (stop_requested), or one left waiting in a collective would hang."""
        return self.stop_signal if self.world == 1 else None

    def poll_cancel(self) -> None:
        """Turn a `reasonlab cancel` (a flag in the store) into the stop signal. The job's
        heartbeat thread calls it every second or so, so the hot loops read an Event, never the store."""
        if self.is_main and not self.stop_signal.is_set():
            run = self.store.get_run(self.run_id)
            if run and run["cancel_requested"]:
                self.stop_signal.set()

    def stop_requested(self) -> bool:
        """Collective: rank 0 reads the cancel flag, so all processes stop at the same step."""
        stop = None
        if self.is_main:
            run = self.store.get_run(self.run_id)
            stop = self.stop_signal.is_set() or bool(run and run["cancel_requested"])
        return distributed.broadcast(stop, self.acc)

    # Rates add up over processes; every other metric is a per-sample mean of an equal share.
    SUMMED = ("tokens_per_s",)

    def log(self, step: int, metrics: dict) -> None:
        """Collective: each process's metrics of its share; the store gets their mean over processes."""
        if self.world > 1:
            shares = distributed.gather([metrics], self.acc)
            metrics = {k: _combine([m[k] for m in shares], summed=k in self.SUMMED) for k in metrics}
        self._record(step, metrics)

    def _record(self, step: int, metrics: dict) -> None:
        if self.is_main:
            with self.phases.time("store"):
                self.store.log_metrics(self.run_id, step, {**metrics, "time/elapsed_s": time.time() - self.started},
                                       samples_seen=self.samples_seen)

    def gather(self, items: list) -> list:
        """Collective: every process's items (e.g. rollouts), in rank order, on every process."""
        return distributed.gather(items, self.acc)

    def shard(self, items: list) -> list:
        """This process's share of a list the processes all hold: every world-th item."""
        return items[self.rank::self.world]

    def log_rollouts(self, step: int, rollouts: list[Rollout]) -> None:
        """Every rollout trained on, so a person can watch completions change over training.
        Rank 0 writes the rollouts it is given (all processes' when the loop gathered them)."""
        if not self.is_main:
            return
        split = "train"
        with self.phases.time("store"):
            self.store.add_samples([
                {"run_id": self.run_id, "step": step, "kind": "rollout", "task": self.cfg.task.name, "split": split,
                 "problem_id": r.problem.id, "sample_idx": r.sample_idx, "text": r.completion.text,
                 "answer": r.score.answer, "correct": int(r.score.correct), "reward": r.reward,
                 "n_tokens": len(r.completion.token_ids), "logprob": r.completion.logprob} for r in rollouts])
        # completions the task could not score (counted incorrect): not a collective log, rank 0 has them all
        self._record(step, {"score/unjudged": sum(r.score.unjudged for r in rollouts)})

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        return self.run_dir / f"step-{step:05d}"

    def save(self, step: int, policy, tokenizer, state: dict, evaluate_now: bool = True) -> Path:
        """Write an HF checkpoint plus the trainer state needed to resume, then evaluate it.
        Collective: rank 0 writes and evaluates while the others wait."""
        out = self.checkpoint_path(step)
        if self.is_main:
            self._save(out, step, self.acc.unwrap_model(policy), tokenizer, state, evaluate_now)
        self.acc.wait_for_everyone()
        return out

    def _save(self, out: Path, step: int, policy, tokenizer, state: dict, evaluate_now: bool) -> None:
        meta = {"made_by": f"reasonlab {self.cfg.algo}", "run_id": self.run_id, "step": step,
                "config": asdict(self.cfg), **self.meta}
        trainer_state = {"step": step, "samples_seen": self.samples_seen, "elapsed": time.time() - self.started,
                         "rng": torch.get_rng_state(), **state}
        # the state goes in with the weights, in one atomic write; replace: a crash after the write but
        # before the store recorded it leaves this step's directory, which the resumed run writes again
        with self.phases.time("checkpoint"):
            save_checkpoint(policy, tokenizer, out, meta, extra=lambda d: torch.save(trainer_state, d / STATE_FILE),
                            replace=True)
            checkpoint_id = self.store.add_checkpoint(self.run_id, step, out)
        if evaluate_now:
            self.evaluate(step, checkpoint_id, policy, tokenizer)
            if self.cfg.deep_eval_k and step == self.last_step:
                self.evaluate(step, checkpoint_id, policy, tokenizer, deep=True)

    @property
    def last_step(self) -> int:
        """The step of the run's last checkpoint: its rounds or steps."""
        return getattr(self.cfg, "rounds", None) or self.cfg.steps

    def evaluate(self, step: int, checkpoint_id: int, policy, tokenizer, deep: bool = False) -> dict:
        """maj@1 (greedy) and pass@k / maj@k on the eval split; samples and metrics go to the store.
        deep: the larger evaluation (deep_eval_k samples on the first deep_eval_limit problems),
        stored apart (DEEP) and not logged as a metric over training."""
        with self.phases.time("evaluate"):
            return self._evaluate(step, checkpoint_id, policy, tokenizer, deep)

    def _evaluate(self, step: int, checkpoint_id: int, policy, tokenizer, deep: bool) -> dict:
        cfg = self.cfg
        k, limit = (cfg.deep_eval_k, cfg.deep_eval_limit) if deep else (cfg.eval_k, cfg.eval_limit)
        ecfg = EvalConfig(task=cfg.task, split=cfg.eval_split,
                          k=k, limit=limit, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                          prompt_suffix=self.meta.get("prompt_suffix", ""),
                          prompt_format=self.meta.get("prompt_format", "plain"))
        was_training = policy.training
        policy.eval()
        metrics, rows = evaluate(make_sampler(policy, tokenizer, cfg, cancel=self.interrupt), ecfg)
        policy.train(was_training)
        self.store.add_samples([{**row, "run_id": self.run_id, "checkpoint_id": checkpoint_id, "step": step,
                                 "kind": DEEP if deep else "eval"} for row in rows])
        scores = {k: v for k, v in metrics.items() if k.startswith(("maj@", "pass@"))}
        if deep:
            self.store.update_checkpoint_metrics(checkpoint_id, {
                DEEP_PREFIX + name: v for name, v in {**scores, "k": k, "problems": metrics["problems"]}.items()})
            return scores
        self.store.update_checkpoint_metrics(checkpoint_id, {**scores, "split": cfg.eval_split,
                                                             "problems": metrics["problems"]})
        self._record(step, {f"eval/{k}": v for k, v in scores.items()})
        return scores

    def evaluate_base(self, policy, tokenizer) -> None:
        """Step 0 of every run is its base checkpoint, evaluated like the others (the 'before').
        An evaluation of the same weights with the same settings that another run of this store
        already made is copied instead (the findings suite starts seven runs from one base): the
        seeded sampler would draw exactly the same samples again. Collective: rank 0 evaluates
        while the others wait."""
        if self.is_main:
            with self.phases.time("evaluate"):
                checkpoint_id = self.store.add_checkpoint(self.run_id, 0, self.cfg.base)
                key = self.base_eval_key()
                if not self._reuse_evaluation(key, checkpoint_id):
                    self.evaluate(0, checkpoint_id, policy, tokenizer)
                    self.store.update_checkpoint_metrics(checkpoint_id, {"eval_key": key})
                if self.cfg.deep_eval_k:  # the base of the last checkpoint's deep evaluation
                    deep_key = self.base_eval_key(deep=True)
                    if not self._reuse_evaluation(deep_key, checkpoint_id, deep=True):
                        self.evaluate(0, checkpoint_id, policy, tokenizer, deep=True)
                        self.store.update_checkpoint_metrics(checkpoint_id, {DEEP_PREFIX + "eval_key": deep_key})
        self.acc.wait_for_everyone()

    # What decides a base evaluation's samples: the weights (path, and each file's size and mtime),
    # the task and its data files, and every setting the evaluation or the sampler reads.
    EVAL_FIELDS = ("eval_split", "eval_limit", "eval_k", "max_new_tokens", "seed", "sampler", "device",
                   "dtype", "sample_batch_size", "lora_r", "vllm_memory")

    def base_eval_key(self, deep: bool = False) -> str:
        import hashlib
        import json

        def stat(path) -> list:
            files = sorted(Path(path).iterdir()) if Path(path).is_dir() else [Path(path)]
            return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]

        options = self.cfg.task.options()
        what = {"base": str(self.cfg.base), "weights": stat(self.cfg.base), "task": self.cfg.task.name,
                "options": options,
                "data": [stat(options[k]) for k in ("data", "eval_data") if options.get(k)],
                "meta": {k: self.meta.get(k) for k in ("prompt_format", "prompt_suffix")},
                **{k: getattr(self.cfg, k) for k in self.EVAL_FIELDS}}
        if deep:
            what.update(deep_eval_k=self.cfg.deep_eval_k, deep_eval_limit=self.cfg.deep_eval_limit)
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]

    def _reuse_evaluation(self, key: str, checkpoint_id: int, deep: bool = False) -> bool:
        """Copy another run's base evaluation with this key (samples, metrics); False if none.
        deep: the deep evaluation (DEEP samples, metrics under DEEP_PREFIX), else the other one."""
        prefix = DEEP_PREFIX if deep else ""
        ck = self.store.checkpoints()
        same = ck[(ck["step"] == 0) & (ck["id"] != checkpoint_id)
                  & ck["metrics"].map(lambda m: isinstance(m, dict) and m.get(prefix + "eval_key") == key)]
        for _, source in same.iloc[::-1].iterrows():  # the newest first
            rows = self.store.samples(checkpoint_id=int(source["id"]), kind=DEEP if deep else "eval")
            if rows.empty:
                continue
            fields = [c for c in rows.columns if c not in ("id", "run_id", "checkpoint_id", "created_at")]
            self.store.add_samples([{**r, "run_id": self.run_id, "checkpoint_id": checkpoint_id}
                                    for r in rows[fields].astype(object).where(rows[fields].notna(), None)
                                    .to_dict("records")])
            metrics = {k: v for k, v in source["metrics"].items() if k.startswith(DEEP_PREFIX) == deep}
            metrics[prefix + "copied_from_checkpoint"] = int(source["id"])
            self.store.update_checkpoint_metrics(checkpoint_id, metrics)
            if not deep:
                self._record(0, {f"eval/{k}": v for k, v in metrics.items() if k.startswith(("maj@", "pass@"))})
            return True
        return False

    def resume_point(self) -> tuple[int, Path, dict] | None:
        """(step, path, trainer state) of the last checkpoint this run saved, if any (as it was
        when the run started)."""
        return self._resume

    def _find_resume_point(self) -> tuple[int, Path, dict] | None:
        found = None  # rank 0 reads the store; every process loads the state file it names
        if self.is_main:
            df = self.store.checkpoints(self.run_id)
            for _, row in df.sort_values("step", ascending=False).iterrows():
                path = Path(row["path"])
                if row["step"] > 0 and (path / STATE_FILE).is_file():
                    found = (int(row["step"]), path)
                    break
        found = distributed.broadcast(found, self.acc)
        if found is None:
            return None
        return found[0], found[1], torch.load(found[1] / STATE_FILE, weights_only=True)

    def restore(self, state: dict) -> None:
        self.samples_seen = int(state["samples_seen"])
        self.started = time.time() - float(state.get("elapsed", 0.0))
        torch.set_rng_state(state["rng"])


def _combine(values: list, summed: bool):
    """One logged metric from every process's value: their sum or mean (None where none has one)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return sum(values) if summed else sum(values) / len(values)
