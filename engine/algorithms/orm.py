"""Outcome reward model (ORM): predicts whether a sampled solution's final answer is correct.

As in Cobbe et al. 2021 and Havrilla et al. 2024: a causal LM trunk, initialised from a base
checkpoint, plus a linear head read at the last real token (the EOS after the completion), trained
with binary cross-entropy on (prompt, completion, correct) examples. It serves as a PPO reward and
for rerank@k: of k samples, keep the answer of the one the ORM scores highest.

Saved as a plain HF checkpoint of the trunk (transformers and vLLM still load it as a causal LM)
plus `orm_head.safetensors`.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from engine.algorithms.optim import adamw
from engine.algorithms.sft import completion_batch
from engine.errors import ReasonlabError
from engine.config import ORMConfig
from engine.model.checkpoint import load_checkpoint, save_checkpoint
from engine.sampling.base import check_cancel

HEAD = "orm_head.safetensors"

Example = tuple[str, str, bool]  # (prompt, completion, final answer correct)


class OutcomeRewardModel(torch.nn.Module):
    """A causal LM's transformer body plus a linear head: one logit of P(correct) per sequence."""

    def __init__(self, lm, tokenizer):
        super().__init__()
        self.lm = lm  # the whole causal LM, so that save() writes a checkpoint transformers loads
        self.tokenizer = tokenizer
        self.head = torch.nn.Linear(lm.config.hidden_size, 1)

    @classmethod
    def from_base(cls, path: str | Path, device: str = "cpu", dtype: str = "auto",
                  trust_remote_code: bool = False) -> OutcomeRewardModel:
        """A fresh (untrained) head on the trunk of a causal LM checkpoint (the head in float32)."""
        lm, tokenizer = load_checkpoint(path, device, dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(lm, tokenizer).to(device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) right-padded ids and mask -> (B,) logits read at each row's last real token."""
        # base_model is HF's generic handle on the body without lm_head; its last_hidden_state is
        # hidden_states[-1] of the causal LM, without computing (B, T, vocab) logits we never read.
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                    use_cache=False).last_hidden_state  # (B, T, H)
        last = attention_mask.sum(1) - 1  # (B,) index of the EOS after each completion
        h = hidden[torch.arange(len(last), device=hidden.device), last]  # (B, H)
        return self.head(h.to(self.head.weight.dtype)).squeeze(-1)

    def batch(self, prompts: list[str], completions: list[str]) -> dict[str, torch.Tensor]:
        """Model inputs: prompt + completion + EOS, exactly as SFT tokenizes them."""
        inputs = completion_batch(self.tokenizer, prompts, completions)
        device = self.head.weight.device
        return {"input_ids": inputs["input_ids"].to(device), "attention_mask": inputs["attention_mask"].to(device)}

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str], batch_size: int = 256) -> np.ndarray:
        """(N,) probabilities in [0, 1] that each completion's final answer is correct."""
        if len(prompts) != len(completions):
            raise ReasonlabError(f"orm score: got {len(prompts)} prompts for {len(completions)} completions")
        was_training = self.training
        self.eval()
        # each distinct pair once (a problem's samples repeat, more so as training sharpens the
        # policy), and similar lengths batched together: less padding, same scores
        unique = list(dict.fromkeys(zip(prompts, completions)))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i][0]) + len(unique[i][1]))
        probs = np.zeros(len(unique), dtype=np.float32)
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            logits = self(**self.batch([unique[i][0] for i in idx], [unique[i][1] for i in idx]))
            probs[idx] = torch.sigmoid(logits.float()).cpu().numpy()
        self.train(was_training)
        position = {pair: i for i, pair in enumerate(unique)}
        return probs[[position[pair] for pair in zip(prompts, completions)]]

    def save(self, out: str | Path, meta: dict | None = None) -> Path:
        from safetensors.torch import save_file

        head = {name: t.detach().cpu().contiguous() for name, t in self.head.state_dict().items()}
        # the head goes in with the trunk, in one atomic write: never a trunk without its head
        return save_checkpoint(self.lm, self.tokenizer, out, {"kind": "orm", **(meta or {})},
                               extra=lambda d: save_file(head, str(d / HEAD)))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", dtype: str = "auto",
             trust_remote_code: bool = False) -> OutcomeRewardModel:
        from safetensors.torch import load_file

        path = Path(path)
        if path.is_dir() and not (path / HEAD).is_file():
            raise ReasonlabError(f"checkpoint {path} is not an outcome reward model (no {HEAD})")
        lm, tokenizer = load_checkpoint(path, device, dtype=dtype,  # names the path on every failure
                                        trust_remote_code=trust_remote_code)
        orm = cls(lm, tokenizer)
        try:
            orm.head.load_state_dict(load_file(str(path / HEAD)))
        except Exception as e:  # SafetensorError, or missing / misshapen tensors
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ReasonlabError(f"cannot load checkpoint {path}: bad {HEAD}: {first}") from None
        return orm.to(device).eval()


