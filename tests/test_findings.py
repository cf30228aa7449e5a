"""The Findings layer: the statistics, every verdict on synthetic stores whose answer is known (the
paper confirmed, contradicted, too little data, waiting), the suite's configs and queueing, the
results table's exports and `reasonlab findings`."""

import json

import numpy as np
import pandas as pd
import pytest

from engine import cli, findings, jobs
from engine.config import config_from_dict
from engine.findings import stats, suite, tables
from engine.store import Store
from tests.findings_store import CONFIRMING, Plan, fabricate

# -- statistics -------------------------------------------------------------------------------------


def test_outcomes_table_counts_each_problems_samples_and_greedy_answer():
    rows = pd.DataFrame({"problem_id": ["a"] * 4 + ["b"] * 3, "sample_idx": [-1, 0, 1, 2, 0, 1, 2],
                         "correct": [1, 1, 0, None, 0, 0, 1]})
    table = stats.outcomes(rows)
    assert table.loc["a"].tolist() == [1.0, 1.0, 3.0]
    assert np.isnan(table.loc["b", "greedy"]) and table.loc["b", ["c", "n"]].tolist() == [1.0, 3.0]
    assert stats.per_problem(table, "maj@1").index.tolist() == ["a"]
    assert stats.per_problem(table, "pass@3").tolist() == [1.0, 1.0]
    assert stats.per_problem(table, "pass@1").round(6).tolist() == [round(1 / 3, 6)] * 2


def test_paired_interval_pairs_problems_and_needs_enough_of_them():
    ids = [f"p{i}" for i in range(40)]
    a = pd.Series([1.0] * 30 + [0.0] * 10, index=ids)
    b = pd.Series([0.0] * 10 + [1.0] * 20 + [0.0] * 10, index=ids)
    d = stats.paired(a, b)
    assert d.value == pytest.approx(0.25) and d.lo > 0 and d.n == 40
    assert stats.paired(a, b.iloc[::-1]).value == pytest.approx(0.25)  # aligned by problem, not position
    assert stats.paired(a.iloc[:10], b.iloc[:10]) is None


def test_entropy_fit_recovers_the_law_it_fits():
    H = np.linspace(0.2, 1.5, 12)
    R = -0.1 * np.exp(H) + 0.7
    fit = stats.entropy_fit(H, R)
    assert fit["a"].value == pytest.approx(0.1) and fit["ceiling"].value == pytest.approx(0.6)
    assert fit["r2"] == pytest.approx(1.0)
    assert stats.entropy_fit(H[:3], R[:3]) is None and stats.entropy_fit(np.ones(6), np.arange(6.0)) is None


def test_saturation_step_is_where_most_of_the_gain_is_made():
    assert stats.saturation_step([0, 10, 20, 30], [0.4, 0.58, 0.6, 0.6]) == 20
    assert stats.saturation_step([0, 10, 20], [0.4, 0.3, 0.2]) == 0
    assert stats.saturation_step([0], [0.4]) is None


def test_crossover_finds_where_the_base_catches_up():
    ids = [f"p{i}" for i in range(60)]
    # the base solves every problem 2 times in 16; the trained model half the problems 12 in 16, the rest never
    base = pd.DataFrame({"greedy": 0.0, "c": 2.0, "n": 16.0}, index=ids)
    trained = pd.DataFrame({"greedy": 1.0, "c": [12.0] * 30 + [0.0] * 30, "n": 16.0}, index=ids)
    cross = stats.crossover(base, trained, [1, 2, 4, 8, 16])
    assert cross["k"] == 8 and cross["share_crossing"] == 1.0
    # equal at pass@16 counts as caught up; a base that never solves half the problems never does
    never = stats.crossover(base.assign(c=[2.0] * 30 + [0.0] * 30), trained.assign(c=12.0), [1, 2, 4, 8, 16])
    assert never["k"] is None and never["share_crossing"] == 0.0
    assert stats.solved_sets(base, trained) == {"base_only": 30, "trained_only": 0, "both": 30, "neither": 0}


def test_wasted_groups_against_the_share_the_solve_rate_predicts():
    rows = pd.DataFrame({"step": 1, "problem_id": ["a"] * 4 + ["b"] * 4, "sample_idx": list(range(4)) * 2,
                         "correct": [1, 1, 1, 1, 0, 1, 0, 1]})
    table = stats.wasted_groups(rows)
    assert table["wasted"].tolist() == [0.5] and table["solve"].tolist() == [0.75]
    assert table["expected"].iloc[0] == pytest.approx(0.75**4 + 0.25**4)
    assert stats.group_flags(rows).tolist() == [1.0, 0.0]


