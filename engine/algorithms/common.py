"""What every training loop shares: the run context (store, progress, cancel, checkpoints with
their evaluation, resume state), sampling + scoring of rollouts, and token-level batches.

The algorithms themselves (expert_iteration, rcrl, ppo, grpo) are one loop each on top of this.
Under a multi-process launch (engine/distributed.py) every process runs the same loop with its own
RunContext; only rank 0's has a store, and the context's methods say which are collective.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from engine import distributed
from engine.errors import ReasonlabError
from engine.evaluation.evaluate import EvalConfig, evaluate
from engine.model.checkpoint import load_checkpoint, read_meta, save_checkpoint
from engine.model.lora import maybe_lora, trainable
from engine.model.prompts import Prompter, resolve_format
from engine.sampling.base import Completion
from engine.sampling import make_sampler
from engine.tasks import task_from_config, task_options
from engine.tasks.base import Problem, Score

STATE_FILE = "trainer_state.pt"


class RunContext:
    """The job around a training loop. Loops report through it and never touch the store's
    schema; `ctx.stop_requested()` is how `reasonlab cancel` reaches them.

    Several processes: every rank builds one (store None except on rank 0). `log`, `gather`,
    `stop_requested`, `save` and `evaluate_base` are collective (every rank calls them at the same
    point of the loop); `progress` and `log_rollouts` write on rank 0 and do nothing elsewhere."""

    def __init__(self, store, run_id: int, cfg, run_dir: Path):
        self.store, self.run_id, self.cfg, self.run_dir = store, run_id, cfg, Path(run_dir)
        self.acc = distributed.accelerator(cfg.device)  # one process: no process group, prepare() is a no-op
        self.rank, self.world, self.is_main = self.acc.process_index, self.acc.num_processes, self.acc.is_main_process
        distributed.check_sampler(cfg.sampler, self.world)
        self.task = task_from_config(cfg)
        self.prompter: Prompter | None = None  # set by use_tokenizer, once the loop has loaded the model
        self.samples_seen = 0  # sampled solutions so far: the paper's sample-complexity axis
        self.started = time.time()
        self.meta: dict = {}  # extra checkpoint metadata, e.g. RCRL's prompt suffix
        self.on_progress = None  # a foreground run's progress bar: on_progress(run_fields, phase)
        self.stop_signal = threading.Event()  # set by the job's SIGTERM handler
        self._resume = self._find_resume_point()

    def use_tokenizer(self, tokenizer) -> None:
        """Fix the prompt format for this run (recorded in every checkpoint's reasonlab.json), and
        report malformed lines of the data files that skip_bad left out."""
        fmt = resolve_format(self.cfg.prompt_format, tokenizer, read_meta(self.cfg.base))
        self.meta["prompt_format"] = fmt
        self.prompter = Prompter(self.task, tokenizer, fmt)
        skipped = getattr(self.task, "skipped", [])
        if skipped and self.resume_point() is None:  # a resumed run logged it the first time
            self.log(0, {"data/skipped_lines": len(skipped)})

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
        self.store.add_samples([
            {"run_id": self.run_id, "step": step, "kind": "rollout", "task": self.cfg.task, "split": split,
             "problem_id": r.problem.id, "sample_idx": r.sample_idx, "text": r.completion.text,
             "answer": r.score.answer, "correct": int(r.score.correct), "reward": r.reward,
             "n_tokens": len(r.completion.token_ids), "logprob": r.completion.logprob} for r in rollouts])

    # -- checkpoints ----------------------------------------------------------------------------
    def checkpoint_path(self, step: int) -> Path:
        return self.run_dir / f"step-{step:05d}"

    def save(self, step: int, model, tokenizer, state: dict, evaluate_now: bool = True) -> Path:
        """Write an HF checkpoint plus the trainer state needed to resume, then evaluate it.
        Collective: rank 0 writes and evaluates while the others wait."""
        out = self.checkpoint_path(step)
        if self.is_main:
            self._save(out, step, self.acc.unwrap_model(model), tokenizer, state, evaluate_now)
        self.acc.wait_for_everyone()
        return out

    def _save(self, out: Path, step: int, model, tokenizer, state: dict, evaluate_now: bool) -> None:
        meta = {"made_by": f"reasonlab {self.cfg.algo}", "run_id": self.run_id, "step": step,
                "config": asdict(self.cfg), **self.meta}
        save_checkpoint(model, tokenizer, out, meta)
        torch.save({"step": step, "samples_seen": self.samples_seen, "elapsed": time.time() - self.started,
                    "rng": torch.get_rng_state(), **state}, out / STATE_FILE)
        checkpoint_id = self.store.add_checkpoint(self.run_id, step, out)
        if evaluate_now:
            self.evaluate(step, checkpoint_id, model, tokenizer)

    def evaluate(self, step: int, checkpoint_id: int, model, tokenizer) -> dict:
        """maj@1 (greedy) and pass@k / maj@k on the eval split; samples and metrics go to the store."""
        cfg = self.cfg
        ecfg = EvalConfig(task=cfg.task, task_options=task_options(cfg.task, cfg), split=cfg.eval_split,
                          k=cfg.eval_k, limit=cfg.eval_limit, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                          prompt_suffix=self.meta.get("prompt_suffix", ""),
                          prompt_format=self.meta.get("prompt_format", "plain"))
        was_training = model.training
        model.eval()
        metrics, rows = evaluate(make_sampler(model, tokenizer, cfg), ecfg)
        model.train(was_training)
        self.store.add_samples([{**row, "run_id": self.run_id, "checkpoint_id": checkpoint_id, "step": step,
                                 "kind": "eval"} for row in rows])
        scores = {k: v for k, v in metrics.items() if k.startswith(("maj@", "pass@"))}
        self.store.update_checkpoint_metrics(checkpoint_id, {**scores, "split": cfg.eval_split,
                                                             "problems": metrics["problems"]})
        self._record(step, {f"eval/{k}": v for k, v in scores.items()})
        return scores

    def evaluate_base(self, model, tokenizer) -> None:
        """Step 0 of every run is its base checkpoint, evaluated like the others (the 'before').
        Collective: rank 0 evaluates while the others wait."""
        if self.is_main:
            checkpoint_id = self.store.add_checkpoint(self.run_id, 0, self.cfg.base)
            self.evaluate(0, checkpoint_id, model, tokenizer)
        self.acc.wait_for_everyone()

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


# -- rollouts ---------------------------------------------------------------------------------


@dataclass
class Rollout:
    problem: Problem
    sample_idx: int  # which of the n samples of its problem
    prompt_text: str
    prompt_ids: list[int]
    completion: Completion
    score: Score
    reward: float = 0.0


def sample_rollouts(model, tokenizer, task, problems: list[Problem], n: int, cfg, seed: int,
                    prompt_suffix: str = "", prompt=None, sampler=None) -> list[Rollout]:
    """n samples per problem (consecutive), each scored by the task. `prompt(problem)` makes the
    prompt text (default: the task's own prompt); `sampler` one from make_sampler(model, ...)
    when several calls share it. The model is left in eval mode."""
    model.eval()
    prompt = prompt or task.prompt
    prompts = [prompt(p) + prompt_suffix for p in problems]
    sampler = sampler or make_sampler(model, tokenizer, cfg)
    out = sampler.sample(prompts, n=n, temperature=cfg.temperature, top_p=cfg.top_p,
                         max_new_tokens=cfg.max_new_tokens, seed=seed)
    rollouts = []
    for p, prompt, completions in zip(problems, prompts, out):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for j, c in enumerate(completions):
            rollouts.append(Rollout(p, j, prompt, ids, c, task.score(p, c.text)))
    return rollouts


def load_model(cfg, path=None):
    """(model, tokenizer) of the base (or `path`) as the run config asks: device, dtype, remote code."""
    return load_checkpoint(path or cfg.base, device=cfg.device, dtype=cfg.dtype,
                           trust_remote_code=cfg.trust_remote_code)


def _combine(values: list, summed: bool):
    """One logged metric from every process's value: their sum or mean (None where none has one)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return sum(values) if summed else sum(values) / len(values)


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, step): a resumed run redraws the same samples."""
    return (seed * 1_000_003 + step * 7919 + salt) % (2**31 - 1)


def draw_problems(task, cfg, step: int, n: int) -> list[Problem]:
    pool = _pool(task, cfg.train_problems)
    rng = random.Random(step_seed(cfg.seed, step, salt=1))
    return rng.sample(pool, min(n, len(pool)))


_POOLS: dict = {}


def _pool(task, n: int) -> list[Problem]:
    key = (getattr(task, "key", task.name), n)  # a file task's key names its files and their versions
    if key not in _POOLS:
        _POOLS[key] = task.problems("train", n)
    return _POOLS[key]


# -- token batches for policy-gradient updates -------------------------------------------------


def token_batch(rollouts: list[Rollout], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded prompt + completion ids. `mask` marks the completion tokens among the
    *targets* (input shifted by one), so logits[:, :-1] line up with it."""
    rows = [r.prompt_ids + r.completion.token_ids for r in rollouts]
    width = max(map(len, rows))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1))
    for i, (r, row) in enumerate(zip(rollouts, rows)):
        input_ids[i, :len(row)] = torch.tensor(row)
        attention[i, :len(row)] = 1
        mask[i, len(r.prompt_ids) - 1:len(row) - 1] = 1  # targets at positions P..L-1
    return {"input_ids": input_ids.to(device), "attention_mask": attention.to(device), "mask": mask.to(device)}


