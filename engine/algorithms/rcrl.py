"""Return-conditioned RL (RCRL; as compared by Havrilla et al. 2024, after decision transformers
and Quark): instead of discarding incorrect samples as expert iteration does, train on *every*
sample with its return written in front of it, then ask for a high return at inference.

Each round: sample K solutions per problem (conditioned on <|good|> once the policy has learnt the
token), label each with <|good|> (correct) or <|bad|> (incorrect) placed after the prompt, add the
deduplicated labelled solutions to the dataset, fine-tune, and evaluate sampling after <|good|>.
The round loop is expert iteration's; only the selection differs.
"""

from __future__ import annotations

from engine.algorithms.context import RunContext
from engine.algorithms.expert_iteration import dedup_key, run_rounds
from engine.algorithms.rollout import Rollout
from engine.config import RCRLConfig

GOOD, BAD = "<|good|>", "<|bad|>"  # reserved in the built-in tokenizer, so no embedding resize


def label_all(ctx: RunContext, rollouts: list[Rollout]) -> list[tuple[tuple, str, str]]:
    """Every sample, its prompt followed by the return token it earned."""
    out = []
    for r in rollouts:
        token = GOOD if r.score.correct else BAD
        out.append((dedup_key(ctx, r, token), ctx.prompt(r.problem) + token, r.completion.text))
    return out


def train(ctx: RunContext, cfg: RCRLConfig) -> None:
    _check_tokens(cfg)
    run_rounds(ctx, cfg, label_all, sample_suffix=GOOD)


def _check_tokens(cfg: RCRLConfig):
    """A downloaded tokenizer lacks the return tokens; say so instead of training on byte soup."""
    from transformers import AutoTokenizer

    from engine.errors import ReasonlabError

    tok = AutoTokenizer.from_pretrained(cfg.base, local_files_only=True, trust_remote_code=cfg.trust_remote_code)
    missing = [t for t in (GOOD, BAD) if t not in tok.get_vocab()]
    if missing:
        raise ReasonlabError(f"rcrl needs the return tokens {', '.join(missing)} in the tokenizer of {cfg.base}; "
                             "checkpoints from `reasonlab sft` have them")