# -- verdicts on synthetic stores --------------------------------------------------------------------

def verdicts(store, base, **kw):
    return {c.finding.key: c.verdict for c in findings.cards(store, "smoke", base, **kw)}


@pytest.fixture(scope="module")
def suite_base(tmp_path_factory):
    from engine.model.presets import untrained_checkpoint

    return untrained_checkpoint(tmp_path_factory.mktemp("findings") / "base")


def test_every_finding_waits_for_its_runs_on_an_empty_store(suite_base):
    with Store() as store:
        found = verdicts(store, suite_base)
    assert list(found) == [f.key for f in findings.FINDINGS] == [f"F{i}" for i in range(1, 9)]
    assert {v.status for v in found.values()} == {"waiting"}
    assert "EI" in found["F1"].text and "PPO (sparse)" in found["F1"].text


def test_verdicts_confirm_the_papers_on_runs_that_agree(suite_base):
    with Store() as store:
        fabricate(store, suite_base, CONFIRMING, problems=200)
        found = verdicts(store, suite_base)
    assert found["F1"].status == "confirmed", found["F1"].text
    assert found["F2"].status == "confirmed", found["F2"].text
    assert found["F3"].status == "confirmed", found["F3"].text
    assert found["F4"].status == "confirmed", found["F4"].text
    assert found["F5"].status == "measured"
    assert found["F7"].status == "confirmed", found["F7"].text
    assert found["F8"].status == "confirmed", found["F8"].text
    assert "more groups are wasted than the mean predicts" in found["F8"].text  # spread difficulty
    assert found["F1"].numbers["ei_minus_ppo"].n == 200
    for v in found.values():
        assert "[" in v.text  # every verdict states an interval


def test_f6_reads_the_deep_evaluations_and_finds_where_the_base_catches_up(suite_base):
    # the base solves every problem 1 time in 10; each RL run half of them 6 times in 10, the rest never
    rl = Plan([0.1, 0.3, 0.3], [0.1, 0.3, 0.6], deep_share=0.5)
    with Store() as store:
        fabricate(store, suite_base, {"ei": rl, "ppo": rl, "grpo": rl}, problems=120, deep_k=64, deep_problems=64)
        f6 = verdicts(store, suite_base)["F6"]
        curves = findings.cards(store, "smoke", suite_base, only=("F6",))[0].tables["curves"]
    assert f6.status == "confirmed", f6.text
    for key in ("ei", "ppo", "grpo"):
        numbers = f6.numbers[key]
        assert numbers["K"] == 64 and numbers["rl_minus_base_pass@1"].n == 64  # the deep evaluation's
        assert 2 <= numbers["crossover"] <= 16 and numbers["rl_minus_base_pass@64"].below_zero
        assert numbers["solved"]["base_only"] >= 25 and numbers["solved"]["trained_only"] == 0
    assert "the base catches up at k = " in f6.text and "64 test problems" in f6.text
    assert curves["k"].max() == 64


def test_verdicts_contradict_the_paper_when_the_runs_disagree(suite_base):
    disagreeing = {
        "ei": Plan([0.2, 0.22, 0.24, 0.25], [0.3, 0.4, 0.45, 0.5]),
        "ppo": Plan([0.2, 0.4, 0.6, 0.75], [0.3, 0.5, 0.6, 0.7],
                    entropy=[0.4, 0.5, 0.6, 0.7, 0.8, 0.9], accuracy=[0.6, 0.55, 0.5, 0.45, 0.4, 0.35]),
        "ppo-dense": Plan([0.2, 0.5, 0.8, 0.95], [0.3, 0.6, 0.8, 0.9]),
        "sft": Plan([0.2, 0.15, 0.12, 0.1], [0.3, 0.5, 0.7, 0.8]),
    }
    with Store() as store:
        fabricate(store, suite_base, disagreeing, problems=200)
        found = verdicts(store, suite_base)
    assert found["F1"].status == "contradicted" and "does not hold here" in found["F1"].text
    assert found["F2"].status == "contradicted" and "helped significantly" in found["F2"].text
    assert found["F4"].status == "contradicted" and "unlike the paper" in found["F4"].text
    assert found["F7"].status == "contradicted"
    assert found["F6"].status == "contradicted", found["F6"].text  # RL beats the base at every k
    assert found["F6"].numbers["ppo"]["crossover"] is None and "no crossover up to k = 8" in found["F6"].text
    assert found["F8"].status == "waiting" and "GRPO" in found["F8"].text


