"""Two checkpoints on the same problems: solve rates, problems gained and lost with a paired test,
answer-distribution shift, diversity change, and aligned samples with text diffs.

A and B are samples DataFrames as `Store.samples(checkpoint_id=...)` returns them. Only problems
both sampled are compared. Per problem:
- solve rate: the fraction of its sampled solutions (sample_idx >= 0) that are correct;
- solved: greedy correctness (sample_idx -1, maj@1), or, for a problem with no greedy row, whether
  the majority vote over its samples is correct (expected accuracy > 1/2 under the tie rule).
A checkpoint with greedy solutions only (an imported greedy evaluation) is compared on them: its
solve rate is its greedy correctness.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine.evaluation.curves import N_BOOT, CI, reference_answers, sampled
from engine.evaluation.metrics import majority_vote


@dataclass
class Comparison:
    per_problem: pd.DataFrame  # problem_id, solve_a, solve_b, solved_a, solved_b, status, tv_distance
    gained: int  # problems B solves and A does not
    lost: int  # problems A solves and B does not
    mcnemar_p: float  # exact McNemar test (two-sided) on the gained / lost counts
    mean_diff: float  # mean over problems of solve_b - solve_a
    diff_lo: float  # paired bootstrap interval of mean_diff
    diff_hi: float
    mean_tv: float  # mean total variation distance between the problems' answer distributions

    def summary(self) -> dict:
        return {"problems": len(self.per_problem), "gained": self.gained, "lost": self.lost,
                "mcnemar_p": self.mcnemar_p, "mean_diff": self.mean_diff, "diff_lo": self.diff_lo,
                "diff_hi": self.diff_hi, "mean_tv": self.mean_tv}


def mcnemar_exact(gained: int, lost: int) -> float:
    """Exact McNemar test: under "no difference" each discordant problem is gained or lost with
    probability 1/2, so p = the two-sided binomial test of `gained` successes in gained + lost
    trials (scipy.stats.binomtest); 1.0 when there are no discordant problems."""
    from scipy.stats import binomtest  # imported on first use: scipy.stats takes ~0.5 s

    n = gained + lost
    return 1.0 if n == 0 else float(binomtest(gained, n, 0.5, alternative="two-sided").pvalue)


def paired_bootstrap(diff: np.ndarray, n_boot: int = N_BOOT, ci: float = CI, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of per-problem differences, resampling problems (pairs are
    kept together, which is what makes it paired)."""
    diff = np.asarray(diff, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))
    lo, hi = np.quantile(diff[idx].mean(1), [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def total_variation(a: list, b: list) -> float:
    """Total variation distance between two empirical answer distributions,
    1/2 sum_x |p_a(x) - p_b(x)|, in [0, 1]; no answer (None) is one bucket."""
    pa, pb = Counter(a), Counter(b)
    return 0.5 * sum(abs(pa[x] / len(a) - pb[x] / len(b)) for x in pa.keys() | pb.keys())


def _per_problem(samples: pd.DataFrame, references: dict) -> pd.DataFrame:
    rows = sampled(samples)
    if rows.empty:  # greedy solutions only (an imported greedy evaluation): they stand for the samples
        rows = samples[samples["sample_idx"] < 0].sort_values("problem_id", kind="stable")
    hit = rows["correct"].fillna(0) == 1
    out = pd.DataFrame({"solve": hit.groupby(rows["problem_id"]).mean()})
    out["answers"] = rows.groupby("problem_id")["answer"].agg(lambda s: [None if pd.isna(a) else str(a) for a in s])
    greedy = samples[samples["sample_idx"] < 0].groupby("problem_id")["correct"].first()
    solved = greedy.reindex(out.index).fillna(-1).astype(int)  # -1: no greedy row
    for problem_id in out.index[solved < 0]:
        vote = majority_vote(out.at[problem_id, "answers"])
        ref = references.get(problem_id)
        solved[problem_id] = int(ref is not None and vote.accuracy(ref) > 0.5)
    out["solved"] = solved.astype(bool)
    return out


def compare_checkpoints(samples_a: pd.DataFrame, samples_b: pd.DataFrame, references=None,
                        n_boot: int = N_BOOT, ci: float = CI, seed: int = 0) -> Comparison:
    """Checkpoint B against checkpoint A on the problems both have samples for. references: as in
    curves.reference_answers (only needed for problems without a greedy row)."""
    refs = {**reference_answers(samples_a, references), **reference_answers(samples_b, references)}
    a, b = _per_problem(samples_a, refs), _per_problem(samples_b, refs)
    common = a.index.intersection(b.index).sort_values()
    if common.empty:
        raise ValueError("compare: the two checkpoints have no sampled problem in common")
    a, b = a.loc[common], b.loc[common]
    status = np.select([a["solved"] & b["solved"], ~a["solved"] & b["solved"], a["solved"] & ~b["solved"]],
                       ["both", "gained", "lost"], "neither")
    per_problem = pd.DataFrame({
        "problem_id": common, "solve_a": a["solve"].to_numpy(), "solve_b": b["solve"].to_numpy(),
        "solved_a": a["solved"].to_numpy(), "solved_b": b["solved"].to_numpy(), "status": status,
        "tv_distance": [total_variation(x, y) for x, y in zip(a["answers"], b["answers"])],
    })
    gained, lost = int((status == "gained").sum()), int((status == "lost").sum())
    diff = per_problem["solve_b"].to_numpy() - per_problem["solve_a"].to_numpy()
    lo, hi = paired_bootstrap(diff, n_boot, ci, seed)
    return Comparison(per_problem, gained, lost, mcnemar_exact(gained, lost), float(diff.mean()), lo, hi,
                      float(per_problem["tv_distance"].mean()))


def diversity_change(per_problem_a: pd.DataFrame, per_problem_b: pd.DataFrame) -> pd.DataFrame:
    """Each diversity measure's mean over the problems both tables have (the `per_problem` of two
    `checkpoint_diversity` results): measure, mean_a, mean_b, delta (B - A)."""
    a = per_problem_a.set_index("problem_id")
    b = per_problem_b.set_index("problem_id")
    common = a.index.intersection(b.index)
    measures = [m for m in a.columns if m in b.columns and m != "samples"]
    records = [{"measure": m, "mean_a": float(a.loc[common, m].mean()), "mean_b": float(b.loc[common, m].mean())}
               for m in measures]
    table = pd.DataFrame(records, columns=["measure", "mean_a", "mean_b"])
    return table.assign(delta=table["mean_b"] - table["mean_a"])


def text_diff(a: str, b: str) -> str:
    """A line diff of two solutions (difflib.ndiff): '- ' lines only in a, '+ ' only in b,
    '  ' shared, '? ' hints at the changed characters."""
    return "\n".join(difflib.ndiff(a.split("\n"), b.split("\n")))


def aligned_samples(samples_a: pd.DataFrame, samples_b: pd.DataFrame, problem_id: str) -> pd.DataFrame:
    """One problem's samples of A and B side by side: the greedy pair first, then pairs with the
    same text, then the rest in sample_idx order (samples are i.i.d., so any pairing is fair; this
    one puts the differences together). Columns: sample_idx_a / _b, text_a / _b, answer_a / _b,
    correct_a / _b, same (texts equal), diff (text_diff). A side with fewer samples leaves
    gaps (None)."""
    a = samples_a[samples_a["problem_id"] == problem_id].sort_values("sample_idx")
    b = samples_b[samples_b["problem_id"] == problem_id].sort_values("sample_idx")
    a_rows, b_rows = a.to_dict("records"), b.to_dict("records")
    pairs: list[tuple[dict | None, dict | None]] = []
    a_greedy = [r for r in a_rows if r["sample_idx"] < 0]
    b_greedy = [r for r in b_rows if r["sample_idx"] < 0]
    if a_greedy or b_greedy:
        pairs.append((a_greedy[0] if a_greedy else None, b_greedy[0] if b_greedy else None))
    rest_a = [r for r in a_rows if r["sample_idx"] >= 0]
    rest_b = [r for r in b_rows if r["sample_idx"] >= 0]
    by_text: dict[str, list[dict]] = {}
    for r in rest_b:
        by_text.setdefault(r["text"], []).append(r)
    unmatched_a = []
    for r in rest_a:
        same = by_text.get(r["text"])
        if same:
            pairs.append((r, same.pop(0)))
        else:
            unmatched_a.append(r)
    matched_b = {id(p[1]) for p in pairs if p[1] is not None}
    unmatched_b = [r for r in rest_b if id(r) not in matched_b]
    for i in range(max(len(unmatched_a), len(unmatched_b))):
        pairs.append((unmatched_a[i] if i < len(unmatched_a) else None,
                      unmatched_b[i] if i < len(unmatched_b) else None))

    def side(r, column):
        return None if r is None else r.get(column)

    records = []
    for ra, rb in pairs:
        text_a, text_b = side(ra, "text"), side(rb, "text")
        records.append({"sample_idx_a": side(ra, "sample_idx"), "sample_idx_b": side(rb, "sample_idx"),
                        "text_a": text_a, "text_b": text_b, "answer_a": side(ra, "answer"),
                        "answer_b": side(rb, "answer"), "correct_a": side(ra, "correct"),
                        "correct_b": side(rb, "correct"), "same": text_a == text_b,
                        "diff": text_diff(text_a or "", text_b or "")})
    table = pd.DataFrame(records, columns=["sample_idx_a", "sample_idx_b", "text_a", "text_b", "answer_a",
                                           "answer_b", "correct_a", "correct_b", "same", "diff"])
    return table.astype({"sample_idx_a": "Int64", "sample_idx_b": "Int64"})  # ints with gaps
