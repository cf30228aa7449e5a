"""Evaluation: pass@k, majority vote and maj@k over sampled answers, and the analysis of stored
samples: curves with bootstrap bands, diversity, solution trees, checkpoint comparisons."""

from engine.evaluation.compare import (Comparison, aligned_samples, compare_checkpoints, diversity_change,
                                       mcnemar_exact, text_diff)
from engine.evaluation.curves import (bootstrap_band, checkpoint_curves, curve_table, orm_scorer,
                                      per_problem_curves, rerank_at_ks, training_curves)
from engine.evaluation.diversity import (CheckpointDiversity, answer_entropy, checkpoint_diversity, distinct_n,
                                         diversity_by_checkpoint, embedding_diversity, problem_diversity, self_bleu)
from engine.evaluation.metrics import Vote, curves, ks_up_to, maj_at_k, majority_vote, pass_at_k
from engine.evaluation.trees import solution_tree, tree_layout

__all__ = [
    "Vote", "curves", "ks_up_to", "maj_at_k", "majority_vote", "pass_at_k",
    "bootstrap_band", "checkpoint_curves", "curve_table", "orm_scorer", "per_problem_curves", "rerank_at_ks",
    "training_curves",
    "CheckpointDiversity", "answer_entropy", "checkpoint_diversity", "distinct_n", "diversity_by_checkpoint",
    "embedding_diversity", "problem_diversity", "self_bleu",
    "solution_tree", "tree_layout",
    "Comparison", "aligned_samples", "compare_checkpoints", "diversity_change", "mcnemar_exact", "text_diff",
]
