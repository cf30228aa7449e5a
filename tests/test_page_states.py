"""Every page renders every odd state a store can be in: evaluated checkpoints whose samples are
gone, checkpoint directories deleted from disk, a run a delete left "deleting", a failed run that
logged nothing, 100k-character texts, a run of every task kind, and hostile text (HTML, links,
markdown, LaTeX) in samples, answers, questions, run names and errors. Each page must render
without an exception and without an error other than the ones the state calls for; hostile
text must reach markdown only inside code and plotly only escaped."""

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from bench.dashboard import fabricate_store
from engine import dashboard
from engine.store import Store
from engine.tasks import get_task
from tests.data_files import gsm8k_rows, svamp_rows, write_jsonl
from tests.test_pages import PAGES, charts, open_page

HOSTILE = ("<a href='https://evil.example'>link</a> <b>bold</b> <img src=x onerror=alert(1)> <script>alert(2)</script>"
           " javascript:alert(3) [md](https://evil.example) **strong** _em_ $x^2$ :red[red] :smile: `tick` ~~s~~")
LONG = "12 + 30 = 42 " * 7_700  # ~100k characters on one line
# what these states call for
EXPECTED_ERRORS = ("This run failed", "no evaluation samples", "The last quickstart failed")
STATE_ERRORS = {"deleted_directories": ("config field base",)}  # Launch: the base is gone, and it says so


# -- the states ---------------------------------------------------------------------------------------


def small_store(home: Path) -> dict:
    return fabricate_store(home, problems=4, k=4, ei_rounds=2, ppo_checkpoints=2, rollout_problems=3)


def sql(home: Path, statement: str, params=()) -> None:
    with sqlite3.connect(home / "store.sqlite") as conn:
        conn.execute(statement, params)


def no_samples(home):
    """The newest evaluated run (every inspect page's default) lost all its samples."""
    ids = small_store(home)
    sql(home, "DELETE FROM samples WHERE run_id = ?", (ids["runs"]["ppo"],))


def deleted_directories(home):
    small_store(home)
    shutil.rmtree(home / "checkpoints")
    shutil.rmtree(home / "runs", ignore_errors=True)


def deleting(home):
    """A delete cut short: the run is "deleting" and some of its samples are gone."""
    ids = small_store(home)
    ppo = ids["runs"]["ppo"]
    sql(home, "UPDATE runs SET status = 'deleting' WHERE id = ?", (ppo,))
    sql(home, "DELETE FROM samples WHERE run_id = ? AND (step > 0 OR problem_id = 'test-0')", (ppo,))


def failed_without_metrics(home):
    with Store(home / "store.sqlite") as s:
        run = s.create_run("grpo", {"task": "multistep"}, status="failed")
        s.update_run(run, error="RuntimeError: it broke before logging anything", traceback="Traceback ...")
        s.create_run("ei", {"task": "multistep"}, status="cancelled")


def long_texts(home):
    ids = small_store(home)
    ppo = ids["runs"]["ppo"]
    sql(home, "UPDATE samples SET text = ? || text, answer = ? WHERE run_id = ? AND problem_id = 'test-0' "
              "AND sample_idx % 2 = 0", (LONG + "\n", LONG, ppo))
    sql(home, "UPDATE runs SET name = ?, error = ? WHERE id = ?", (LONG[:5000], LONG, ids["runs"]["grpo"]))
    data = write_jsonl(home.parent / "long.jsonl", [{"question": LONG, "answer": "42"}, {"question": "q", "answer": LONG}])
    with Store(home / "store.sqlite") as s:
        add_evaluated_run(s, "jsonl", {"data": str(data), "eval_data": str(data)})


def every_task(home):
    root = home.parent
    files = {"gsm8k": write_jsonl(root / "gsm8k.jsonl", gsm8k_rows(6)),
             "svamp": root / "svamp.json",
             "jsonl": write_jsonl(root / "qa.jsonl", [{"question": f"What is {i} + 1?", "answer": str(i + 1)}
                                                      for i in range(6)])}
    files["svamp"].write_text(json.dumps(svamp_rows()))
    with Store(home / "store.sqlite") as s:
        add_evaluated_run(s, "multistep", {})
        for name, path in files.items():
            add_evaluated_run(s, name, {"data": str(path), "eval_data": str(path)})
        pytest.importorskip("reasoning_gym")
        add_evaluated_run(s, "gym", {"gym_name": "basic_arithmetic", "gym_size": 20})


def hostile(home):
    ids = small_store(home)
    runs = ids["runs"]
    sql(home, "UPDATE runs SET name = ?", (HOSTILE,))
    sql(home, "UPDATE runs SET error = ? WHERE id = ?", (HOSTILE, runs["grpo"]))
    sql(home, "UPDATE runs SET status = 'interrupted', error = ? WHERE id = ?", (HOSTILE, runs["ei"]))
    sql(home, "UPDATE samples SET text = ? || char(10) || text, answer = ? WHERE sample_idx % 2 = 0",
        (HOSTILE, HOSTILE))
    data = write_jsonl(home.parent / "hostile.jsonl", [{"question": HOSTILE, "answer": HOSTILE},
                                                       {"question": "What is 1 + 1?", "answer": "2"}])
    with Store(home / "store.sqlite") as s:
        add_evaluated_run(s, "jsonl", {"data": str(data), "eval_data": str(data)}, name=HOSTILE)
    home.mkdir(parents=True, exist_ok=True)
    (home / "quickstart.json").write_text(json.dumps({"phase": "failed", "error": HOSTILE}))


