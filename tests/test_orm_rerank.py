"""rerank@k by an outcome reward model over stored samples (engine.dashboard.orm_rerank): exactly the
rerank of curves for the ORM's scores, pass@k for an ORM that knows the answer, worse than maj@k for
one that gets it backwards; scored once per checkpoint; the ORMs a workspace holds (dashboard.orms)."""

import os
import random

import numpy as np
import pytest

from engine import dashboard, jobs
from engine.algorithms.orm import HEAD, OutcomeRewardModel
from engine.dashboard import orm as orm_module
from engine.errors import ReasonlabError
from engine.evaluation import checkpoint_curves
from engine.store import Store
from engine.tasks import get_task

PROBLEMS, N = 5, 8


class FakeORM:
    """Scores a completion by its text alone, counting what it was asked to score."""

    tokenizer = None  # the plain and few-shot prompts need none

    def __init__(self, score):
        self.score_text, self.scored = score, 0

    def score(self, prompts, completions, batch_size=256):
        assert len(prompts) == len(completions) and all(p.endswith("Answer:\n") for p in prompts)
        self.scored += len(completions)
        return np.array([self.score_text(c) for c in completions], dtype=np.float32)


@pytest.fixture(scope="module")
def orm_dir(untrained_checkpoint, tmp_path_factory):
    """A whole ORM directory (untrained head): what orm_rerank validates; FakeORM does the scoring."""
    return OutcomeRewardModel.from_base(untrained_checkpoint).save(tmp_path_factory.mktemp("orm") / "orm")


@pytest.fixture
def store(workspace, untrained_checkpoint):
    """Two checkpoints of a PPO run, PROBLEMS problems x (greedy + N samples): correct samples
    say `good`, wrong ones `bad`; a few wrong ones end without an answer."""
    task, rng = get_task("multistep"), random.Random(0)
    with Store() as s:
        run = s.create_run("ppo", {"base": str(untrained_checkpoint), "task": "multistep", "prompt_format": "plain"},
                           status="finished")
        checkpoints = []
        for step in (0, 10):
            checkpoint = s.add_checkpoint(run, step, untrained_checkpoint if step == 0 else "/gone/step-10",
                                          {"maj@1": 0.5})
            rows = []
            for p in task.problems("test", PROBLEMS):
                correct = rng.randint(1, N - 2)
                for i in range(-1, N):
                    good = i < correct
                    answer = p.answer if good else (None if i == N - 1 else str(int(p.answer) + 1 + i % 2))
                    text = f"{'good' if good else 'bad'} {i}" + ("" if answer is None else f"\n#### {answer}")
                    rows.append({"run_id": run, "checkpoint_id": checkpoint, "step": step, "kind": "eval",
                                 "task": "multistep", "split": "test", "problem_id": p.id, "sample_idx": i,
                                 "text": text, "answer": answer, "correct": int(good), "logprob": -rng.random()})
            s.add_samples(rows)
            checkpoints.append(checkpoint)
        yield s, run, checkpoints


def use(monkeypatch, fake):
    monkeypatch.setattr(orm_module, "_load", lambda path, version: fake)
    return fake


def curves_of(table, metric):
    return table[table["metric"] == metric].set_index(["checkpoint_id", "k"])["value"]


def test_rerank_by_an_orm_is_the_exact_rerank_of_curves_for_its_scores(store, orm_dir, monkeypatch):
    s, _, checkpoints = store
    noise = {}
    fake = use(monkeypatch, FakeORM(lambda text: noise.setdefault(text, random.Random(text).random())))
    table = dashboard.orm_rerank(s, checkpoints, str(orm_dir), n_boot=20)

    plain = dashboard.pass_at_k(s, checkpoints, rerank=True, n_boot=20)
    assert list(table.columns) == list(plain.columns) and len(table) == len(plain)
    assert set(table.loc[table["metric"] == "rerank", "scorer"]) == {f"ORM {orm_dir}"}
    assert set(plain.loc[plain["metric"] == "rerank", "scorer"]) == {"log-probability"}
    assert table.loc[table["metric"] != "rerank", "scorer"].isna().all()
    for metric in ("pass", "maj"):  # only the rerank rows change
        assert np.allclose(curves_of(table, metric), curves_of(plain, metric))

    samples = s.sample_rows(["problem_id", "sample_idx", "answer", "correct", "checkpoint_id", "step", "text"],
                            kind="eval")
    scores = np.array([noise[t] if i >= 0 else np.nan for t, i in zip(samples["text"], samples["sample_idx"])])
    exact = checkpoint_curves(samples.drop(columns="text"), ks=sorted(set(table["k"])), scores=scores, n_boot=20)
    assert np.allclose(curves_of(table, "rerank"), curves_of(exact, "rerank"), atol=1e-12)
    assert fake.scored == 2 * PROBLEMS * N  # every sampled row, no greedy one