def forward_logprobs(model, batch, with_hidden: bool = False):
    """(B, L-1) log-probabilities of each next token, the (B, L-1, V) logits and optionally the
    last hidden states (B, L-1, H) at the same positions."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                output_hidden_states=with_hidden)
    logits = out.logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    logprobs = torch.gather(F.log_softmax(logits, dim=-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    hidden = out.hidden_states[-1][:, :-1] if with_hidden else None
    return logprobs, logits, hidden


def minibatches(n: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    return [order[i:i + size] for i in range(0, n, size)]


def summary(rollouts: list[Rollout]) -> dict:
    """Task accuracy, independent of the reward being optimised, and length statistics."""
    n = max(len(rollouts), 1)
    return {"train/accuracy": sum(r.score.correct for r in rollouts) / n,
            "reward": sum(r.reward for r in rollouts) / n,
            "train/completion_tokens": sum(len(r.completion.token_ids) for r in rollouts) / n,
            "train/truncated": sum(r.completion.finish_reason == "length" for r in rollouts) / n}


class Stats:
    """Running means of per-minibatch statistics."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


# -- rewards ------------------------------------------------------------------------------------


def assign_rewards(rollouts: list[Rollout], reward: str, orm=None) -> None:
    """sparse: 1 for a correct final answer; dense: share of the reference's intermediate results
    reached (Havrilla et al.'s heuristic); orm: the reward model's probability of correctness."""
    if reward == "sparse":
        values = [float(r.score.correct) for r in rollouts]
    elif reward == "dense":
        values = [float(r.score.dense) for r in rollouts]
    elif reward == "orm":
        prompts = [r.prompt_text for r in rollouts]
        values = [float(v) for v in orm.score(prompts, [r.completion.text for r in rollouts])]
    else:
        raise ValueError(f"unknown reward {reward!r}")
    for r, v in zip(rollouts, values):
        r.reward = v