def quickstart_failed(home):
    """No runs yet, and the quickstart failed with a hostile error."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "quickstart.json").write_text(json.dumps({"phase": "failed", "error": HOSTILE + LONG}))


def add_evaluated_run(store: Store, task: str, options: dict, name: str | None = None, k: int = 4) -> int:
    """A finished run of `task` with one evaluated checkpoint (step 0): greedy + k samples for each
    of the task's first test problems, texts from its own solutions."""
    problems = get_task(task, **options).problems("test", 3)
    run = store.create_run("ei", {"task": task, **options, "k": k}, name=name, total=1, status="finished")
    checkpoint = store.add_checkpoint(run, 0, f"/nowhere/{task}")
    rng = random.Random(0)
    rows = []
    for p in problems:
        for i in range(-1, k):
            try:
                text = get_task(task, **options).sample_solution(p, rng)
            except Exception:  # a task without sampled solutions: its reference
                text = p.reference or str(p.answer)
            rows.append({"run_id": run, "checkpoint_id": checkpoint, "step": 0, "kind": "eval", "task": task,
                         "split": "test", "problem_id": p.id, "sample_idx": i, "text": text or "",
                         "answer": str(p.answer) if i % 2 else "7", "correct": i % 2, "reward": float(i % 2),
                         "n_tokens": len(text or "") // 2, "logprob": -1.0 - i})
    store.add_samples(rows)
    store.update_checkpoint_metrics(checkpoint, {"maj@1": 0.5, "pass@1": 0.5, f"pass@{k}": 1.0, f"maj@{k}": 0.5,
                                                 "split": "test", "problems": len(problems)})
    store.log_metrics(run, 0, {"eval/maj@1": 0.5, "eval/pass@1": 0.5}, samples_seen=0)
    return run


STATES = {f.__name__: f for f in (no_samples, deleted_directories, deleting, failed_without_metrics, long_texts,
                                  every_task, hostile, quickstart_failed)}


@pytest.fixture(scope="module", params=list(STATES))
def state(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(request.param) / "home"
    STATES[request.param](home)
    return request.param, home


# -- what a page may show ---------------------------------------------------------------------------------


def markdown_values(at) -> list[str]:
    """Everything on the page Streamlit renders as markdown."""
    elements = [*at.markdown, *at.caption, *at.error, *at.warning, *at.info, *at.success, *at.get("toast")]
    values = [str(e.value) for e in elements]
    values += [str(m.proto.body) for m in at.metric] + [str(m.label) for m in at.metric]
    return values


def figure_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from figure_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from figure_strings(v)


def check(at, state_name: str, where: str) -> None:
    assert not at.exception, (where, [e.value for e in at.exception])
    expected = EXPECTED_ERRORS + STATE_ERRORS.get(state_name, ())
    unexpected = [e.value for e in at.error if not any(x in e.value for x in expected)]
    assert not unexpected, (where, [u[:300] for u in unexpected])
    for value in markdown_values(at):  # stored text reaches markdown only as code (dashboard.literal)
        if "evil.example" in value or LONG[:200] in value:
            shown = dashboard.literal(HOSTILE) in value or "`" in value.split("evil.example")[0]
            assert shown, (where, value[:300])
    for fig in charts(at):
        for s in figure_strings(fig):
            if "evil" in s or "onerror" in s:
                assert "<" not in s and ">" not in s, (where, s[:300])


def run_ids(home: Path) -> list[int]:
    with Store(home / "store.sqlite") as s:
        return s.runs()["id"].astype(int).tolist()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_every_store_state(state, page, monkeypatch):
    name, home = state
    monkeypatch.setenv("REASONLAB_HOME", str(home))
    at = open_page(page)
    check(at, name, page)
    if (name, page) == ("quickstart_failed", "home"):
        assert dashboard.literal(HOSTILE + LONG) in at.error[0].value  # shown whole, as code
    if page == "runs":  # each run's live view
        shown = []
        for run_id in run_ids(home):
            view = open_page("runs", {"run": str(run_id)})
            check(view, name, f"runs?run={run_id}")
            shown += markdown_values(view)
        if name == "hostile":  # the failed and the interrupted run's errors
            assert sum(dashboard.literal(HOSTILE) in v for v in shown) == 2
    elif page in ("solutions", "diversity") and at.selectbox:  # each run's views
        for label in at.selectbox[0].options:  # "run 3 · ei ..."
            at.selectbox[0].set_value(int(label.split(" ")[1])).run()
            check(at, name, f"{page}, {label[:60]}")