def test_pass_at_K_rising_with_maj1_flat_contradicts_F3(suite_base):
    plans = {"ei": Plan([0.3, 0.3, 0.3, 0.3], [0.05, 0.1, 0.3, 0.5], spread=0.05),
             "ppo": Plan([0.3, 0.3, 0.3, 0.3], [0.05, 0.1, 0.3, 0.5], spread=0.05)}
    with Store() as store:
        fabricate(store, suite_base, plans, problems=200)
        found = verdicts(store, suite_base)
    assert found["F3"].status == "contradicted", found["F3"].text


def test_F8_contradicted_when_fewer_groups_are_uniform_than_the_solve_rate_predicts(suite_base):
    with Store() as store:
        ids = fabricate(store, suite_base, {"grpo": Plan([0.2, 0.3], [0.5, 0.5])}, problems=30)
        with store._write() as conn:  # every group exactly half right: no group is uniform
            conn.execute("UPDATE samples SET correct = sample_idx % 2 WHERE kind = 'rollout' AND run_id = ?",
                         (ids["grpo"],))
        found = verdicts(store, suite_base)
    assert found["F8"].status == "contradicted" and found["F8"].numbers["wasted"].hi == 0


def test_too_few_problems_says_so_instead_of_a_verdict(suite_base):
    with Store() as store:
        fabricate(store, suite_base, CONFIRMING, problems=stats.MIN_PROBLEMS - 1)
        found = verdicts(store, suite_base)
    for key in ("F1", "F2", "F3", "F4", "F6"):  # F8 counts groups (problems x steps): 57 are enough
        assert found[key].status == "too little data", (key, found[key].text)
        assert "Not enough" in found[key].text


def test_only_finished_runs_give_verdicts_and_the_card_says_what_is_running(suite_base):
    plans = {"ei": CONFIRMING["ei"], "ppo": CONFIRMING["ppo"],
             "grpo": Plan([0.2, 0.3, 0.4, 0.5], [0.3, 0.4, 0.4, 0.4], status="running")}
    with Store() as store:
        fabricate(store, suite_base, plans, problems=100)
        found = verdicts(store, suite_base)
    assert found["F1"].status == "confirmed" and "Still running: GRPO, RCRL" in found["F1"].text
    assert "grpo_maj@1" not in found["F1"].numbers
    assert found["F8"].status == "waiting"


# -- the suite ---------------------------------------------------------------------------------------


def sampled_solutions(cfg) -> int:
    if cfg.algo in ("ei", "rcrl"):
        return cfg.rounds * cfg.problems_per_round * cfg.k
    if cfg.algo == "sft":
        return cfg.rounds * cfg.problems_per_round * 8  # the same problems as EI (its K samples each)
    return cfg.steps * cfg.prompts_per_step * cfg.n


