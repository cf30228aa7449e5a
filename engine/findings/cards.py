"""One definition per finding: its claim and source, the suite runs it needs, and the judge that
computes its verdict (with its uncertainty) and its evidence tables from the user's own runs.

A verdict's status is one of:
  waiting            the runs it needs have not finished
  too little data    they have, but share fewer problems (or points) than a verdict needs
  confirmed          the data agrees with the claim (the numbers and intervals say how strongly)
  contradicted       the data disagrees with the claim
  inconclusive       the intervals allow both
  measured           a table of results rather than a claim (F5)
Nothing here knows the paper's numbers: every verdict is computed from the runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.findings import stats
from engine.findings.evidence import Evidence
from engine.findings.suite import DEEP_RUNS, LABELS

STATUSES = ("waiting", "too little data", "confirmed", "contradicted", "inconclusive", "measured")
PAIRED = "paired bootstrap over the same {n} test problems, 95% intervals"


@dataclass
class Verdict:
    status: str
    text: str  # one or two sentences with the numbers and their intervals
    numbers: dict = field(default_factory=dict)  # everything the text states, for --json


@dataclass
class Finding:
    key: str  # "F1"
    title: str
    claim: str  # one sentence
    source: str  # paper and section
    runs: tuple[str, ...]  # suite keys it needs
    experiment: str  # what the runs are, in a sentence
    judge: Callable[[Evidence], tuple[Verdict, dict]]  # -> verdict, evidence tables for the figure


def waiting(ev: Evidence, keys) -> Verdict:
    missing = [LABELS[k] for k in keys if not ev.finished(k)]
    return Verdict("waiting", f"Waiting for {', '.join(missing)} to finish.", {"waiting_for": missing})


def little(what: str) -> Verdict:
    return Verdict("too little data", f"Not enough {what} to tell (need at least {stats.MIN_PROBLEMS}).")


def _maj1(table) -> pd.Series:
    return stats.per_problem(table, "maj@1")


def _passK(table, k: int) -> pd.Series:
    return stats.per_problem(table, f"pass@{k}")


def _training_table(ev: Evidence, keys) -> pd.DataFrame:
    """maj@1 and pass@K (with intervals) at every evaluated checkpoint of some runs: the figures'
    lines. Columns: key, run, step, samples_seen, metric, value, lo, hi."""
    rows = []
    for key in keys:
        if key not in ev.runs:
            continue
        ck = ev.checkpoints(key)
        for step, seen in zip(ck["step"], ck["samples_seen"]):
            table = ev.outcome(key, int(step))
            if table is None or table.empty:
                continue
            k = int(table["n"].min())
            for metric, values in (("maj@1", _maj1(table)), ("pass@K", _passK(table, k) if k else None)):
                if values is None or values.empty:
                    continue
                m, lo, hi = stats.bootstrap_band(values.to_numpy(float), n_boot=200, seed=0)  # a figure's band
                rows.append({"key": key, "run": ev.label(key), "step": int(step), "samples_seen": seen,
                             "metric": metric, "value": float(m), "lo": float(lo), "hi": float(hi), "K": k})
    return pd.DataFrame(rows, columns=["key", "run", "step", "samples_seen", "metric", "value", "lo", "hi", "K"])


# -- F1 -------------------------------------------------------------------------------------------


def judge_f1(ev: Evidence):
    tables = {"training": _training_table(ev, ("ei", "ppo", "grpo", "rcrl"))}
    others = [k for k in ("ppo", "grpo", "rcrl") if ev.finished(k)]
    if not ev.finished("ei") or not others:
        return waiting(ev, ("ei", "ppo", "grpo", "rcrl")), tables
    ei = _maj1(ev.final("ei"))
    parts, numbers, worse, n = [], {"ei_maj@1": stats.mean(ei)}, [], 0
    for k in others:
        other = _maj1(ev.final(k))
        d = stats.paired(ei, other)
        if d is None:
            return little("shared test problems"), tables
        n = d.n
        numbers[f"{k}_maj@1"], numbers[f"ei_minus_{k}"] = stats.mean(other), d
        how = "EI better" if d.above_zero else f"{LABELS[k]} better" if d.below_zero else "equal within noise"
        parts.append(f"vs {LABELS[k]} {stats.mean(other)}: EI − {LABELS[k]} = {d.signed()}, {how}")
        if d.below_zero:
            worse.append(LABELS[k])
    pending = [LABELS[k] for k in ("ppo", "grpo", "rcrl") if not ev.finished(k)]
    text = (f"EI maj@1 {numbers['ei_maj@1']} " + "; ".join(parts) + f" ({PAIRED.format(n=n)}, same sample budget)."
            + (f" {', '.join(worse)} beat EI: the paper's finding does not hold here." if worse else "")
            + (f" Still running: {', '.join(pending)}." if pending else ""))
    return Verdict("contradicted" if worse else "confirmed", text, numbers), tables


# -- F2 -------------------------------------------------------------------------------------------


def judge_f2(ev: Evidence):
    tables = {"training": _training_table(ev, ("ppo", "ppo-dense", "ppo-orm"))}
    variants = [k for k in ("ppo-dense", "ppo-orm") if ev.finished(k)]
    if not ev.finished("ppo") or not variants:
        return waiting(ev, ("ppo", "ppo-dense", "ppo-orm")), tables
    sparse = _maj1(ev.final("ppo"))
    parts, numbers, helped, n = [], {"sparse_maj@1": stats.mean(sparse)}, [], 0
    for k in variants:
        d = stats.paired(_maj1(ev.final(k)), sparse)
        if d is None:
            return little("shared test problems"), tables
        n, numbers[f"{k}_minus_sparse"] = d.n, d
        how = "helps" if d.above_zero else "hurts" if d.below_zero else "no significant difference"
        parts.append(f"{LABELS[k]} − sparse = {d.signed()} ({how})")
        if d.above_zero:
            helped.append(LABELS[k])
    text = (f"PPO maj@1 with the sparse reward {numbers['sparse_maj@1']}; " + "; ".join(parts)
            + f" ({PAIRED.format(n=n)})."
            + (f" {', '.join(helped)} helped significantly: the paper found they help little." if helped else ""))
    return Verdict("contradicted" if helped else "confirmed", text, numbers), tables


# -- F3 -------------------------------------------------------------------------------------------


def judge_f3(ev: Evidence):
    tables = {"training": _training_table(ev, ("ei", "ppo"))}
    done = [k for k in ("ei", "ppo") if ev.finished(k)]
    if not done:
        return waiting(ev, ("ei", "ppo")), tables
    parts, numbers, results = [], {}, []
    for key in done:
        ck = ev.checkpoints(key)
        trained = ck[ck["step"] > 0]
        if len(trained) < 2:
            return little(f"checkpoints in {LABELS[key]} (two after the base)"), tables
        first, last = ev.outcome(key, int(trained["step"].iloc[0])), ev.outcome(key, int(trained["step"].iloc[-1]))
        k = int(min(first["n"].min(), last["n"].min()))
        d = stats.difference_of_changes(_passK(first, k), _passK(last, k), _maj1(first), _maj1(last))
        if d is None:
            return little("shared test problems"), tables
        d = stats.Interval(-d.value, -d.hi, -d.lo, d.n)  # maj@1's rise minus pass@K's, first -> last checkpoint
        line = tables["training"]
        passk = line[(line["key"] == key) & (line["metric"] == "pass@K")]
        sat = stats.saturation_step(passk["step"].tolist(), passk["value"].tolist())
        maj_rise = stats.paired(_maj1(last), _maj1(first))
        pass_rise = stats.paired(_passK(last, k), _passK(first, k))
        numbers[key] = {"maj@1_rise": maj_rise, "pass@K_rise": pass_rise, "difference": d,
                        "pass@K_saturation_step": sat, "K": k}
        results.append("confirmed" if d.above_zero else "contradicted" if d.below_zero else "inconclusive")
        parts.append(f"{LABELS[key]}: from step {int(trained['step'].iloc[0])} to {int(trained['step'].iloc[-1])} "
                     f"maj@1 rose {maj_rise.signed()} and pass@{k} {pass_rise.signed()} (difference "
                     f"{d.signed()}); pass@{k} made 90% of its gain by step {sat}")
    status = results[0] if len(set(results)) == 1 else "inconclusive"
    pending = [LABELS[k] for k in ("ei", "ppo") if not ev.finished(k)]
    text = ("; ".join(parts) + f" ({PAIRED.format(n=numbers[done[0]]['difference'].n)})."
            + (" Their verdicts differ." if len(set(results)) > 1 else "")
            + (f" Still running: {', '.join(pending)}." if pending else ""))
    return Verdict(status, text, numbers), tables


# -- F4 -------------------------------------------------------------------------------------------


def judge_f4(ev: Evidence):
    tables = {"training": _training_table(ev, ("sft", "ei"))}
    if not (ev.finished("sft") and ev.finished("ei")) or ev.base() is None:
        return waiting(ev, ("sft", "ei")), tables
    base, sft, ei = ev.base(), ev.final("sft"), ev.final("ei")
    k = int(min(base["n"].min(), sft["n"].min(), ei["n"].min()))
    maj_gain = stats.paired(_maj1(sft), _maj1(base))
    pass_vs_ei = stats.paired(_passK(sft, k), _passK(ei, k))
    pass_vs_base = stats.paired(_passK(sft, k), _passK(base, k))
    ei_pass = stats.paired(_passK(ei, k), _passK(base, k))
    if None in (maj_gain, pass_vs_ei, pass_vs_base, ei_pass):
        return little("shared test problems"), tables
    numbers = {"sft_maj@1_gain": maj_gain, "sft_minus_ei_pass@K": pass_vs_ei, "sft_pass@K_change": pass_vs_base,
               "ei_pass@K_change": ei_pass, "K": k}
    if maj_gain.above_zero and pass_vs_ei.below_zero:
        status, how = "confirmed", "as the paper found"
    elif maj_gain.below_zero or pass_vs_ei.above_zero:
        status, how = "contradicted", "unlike the paper"
    else:
        status, how = "inconclusive", "the intervals allow both"
    text = (f"Continued SFT changed maj@1 by {maj_gain.signed()} and pass@{k} by {pass_vs_base.signed()} from the base; "
            f"EI changed pass@{k} by {ei_pass.signed()}; continued SFT − EI at pass@{k} = {pass_vs_ei.signed()}: "
            f"{how} ({PAIRED.format(n=maj_gain.n)}).")
    return Verdict(status, text, numbers), tables


# -- F5 -------------------------------------------------------------------------------------------

TABLE_RUNS = ("ei", "ppo", "ppo-dense", "ppo-orm", "grpo", "rcrl", "sft")


def results_table(ev: Evidence, rerank_scores: Callable | None = None) -> pd.DataFrame:
    """The paper's results table: one row per finished run, maj@1, maj@K, rerank@K and pass@K at
    its last checkpoint, each with its 95% interval. rerank@K is by `rerank_scores` (checkpoint_id
    -> per-sample scores table) when given, else by log-probability."""
    from engine.evaluation.curves import curve_table

    rows = []
    for key in TABLE_RUNS:
        if not ev.finished(key):
            continue
        ck = ev.checkpoints(key)
        cid = int(ck["checkpoint_id"].iloc[-1])
        samples = ev.store.sample_rows(["id", "problem_id", "sample_idx", "answer", "correct", "logprob"],
                                       checkpoint_id=cid, kind="eval")
        drawn = samples[samples["sample_idx"] >= 0]
        if drawn.empty:
            continue
        K = int(drawn.groupby("problem_id").size().min())
        scores = rerank_scores(cid, samples) if rerank_scores else "logprob"
        curves = curve_table(samples, ks=[K], scores=scores, n_boot=1000)
        greedy = _maj1(ev.final(key))
        maj1 = stats.mean(greedy) if len(greedy) >= stats.MIN_PROBLEMS else None
        row = {"run": ev.label(key), "key": key, "K": K, "problems": int(drawn["problem_id"].nunique())}
        for name, iv in [("maj@1", maj1)] + [(f"{m}@K", stats.Interval(float(r.value), float(r.lo), float(r.hi), int(r.problems)))
                                             for m, r in zip(curves["metric"], curves.itertuples())]:
            row[name], row[f"{name} lo"], row[f"{name} hi"] = (iv.value, iv.lo, iv.hi) if iv else (np.nan,) * 3
        rows.append(row)
    columns = ["run", "key", "K", "problems"] + [f"{m}{s}" for m in ("maj@1", "maj@K", "rerank@K", "pass@K")
                                                 for s in ("", " lo", " hi")]
    return pd.DataFrame(rows).reindex(columns=columns)


def judge_f5(ev: Evidence, rerank_scores: Callable | None = None, orm_name: str | None = None):
    orm_name = orm_name or "log-probability"
    table = results_table(ev, rerank_scores)
    tables = {"results": table, "rerank_by": orm_name}
    if table.empty:
        return waiting(ev, TABLE_RUNS), tables
    best = table.sort_values("maj@1", ascending=False).iloc[0]
    gaps = table["pass@K"] - table["maj@1"]
    text = (f"{len(table)} runs; best maj@1: {best['run']} {best['maj@1']:.3f} [{best['maj@1 lo']:.3f}, "
            f"{best['maj@1 hi']:.3f}]; pass@K exceeds maj@1 by {gaps.min():.3f} to {gaps.max():.3f} across runs "
            f"(K={int(table['K'].min())}; rerank@K by {orm_name}; 95% bootstrap intervals over problems).")
    return Verdict("measured", text, {"rows": table.drop(columns=["key"]).to_dict("records")}), tables


# -- F6 -------------------------------------------------------------------------------------------


def judge_f6(ev: Evidence):
    tables: dict = {"curves": pd.DataFrame(columns=["run", "k", "value"]), "sets": {}}
    trained_keys = [k for k in DEEP_RUNS if ev.finished(k)]
    deep = ev.base(deep=True)
    base = deep if deep is not None and len(deep) else ev.base()
    if not trained_keys or base is None:
        return waiting(ev, DEEP_RUNS), tables
    curves, parts, numbers, results = [], [], {}, []
    for key in trained_keys:
        # the deep evaluations (pass@k to 256 on fewer problems) where both have one, else the
        # evaluation every checkpoint has (runs from before the suite made deep ones)
        trained, base_here = ev.final(key, deep=True), base
        if base is not deep or trained is None or not len(trained):
            trained, base_here = ev.final(key), ev.base()
        K = int(min(base_here["n"].min(), trained["n"].min()))
        ks = sorted({1, *[2**i for i in range(1, 12) if 2**i < K], K})
        cross = stats.crossover(base_here, trained, ks)
        small, large = (stats.paired(_passK(trained, k), _passK(base_here, k)) for k in (1, K))
        if cross is None or small is None:
            return little("shared test problems"), tables
        if not tables["curves"].shape[0] and not curves:
            curves += [{"run": "base", "k": k, "value": v} for k, v in zip(ks, cross["base"])]
        curves += [{"run": ev.label(key), "k": k, "value": v} for k, v in zip(ks, cross["trained"])]
        sets = stats.solved_sets(base_here, trained)
        tables["sets"][ev.label(key)] = sets
        numbers[key] = {"rl_minus_base_pass@1": small, f"rl_minus_base_pass@{K}": large, "crossover": cross["k"],
                        "crossover_interval": [cross["k_lo"], cross["k_hi"]],
                        "share_of_resamples_crossing": cross["share_crossing"], "solved": sets, "K": K}
        where = (f"the base catches up at k = {cross['k']} (95% of resamples that cross: {cross['k_lo']} to "
                 f"{cross['k_hi']}; {cross['share_crossing']:.0%} cross)" if cross["k"]
                 else f"no crossover up to k = {K} ({cross['share_crossing']:.0%} of resamples cross)")
        parts.append(f"{LABELS[key]} − base: pass@1 {small.signed()}, pass@{K} {large.signed()}; {where}; "
                     f"solved by the base only {sets['base_only']}, by {LABELS[key]} only {sets['trained_only']}")
        results.append("confirmed" if small.above_zero and not large.above_zero else
                       "contradicted" if large.above_zero or small.below_zero else "inconclusive")
    tables["curves"] = pd.DataFrame(curves)
    status = results[0] if len(set(results)) == 1 else "inconclusive"
    text = "; ".join(parts) + f" ({PAIRED.format(n=numbers[trained_keys[0]]['rl_minus_base_pass@1'].n)})."
    return Verdict(status, text, numbers), tables


# -- F7 -------------------------------------------------------------------------------------------

ENTROPY_RUNS = ("grpo", "ppo", "ei", "rcrl")


def judge_f7(ev: Evidence):
    points = []
    for key in ENTROPY_RUNS:
        m = ev.metrics(key, ["entropy", "train/accuracy"]).dropna(subset=["entropy", "train/accuracy"])
        points += [{"key": key, "run": ev.label(key), "step": int(s), "entropy": h, "accuracy": r}
                   for s, h, r in zip(m["step"], m["entropy"], m["train/accuracy"])]
    tables = {"points": pd.DataFrame(points, columns=["key", "run", "step", "entropy", "accuracy"]), "fits": {}}
    done = [k for k in ("grpo", "ppo") if ev.finished(k)]
    if not done:
        return waiting(ev, ("grpo", "ppo")), tables
    parts, numbers, results = [], {}, []
    for key in done:
        pts = tables["points"][tables["points"]["key"] == key]
        fit = stats.entropy_fit(pts["entropy"].to_numpy(), pts["accuracy"].to_numpy())
        if fit is None:
            return Verdict("too little data", f"{LABELS[key]} logged fewer than 4 steps with entropy and accuracy "
                                              "(runs from before entropy was logged have none)."), tables
        tables["fits"][key] = fit
        h0, h1 = pts["entropy"].iloc[: max(1, len(pts) // 5)].mean(), pts["entropy"].iloc[-max(1, len(pts) // 5):].mean()
        numbers[key] = {"a": fit["a"], "b": fit["b"], "ceiling": fit["ceiling"], "r2": fit["r2"],
                        "entropy_start": float(h0), "entropy_end": float(h1), "points": fit["points"]}
        collapsed = h1 < h0
        results.append("confirmed" if fit["a"].above_zero and collapsed else
                       "contradicted" if fit["a"].below_zero or not collapsed else "inconclusive")
        parts.append(f"{LABELS[key]}: entropy {h0:.3f} → {h1:.3f} nats; R = −a·exp(H) + b with a = {fit['a']}, "
                     f"R² {fit['r2']:.2f}, predicted ceiling at H = 0: {fit['ceiling']}")
    status = results[0] if len(set(results)) == 1 else "inconclusive"
    text = "; ".join(parts) + " (intervals: bootstrap over the logged steps)."
    return Verdict(status, text, numbers), tables


# -- F8 -------------------------------------------------------------------------------------------


def judge_f8(ev: Evidence):
    rollouts = ev.rollouts("grpo")
    tables = {"steps": stats.wasted_groups(rollouts)}
    if not ev.finished("grpo"):
        return waiting(ev, ("grpo",)), tables
    flags = stats.group_flags(rollouts)
    share = stats.mean(flags)
    if share is None:
        return little("groups"), tables
    steps = tables["steps"]
    expected = float((steps["expected"] * steps["groups"]).sum() / steps["groups"].sum())
    numbers = {"wasted": share, "expected_from_solve_rate": expected, "groups": int(len(flags)),
               "n": int(steps["n"].median())}
    status = "confirmed" if share.hi >= expected else "contradicted"
    text = (f"{share.value:.1%} [{share.lo:.1%}, {share.hi:.1%}] of GRPO's {len(flags)} groups (n = {numbers['n']}) had "
            f"all samples right or all wrong, so zero advantage; p^n + (1 − p)^n from the mean solve rate predicts "
            f"{expected:.1%}" + (" — problems differ in difficulty, so more groups are wasted than the mean predicts."
                                 if share.lo > expected else "."))
    return Verdict(status, text, numbers), tables


FINDINGS: list[Finding] = [
    Finding("F1", "Expert iteration matches PPO",
            "Expert iteration does as well as or better than PPO (and GRPO and RCRL) at maj@1 for the same number "
            "of samples, with similar sample complexity.",
            "Havrilla et al. 2024, arXiv 2403.04642, §4.1 and Figure 2", ("ei", "ppo", "grpo", "rcrl"),
            "EI, PPO, GRPO and RCRL from the shipped base, each sampling the same number of training solutions.",
            judge_f1),
    Finding("F2", "Dense and learned rewards help little",
            "Dense rewards (intermediate results of the reference) and an outcome reward model as the reward help "
            "little over the sparse reward.",
            "Havrilla et al. 2024, §4.2 and Table 2", ("ppo", "ppo-dense", "ppo-orm"),
            "PPO with the sparse, the dense and the ORM reward, otherwise identical.", judge_f2),
    Finding("F3", "pass@K saturates early",
            "pass@K saturates early in training while maj@1 keeps rising: RL barely explores beyond what the SFT "
            "model already solves.",
            "Havrilla et al. 2024, §5 and Figure 4", ("ei", "ppo"),
            "EI and PPO, evaluated at every checkpoint (maj@1 greedy, pass@K from K samples).", judge_f3),
    Finding("F4", "Continued SFT trades pass@K for maj@1",
            "Continued supervised fine-tuning raises maj@1 at the expense of pass@K, while RL keeps pass@K.",
            "Havrilla et al. 2024, §5", ("sft", "ei"),
            "Continued SFT on the reference solutions beside EI, from the same base, for the same problems.",
            judge_f4),
    Finding("F5", "The results table",
            "For each algorithm and reward: maj@1, maj@K, rerank@K and pass@K with 95% intervals.",
            "Havrilla et al. 2024, Tables 1 and 2", TABLE_RUNS,
            "Every run of the suite at its last checkpoint.", judge_f5),
    Finding("F6", "The base catches up at large k",
            "RL models win at small k, but the base model catches up with or overtakes them at large k in pass@k.",
            "Yue et al. 2025, arXiv 2504.13837, §3", DEEP_RUNS,
            "pass@k up to k = 256 for the base and each RL run's last checkpoint: a deep evaluation of 256 samples "
            "on each of the first 64 test problems (the suite's size; the smoke size draws 8 on 24).", judge_f6),
    Finding("F7", "Entropy collapses and bounds accuracy",
            "Policy entropy collapses early in RL, and accuracy follows R = −a·exp(H) + b, which predicts a ceiling.",
            "Cui et al. 2025, arXiv 2505.22617, §2", ("grpo", "ppo"),
            "The mean token entropy of every step's samples against that step's accuracy.", judge_f7),
    Finding("F8", "GRPO wastes uniform groups",
            "GRPO learns nothing from groups whose n samples are all right or all wrong; their share is at least "
            "p^n + (1 − p)^n for solve rate p.",
            "Shao et al. 2024 (GRPO); the zero-advantage share as in DAPO, Yu et al. 2025, arXiv 2503.14476, §3.2",
            ("grpo",), "GRPO's rollouts at every step, grouped by problem.", judge_f8),
]
BY_KEY = {f.key: f for f in FINDINGS}