class PolicyRun:
    """What PPO and GRPO share around their update: start or resume (policy, optimizer, extra
    heads and controllers), the frozen reference, the reward model, rollouts with rewards, the
    cancel check and the checkpoint schedule. The update itself stays in each algorithm's loop.

    `policy` and `heads` are the modules themselves (sampling, old log-probabilities, saving);
    `model` and `trained_heads` are the same modules as accelerate prepared them for the gradient
    passes (DDP-wrapped under a multi-process launch). Each process trains on its share of a step:
    `minibatch_size` is the configured one divided by the number of processes."""

    def __init__(self, ctx: RunContext, cfg, heads: dict | None = None, stateful: dict | None = None):
        self.ctx, self.cfg = ctx, cfg
        self.heads = heads or {}  # extra trainable modules, e.g. PPO's value head
        self.stateful = stateful or {}  # objects with state_dict()/load_state_dict(), e.g. a KL controller
        for name in ("prompts_per_step", "minibatch_size"):
            if getattr(cfg, name) % ctx.world:
                raise ReasonlabError(f"{cfg.algo} config field {name}={getattr(cfg, name)} must be a multiple of "
                                     f"the {ctx.world} processes, which share it equally")
        base, self.tokenizer = load_model(cfg)
        self.policy = maybe_lora(base, cfg)
        ctx.use_tokenizer(self.tokenizer)
        self.reference = None
        if cfg.kl_coef > 0 or getattr(cfg, "kl_target", 0) > 0:
            self.reference, _ = load_model(cfg)
            self.reference.requires_grad_(False)
        for head in self.heads.values():
            head.to(cfg.device)
        params = trainable(self.policy) + [p for h in self.heads.values() for p in h.parameters()]
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
        self.orm = None
        self.first_step, self.last_saved = 1, 0
        if (resume := ctx.resume_point()) is not None:
            step, path, state = resume
            ctx.restore(state)
            self.policy = maybe_lora(load_model(cfg, path)[0], cfg)  # merged weights, fresh adapters
            params = trainable(self.policy) + [p for h in self.heads.values() for p in h.parameters()]
            self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.95))
            self.opt.load_state_dict(state["optimizer"])
            for name, head in self.heads.items():
                head.load_state_dict(state["heads"][name])
            for name, obj in self.stateful.items():
                obj.load_state_dict(state["stateful"][name])
            self.first_step, self.last_saved = step + 1, step
        else:
            ctx.progress(0, cfg.steps, 0.0, "evaluating the base checkpoint")
            ctx.evaluate_base(self.policy, self.tokenizer)
        if cfg.reward == "orm":
            self.orm = self._reward_model()
        self.minibatch_size = cfg.minibatch_size // ctx.world
        self.model, *heads, self.opt = ctx.acc.prepare(self.policy, *self.heads.values(), self.opt)
        self.trained_heads = dict(zip(self.heads, heads))

    def _reward_model(self):
        from engine.algorithms.orm import OutcomeRewardModel

        cfg = self.cfg
        path = cfg.orm or self.ctx.run_dir / "orm"
        if not cfg.orm and self.ctx.is_main and not (path / "orm_head.safetensors").is_file():
            train_orm_from_samples(self.ctx, cfg, self.policy, self.tokenizer, path)
        self.ctx.acc.wait_for_everyone()
        return OutcomeRewardModel.load(path, device=cfg.device, dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code)

    def iterations(self):
        """(step, rollouts) for each remaining step: the cancel check, then sampled and scored
        rollouts. `step_started` times the whole step; `sample_s` the sampling part."""
        for step in range(self.first_step, self.cfg.steps + 1):
            if self.stopping(step - 1):
                return
            self.step_started = time.time()
            rollouts = self.rollouts(step)
            self.sample_s = time.time() - self.step_started
            yield step, rollouts

    def rollouts(self, step: int) -> list[Rollout]:
        """Sample n solutions for this process's share of the step's problems, score them, assign
        rewards, store every process's. A problem's n samples (a GRPO group) stay on one process."""
        ctx, cfg = self.ctx, self.cfg
        problems = ctx.shard(draw_problems(ctx.task, cfg, step, cfg.prompts_per_step))
        rollouts = sample_rollouts(self.policy, self.tokenizer, ctx.task, problems, cfg.n, cfg,
                                   seed=step_seed(cfg.seed, step) + ctx.rank, prompt=ctx.prompt)
        assign_rewards(rollouts, cfg.reward, self.orm)
        everyone = ctx.gather(rollouts)
        ctx.samples_seen += len(everyone)
        ctx.log_rollouts(step, everyone)
        return rollouts

    def stopping(self, last_done: int) -> bool:
        """True when a cancel was requested; the work done so far is saved first (unevaluated)."""
        if not self.ctx.stop_requested():
            return False
        if last_done > self.last_saved:
            self._save(last_done, evaluate_now=False)
        return True

    def after_step(self, step: int) -> None:
        cfg = self.cfg
        self.ctx.progress(step, cfg.steps, step / cfg.steps, f"step {step}/{cfg.steps}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            self.ctx.progress(step, cfg.steps, step / cfg.steps, f"step {step}/{cfg.steps}: evaluating")
            self._save(step, evaluate_now=True)

    def _save(self, step: int, evaluate_now: bool) -> None:
        state = {"optimizer": self.opt.state_dict(),
                 "heads": {k: h.state_dict() for k, h in self.heads.items()},
                 "stateful": {k: o.state_dict() for k, o in self.stateful.items()}}
        self.ctx.save(step, self.policy, self.tokenizer, state, evaluate_now=evaluate_now)
        self.last_saved = step


def train_orm_from_samples(ctx: RunContext, cfg, policy, tokenizer, out: Path, problems: int = 256, n: int = 8):
    """reward=orm with no ORM given: label the base's own samples on training problems (stored as
    this run's step-0 rollouts) and train an outcome reward model on them. Each problem's reference
    solution is added as a correct example, so a weak base that solves little still gives both
    classes."""
    from engine.algorithms.orm import ORMConfig, train_orm

    ctx.progress(0, getattr(cfg, "steps", 0), 0.0, "training the outcome reward model")
    pool = _pool(ctx.task, cfg.train_problems)
    rng = random.Random(step_seed(cfg.seed, 0, salt=3))
    chosen = rng.sample(pool[len(pool) // 2:], min(problems, len(pool) // 2))  # apart from early RL steps
    rollouts = sample_rollouts(policy, tokenizer, ctx.task, chosen, n, cfg, seed=step_seed(cfg.seed, 0, salt=4),
                               prompt=ctx.prompt)
    for r in rollouts:
        r.reward = float(r.score.correct)
    ctx.log_rollouts(0, rollouts)
    examples = [(r.prompt_text, r.completion.text, bool(r.score.correct)) for r in rollouts]
    examples += [(ctx.prompt(p), p.reference, True) for p in chosen]
    return train_orm(cfg.base, examples, out, ORMConfig(steps=cfg.orm_steps, seed=cfg.seed, device=cfg.device,
                                                        dtype=cfg.dtype, trust_remote_code=cfg.trust_remote_code))