@pytest.mark.parametrize("size", list(suite.SIZES))
def test_every_run_of_a_size_shares_budget_seed_base_and_evaluation(size, suite_base):
    cfgs = suite.configs(suite_base, size)
    assert list(cfgs) == list(suite.RUN_KEYS)
    shared = {(c.seed, c.base, c.eval_split, c.eval_limit, c.eval_k, c.max_new_tokens) for c in cfgs.values()}
    assert len(shared) == 1
    budget = suite.SIZES[size].budget
    if size == "suite":
        for key, cfg in cfgs.items():
            assert abs(sampled_solutions(cfg) - budget) <= 0.01 * budget, key
        assert cfgs["ppo-dense"].reward == "dense" and cfgs["ppo-orm"].reward == "orm"
    for cfg in cfgs.values():  # F3 needs two checkpoints after the base
        saves = cfg.rounds if hasattr(cfg, "rounds") else -(-cfg.steps // cfg.checkpoint_every)
        assert saves >= 2


def test_queue_missing_queues_each_run_once_and_reuses_what_exists(suite_base, monkeypatch):
    spawned = []
    monkeypatch.setattr(jobs, "spawn_worker", lambda max_running=None: spawned.append(max_running))
    with Store() as store:
        first = suite.queue_missing(store, "smoke", suite_base)
        assert spawned == [suite.lanes()] * suite.lanes()  # one worker per lane
        assert [line.split()[1] for line in first] == list(suite.RUN_KEYS)
        assert suite.queue_missing(store, "smoke", suite_base) == []  # queued: nothing twice
        runs = {r["name"]: r for r in jobs.run_rows(store)}
        assert len(runs) == len(suite.RUN_KEYS)
        ei = runs["findings: ei"]
        store.update_run(ei["id"], status="finished")
        store.update_run(runs["findings: grpo"]["id"], status="cancelled")
        store.update_run(runs["findings: ppo"]["id"], status="queued")
        again = suite.queue_missing(store, "smoke", suite_base)
        assert again == [f"resumed grpo (run {runs['findings: grpo']['id']})"]
        assert store.get_run(runs["findings: grpo"]["id"])["status"] == "queued"
        # a run with another config (another seed) is not the suite's
        store.update_run(ei["id"], config={**ei["config"], "seed": 1}, status="finished")
        assert suite.queue_missing(store, "smoke", suite_base) == [f"queued ei as run {max(runs[n]['id'] for n in runs) + 1}"]


def test_a_stored_config_from_an_older_version_still_matches(suite_base):
    cfg = suite.configs(suite_base, "smoke", keys=("ei",))["ei"]
    stored = {k: v for k, v in config_from_dict("ei", vars(cfg)).__dict__.items() if k != "lora_targets"}
    stored["field_of_the_future"] = 3
    assert suite.same_config(stored, "ei", cfg)
    assert not suite.same_config({**stored, "k": cfg.k + 1}, "ei", cfg)
    assert not suite.same_config(stored, "rcrl", cfg)


def test_an_invalid_base_is_refused_before_anything_is_queued(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "spawn_worker", lambda **_: 0)
    (tmp_path / "notamodel").mkdir()
    with Store() as store, pytest.raises(findings.suite.ReasonlabError, match="findings run ei: .*base"):
        suite.queue_missing(store, "smoke", tmp_path / "notamodel")
    with Store() as store:
        assert store.runs().empty


# -- exports and the command line ----------------------------------------------------------------------


def test_results_table_copies_as_markdown_latex_and_csv(suite_base):
    with Store() as store:
        fabricate(store, suite_base, {"ei": CONFIRMING["ei"], "ppo": CONFIRMING["ppo"]}, problems=40)
        card = findings.cards(store, "smoke", suite_base, only={"F5"})[0]
    table = card.tables["results"]
    assert table["run"].tolist() == ["EI (run 1)", "PPO (sparse) (run 2)"]
    for metric in tables.METRICS:
        assert (table[f"{metric} lo"] <= table[metric]).all() and (table[metric] <= table[f"{metric} hi"]).all()
    md = tables.markdown(table).splitlines()
    assert md[0] == "| run | K | maj@1 | maj@K | rerank@K | pass@K |" and len(md) == 4
    assert md[2].startswith("| EI (run 1) | 8 | ")
    tex = tables.latex(table)
    assert tex.startswith(r"\begin{tabular}") and tex.count(r"\\") == 3 and "_" not in tex.replace(r"\_", "")
    back = pd.read_csv(__import__("io").StringIO(tables.csv(table)))
    assert back["maj@1"].round(6).tolist() == table["maj@1"].round(6).tolist()
    assert tables._latex_escape(r"a_b&c%d$e#f{g}h~i^j\k") == (r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i"
                                                              r"\textasciicircum{}j\textbackslash{}k")


def test_findings_json_on_the_command_line(suite_base, capsys, monkeypatch):
    monkeypatch.setattr(jobs, "spawn_worker", lambda **_: 0)
    with Store() as store:
        fabricate(store, suite_base, {"ei": CONFIRMING["ei"], "ppo": CONFIRMING["ppo"]}, problems=60)
    assert cli.main(["findings", "--json", "--size", "smoke", "--base", str(suite_base)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["key"] for f in out["findings"]] == [f"F{i}" for i in range(1, 9)] and out["queued"] == []
    f1 = out["findings"][0]
    assert f1["status"] == "confirmed" and f1["runs"]["ei"]["status"] == "finished" and f1["runs"]["grpo"] is None
    assert set(f1["numbers"]["ei_minus_ppo"]) == {"value", "lo", "hi", "n"}
    assert cli.main(["findings", "--run", "--size", "smoke", "--base", str(suite_base)]) == 0
    text = capsys.readouterr().out
    assert "queued grpo as run 4" in text and "queued ei" not in text and "F8 GRPO wastes uniform groups [waiting]" in text


def test_findings_command_names_a_bad_base_in_one_line(tmp_path, capsys):
    assert cli.main(["findings", "--size", "smoke", "--base", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reasonlab: error: findings run ei:") and "\n" not in err


# -- the base is evaluated once per store ---------------------------------------------------------------


def test_a_base_evaluated_once_is_copied_into_later_runs_and_equals_a_fresh_evaluation(tiny_checkpoint, monkeypatch):
    """The suite starts seven runs from one base: the first evaluates it, the others copy that
    evaluation, which is exactly what evaluating it again would give."""
    from engine.algorithms.context import RunContext
    from engine.config import make_config
    from tests.helpers import BUDGETS, SMALL

    def run(algo, *extra):
        with Store() as store:
            run_id = jobs.submit(store, make_config(algo, base=tiny_checkpoint, sets=[*SMALL, *BUDGETS[algo], *extra]))
            assert jobs.execute(store, store.claim_run(run_id, 1)) == "finished"
            ck = store.checkpoints(run_id).iloc[0]
            rows = store.samples(checkpoint_id=int(ck["id"]))
        return ck["metrics"], rows[["problem_id", "sample_idx", "text", "answer", "correct", "n_tokens", "logprob"]]

    first_metrics, first = run("ei")
    copied_metrics, copied = run("grpo")
    assert copied_metrics["copied_from_checkpoint"] == 1 and "copied_from_checkpoint" not in first_metrics
    pd.testing.assert_frame_equal(copied, first)
    monkeypatch.setattr(RunContext, "_reuse_evaluation", lambda self, key, checkpoint_id: False)
    fresh_metrics, fresh = run("rcrl")  # evaluated again: the same samples, to the last log-probability
    pd.testing.assert_frame_equal(fresh, first)
    assert {k: v for k, v in fresh_metrics.items() if k.startswith(("maj@", "pass@"))} == \
           {k: v for k, v in first_metrics.items() if k.startswith(("maj@", "pass@"))}
    monkeypatch.undo()
    other_metrics, _ = run("ei", "eval_k=3")  # another evaluation setting: evaluated, not copied
    assert "copied_from_checkpoint" not in other_metrics


def test_results_table_reranks_by_an_orm_when_asked(suite_base, tmp_path, monkeypatch):
    """F5's rerank@K by an ORM: one that knows which samples are right reranks to pass@K; the
    table and the verdict name it. Without one, by log-probability, named too."""
    from engine.algorithms.orm import OutcomeRewardModel
    from engine.dashboard import orm as orm_module

    orm = OutcomeRewardModel.from_base(suite_base).save(tmp_path / "orm")

    def oracle(store, checkpoint_id, path):
        rows = store.sample_rows(["id", "correct"], checkpoint_id=checkpoint_id, kind="eval")
        return rows.set_index("id")["correct"].astype(float)

    monkeypatch.setattr(orm_module, "sample_scores", oracle)
    with Store() as store:
        fabricate(store, suite_base, {"ei": CONFIRMING["ei"]}, problems=40)
        by_logprob = findings.cards(store, "smoke", suite_base, only={"F5"})[0]
        by_orm = findings.cards(store, "smoke", suite_base, only={"F5"}, orm=str(orm))[0]
        suite_orm = findings.cards(store, "smoke", suite_base, only={"F5"}, orm=True)[0]
        with pytest.raises(findings.suite.ReasonlabError, match="findings: --orm: .*nowhere"):
            findings.cards(store, "smoke", suite_base, only={"F5"}, orm=str(tmp_path / "nowhere"))
    row = by_orm.tables["results"].iloc[0]
    assert row["rerank@K"] == pytest.approx(row["pass@K"])
    assert f"rerank@K by the ORM {orm}" in by_orm.verdict.text
    assert "rerank@K by log-probability" in by_logprob.verdict.text
    assert "has not trained its ORM yet" in suite_orm.verdict.text  # no reward=orm run in this store