def test_an_orm_that_knows_the_answer_reranks_to_pass_at_k(store, orm_dir, monkeypatch):
    s, _, checkpoints = store
    use(monkeypatch, FakeORM(lambda text: 1.0 if text.startswith("good") else 0.0))
    table = dashboard.orm_rerank(s, checkpoints, str(orm_dir), n_boot=20)
    assert np.allclose(curves_of(table, "rerank"), curves_of(table, "pass"), atol=1e-12)


def test_an_orm_that_gets_it_backwards_does_worse_than_the_majority(store, orm_dir, monkeypatch):
    s, _, checkpoints = store
    use(monkeypatch, FakeORM(lambda text: 0.0 if text.startswith("good") else 1.0))
    table = dashboard.orm_rerank(s, checkpoints, str(orm_dir), n_boot=20)
    rerank, maj = curves_of(table, "rerank"), curves_of(table, "maj")
    at_k = rerank.index.get_level_values("k")
    assert (rerank[at_k > 1] < maj[at_k > 1]).all()
    assert (rerank[at_k == N] == 0).all()  # every problem has a wrong answered sample: always chosen


def test_each_checkpoint_is_scored_once_and_again_when_the_orm_changes(store, orm_dir, monkeypatch, workspace):
    s, _, checkpoints = store
    fake = use(monkeypatch, FakeORM(lambda text: len(text) / 100))
    first = dashboard.orm_rerank(s, checkpoints[:1], str(orm_dir), n_boot=20)
    assert fake.scored == PROBLEMS * N
    both = dashboard.orm_rerank(s, checkpoints, str(orm_dir), n_boot=20)  # only the new checkpoint is scored
    assert fake.scored == 2 * PROBLEMS * N
    assert np.allclose(curves_of(first, "rerank"), curves_of(both, "rerank").loc[checkpoints[:1]])
    cached = sorted(p.name for p in (workspace / "cache" / "orm_scores").rglob("*.npz"))
    assert cached == sorted(f"{c}.npz" for c in checkpoints)

    head = orm_dir / HEAD
    stat = head.stat()
    os.utime(head, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the ORM replaced in place
    try:
        dashboard.orm_rerank(s, checkpoints, str(orm_dir), n_boot=20)
    finally:
        os.utime(head, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fake.scored == 4 * PROBLEMS * N


def test_a_path_that_is_not_an_orm_is_refused_naming_it(store, untrained_checkpoint, tmp_path):
    s, _, checkpoints = store
    with pytest.raises(ReasonlabError, match=f"checkpoint {untrained_checkpoint} is not an outcome reward model"):
        dashboard.orm_rerank(s, checkpoints, str(untrained_checkpoint))
    with pytest.raises(ReasonlabError, match=f"checkpoint {tmp_path / 'nope'} does not exist"):
        dashboard.orm_path(str(tmp_path / "nope"))


def test_orms_lists_each_runs_own_orm_and_the_ones_runs_name(store, orm_dir, untrained_checkpoint):
    s, run, _ = store
    assert dashboard.orms(s) == []
    own = OutcomeRewardModel.from_base(untrained_checkpoint).save(jobs.run_dir(run) / "orm")
    given = s.create_run("ppo", {"base": str(untrained_checkpoint), "reward": "orm", "orm": str(orm_dir)})
    half = s.create_run("grpo", {"base": str(untrained_checkpoint), "reward": "orm"})
    (jobs.run_dir(half) / "orm").mkdir(parents=True)  # an ORM still training: no head yet
    s.create_run("ppo", {"base": str(untrained_checkpoint), "reward": "orm", "orm": str(own)})  # run 1's, again
    assert dashboard.orms(s) == [(f"run {run} · ppo: its own ORM", str(own)),
                                 (f"run {given} · ppo: its reward model", str(orm_dir))]
