"""The Findings page through AppTest in every state of the suite: nothing run, some queued or
running, all finished, a failed run, a result that contradicts the paper."""

import os
import time

import pytest

from engine import dashboard, jobs
from engine.findings import suite
from engine.store import Store
from tests.findings_store import CONFIRMING, Plan, fabricate
from tests.helpers import charts, open_page, shown_code, texts


@pytest.fixture
def base(tmp_path, monkeypatch):
    """The page's default base (the shipped one) replaced by an untrained checkpoint."""
    from engine.model.presets import untrained_checkpoint

    path = untrained_checkpoint(tmp_path / "base")
    monkeypatch.setattr(suite, "default_base", lambda: path)
    monkeypatch.setattr(suite, "default_base_path", lambda: path)
    monkeypatch.setattr(jobs, "spawn_worker", lambda **_: 0)
    return path


def smoke(at):
    """Choose the smoke size (the fabricated runs have its configs)."""
    at.radio(key="size").set_value("smoke")
    return at.run()


def cards(at):
    return [s.value for s in at.subheader]


def badges(at):
    """The status badges (st.badge is markdown: `:red-badge[:material/cancel: contradicted]`)."""
    return [m.value.split("]")[0].split(": ", 1)[1] for m in at.markdown if "-badge[" in m.value]


def test_nothing_run_every_card_waits_and_the_button_queues_the_suite(base):
    at = smoke(open_page("findings"))
    assert not at.exception
    assert cards(at) == [f"F{i} · {t}" for i, t in enumerate(
        ["Expert iteration matches PPO", "Dense and learned rewards help little", "pass@K saturates early",
         "Continued SFT trades pass@K for maj@1", "The results table", "The base catches up at large k",
         "Entropy collapses and bounds accuracy", "GRPO wastes uniform groups"], start=1)]
    assert texts(at.markdown).count("Waiting for") == 8 and badges(at) == ["waiting"] * 8
    button = next(b for b in at.button if b.key == "queue")
    assert button.label == "Run the missing experiments" and not button.disabled
    button.click().run()
    assert not at.exception
    with Store() as store:
        names = sorted(r["name"] for r in jobs.run_rows(store))
    assert names == sorted(suite.RUN_NAME.format(key=k) for k in suite.RUN_KEYS)
    assert next(b for b in at.button if b.key == "queue").disabled  # nothing left to queue


def test_some_queued_or_running_shows_their_status_and_partial_evidence(base):
    with Store() as store:
        ids = fabricate(store, base, {"ei": CONFIRMING["ei"], "ppo": Plan([0.2, 0.3], [0.3, 0.35], status="running")},
                        problems=60)
        store.update_run(ids["ppo"], pid=os.getpid(), heartbeat_at=time.time())  # alive: reconcile keeps it running
        suite.queue_missing(store, "smoke", base, spawn=False)
    at = smoke(open_page("findings"))
    assert not at.exception
    runs = at.dataframe[0].value
    status = dict(zip(runs["run"], runs["status"]))
    assert status["EI"] == "finished" and status["PPO (sparse)"] == "running" and status["GRPO"] == "queued"
    assert "Runs in progress" in texts(at.caption)
    f3 = next(m.value for m in at.markdown if m.value.startswith("**Verdict.** EI: from step"))
    assert "Still running: PPO (sparse)" in f3
    assert len(charts(at)) == 8


def test_all_finished_every_card_has_a_verdict_figure_and_the_table(base):
    with Store() as store:
        fabricate(store, base, CONFIRMING, problems=60)
    at = smoke(open_page("findings"))
    assert not at.exception
    verdicts = [m.value for m in at.markdown if m.value.startswith("**Verdict.**")]
    assert len(verdicts) == 8 and not any("Waiting" in v for v in verdicts)
    summary = {m.label: m.value for m in at.metric}
    assert list(summary) == ["confirmed", "contradicted", "undecided", "waiting"]
    assert summary["waiting"] == "0" and sum(map(int, summary.values())) == 8 and int(summary["confirmed"]) >= 4
    figs = charts(at)
    assert len(figs) == 8 and all(f["data"] for f in figs)
    assert [c.language for c in shown_code(at)][:2] == ["markdown", "latex"]
    assert shown_code(at)[0].value.startswith("| run | K | maj@1 |")
    assert next(b for b in at.button if b.key == "queue").disabled


def test_a_failed_run_is_shown_with_its_error_as_text_and_the_button_resumes_it(base):
    with Store() as store:
        # failed after evaluating its base: nothing saved that could be missing, so it resumes
        ids = fabricate(store, base, {"ei": Plan([0.2], [0.3], status="failed")}, problems=30)
        store.update_run(ids["ei"], error="boom <b>bold</b> [x](http://evil)")
    at = smoke(open_page("findings"))
    assert not at.exception
    error = at.error[0].value
    assert "EI (run 1) failed" in error and dashboard.literal("boom <b>bold</b> [x](http://evil)") in error
    next(b for b in at.button if b.key == "queue").click().run()
    with Store() as store:
        assert store.get_run(ids["ei"])["status"] == "queued"  # resumed, not run again


def test_a_contradicting_result_is_marked_contradicted(base):
    plans = {"ei": Plan([0.2, 0.22, 0.24, 0.25], [0.3, 0.3, 0.3, 0.3]),
             "ppo": Plan([0.2, 0.4, 0.6, 0.75], [0.3, 0.5, 0.6, 0.7])}
    with Store() as store:
        fabricate(store, base, plans, problems=120)
    at = smoke(open_page("findings"))
    assert not at.exception
    f1 = next(m.value for m in at.markdown if m.value.startswith("**Verdict.** EI maj@1"))
    assert "does not hold here" in f1
    assert badges(at)[0] == "contradicted"