def train_orm(base: str | Path, examples: list[Example], out: str | Path, cfg: ORMConfig,
              progress: bool = False, log=None, cancel=None) -> dict:
    """Fine-tune trunk + head from the `base` checkpoint on (prompt, completion, correct) examples,
    save the ORM to `out` and return a summary. `log(step, {"loss", "acc"})` is called every 10 steps.
    Once `cancel` (a run's stop signal, a threading.Event) is set, raises Cancelled before the next
    step, saving nothing.
    """
    cfg.validate()
    if not examples:
        raise ReasonlabError("orm: need training examples, got none")
    positives = [e for e in examples if e[2]]
    negatives = [e for e in examples if not e[2]]
    if not positives or not negatives:
        raise ReasonlabError(f"orm: need both correct and incorrect examples, "
                             f"got {len(positives)} correct of {len(examples)}")
    start = time.time()
    torch.manual_seed(cfg.seed)
    orm = OutcomeRewardModel.from_base(base, cfg.device, cfg.dtype, cfg.trust_remote_code)
    orm.train()
    rng = random.Random(cfg.seed)
    opt = adamw(orm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_ema = acc_ema = None
    bar = tqdm(range(cfg.steps), desc="orm", disable=not progress, unit="step")
    for step in bar:
        check_cancel(cancel)
        # 1) draw a batch, half correct and half incorrect when balancing
        if cfg.balance:
            half = cfg.batch_size // 2
            drawn = rng.choices(positives, k=half) + rng.choices(negatives, k=cfg.batch_size - half)
        else:
            drawn = rng.choices(examples, k=cfg.batch_size)
        prompts, completions, correct = zip(*drawn)
        labels = torch.tensor(correct, dtype=torch.float32, device=orm.head.weight.device)  # (B,)
        # 2) loss and step
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (1 - 0.9 * step / cfg.steps)
        logits = orm(**orm.batch(list(prompts), list(completions)))  # (B,)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(orm.parameters(), 1.0)
        opt.step()
        # 3) log
        acc = ((logits.detach() > 0).float() == labels).float().mean().item()
        loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
        acc_ema = acc if acc_ema is None else 0.95 * acc_ema + 0.05 * acc
        bar.set_postfix(loss=f"{loss_ema:.3f}", acc=f"{acc_ema:.2f}")
        if log is not None and ((step + 1) % 10 == 0 or step + 1 == cfg.steps):
            log(step + 1, {"loss": loss_ema, "acc": acc_ema})
    summary = {"loss": loss_ema, "train_acc": acc_ema, "examples": len(examples),
               "positives": len(positives), "wall_s": round(time.time() - start, 1)}
    orm.save(out, {"made_by": "reasonlab orm", "base": str(base), "config": asdict(cfg), **summary})
    return summary


def rerank_choice(scores: list[float], answers: list[str | None]) -> str | None:
    """rerank@k's pick: the answer of the highest-scoring sample that has one (first on ties);
    None when no sample has an answer."""
    if len(scores) != len(answers):
        raise ValueError(f"rerank_choice: got {len(scores)} scores for {len(answers)} answers")
    scored = [(s, -i, a) for i, (s, a) in enumerate(zip(scores, answers)) if a is not None]
    return max(scored)[2] if scored else None
