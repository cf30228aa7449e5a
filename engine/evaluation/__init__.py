"""Evaluation: pass@k, majority vote and maj@k over sampled answers."""

from engine.evaluation.metrics import Vote, curves, ks_up_to, maj_at_k, majority_vote, pass_at_k

__all__ = ["Vote", "curves", "ks_up_to", "maj_at_k", "majority_vote", "pass_at_k"]
