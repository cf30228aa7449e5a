"""What several test files share: the CLI as a user runs it, tiny training budgets, the dashboard
through Streamlit's AppTest, the odd states a store can be in and what a page may show of them, the
report's hostile store, lm-eval sample files, and a dashboard server for a real browser.
Pytest fixtures are in conftest.py; fabricated workspaces in dashboard_store.py and findings_store.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from engine import dashboard, imports
from engine.launch import SIZES, SMOKE_SHARED
from engine.store import Store
from engine.tasks import get_task
from tests.dashboard_store import fabricate_store
from tests.data_files import gsm8k_rows, svamp_rows, write_jsonl

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAGES = ["home", "findings", "launch", "runs", "solutions", "search", "pass_at_k", "diversity", "compare"]


# -- the CLI and training runs ---------------------------------------------------------------------


def reasonlab(*args, env=None):
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          input="", env={**os.environ, **(env or {})}, timeout=600)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reasonlab: error:"), result.stderr
    for f in fragments:
        assert f in lines[0]


def dead_pid() -> int:
    """A pid no process has now: a child that exited and was reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def wait_for(condition, timeout=300, what="condition"):
    """Poll the store until `condition()` is truthy (a wait on state, not a fixed sleep)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# Tiny budgets: Launch's "smoke test" size (short completions, a handful of problems, small
# evaluations), as --set items: SMALL what every algorithm shares, BUDGETS[algo] its own.
SMALL = [f"{k}={v}" for k, v in SMOKE_SHARED.items()]
BUDGETS = {algo: [f"{k}={v}" for k, v in preset.items() if k not in SMOKE_SHARED]
           for algo, preset in SIZES["smoke test"].items()}


def sets(*items):
    return [x for item in items for x in ("--set", item)]


# -- the dashboard through AppTest --------------------------------------------------------------------


def open_page(name, query=None) -> AppTest:
    """The app as a browser opens it: app.py's navigation, then the page."""
    from streamlit.testing.v1 import AppTest  # here, so tests that open no page do not import Streamlit

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"pages/{name}.py")
    if query:
        at.query_params.update(query)
    return at.run()


def charts(at):
    """The plotly figures on the page, as dicts."""
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def texts(elements):
    return " ".join(str(e.value) for e in elements)


LINK = re.compile(r"(https?://[^\s?]+|/\w+)(\?\S*)?")  # what the Copy link popover shows


def shown_code(at):
    """The page's code blocks (solutions, logs, tables), without the Copy link popover's link."""
    return [c for c in at.code if not LINK.fullmatch(c.value)]


# -- the odd states a store can be in (tests/test_page_states.py renders every page in each) ----------

HOSTILE = ("<a href='https://evil.example'>link</a> <b>bold</b> <img src=x onerror=alert(1)> <script>alert(2)</script>"
           " javascript:alert(3) [md](https://evil.example) **strong** _em_ $x^2$ :red[red] :smile: `tick` ~~s~~")
LONG = "12 + 30 = 42 " * 7_700  # ~100k characters on one line
# what these states call for
EXPECTED_ERRORS = ("This run failed", "no evaluation samples", "The last quickstart failed")
STATE_ERRORS = {"deleted_directories": ("config field base",)}  # Launch: the base is gone, and it says so


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


# -- what a page may show ------------------------------------------------------------------------------


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


# -- the static report's store -----------------------------------------------------------------------

REPORT_HOSTILE = "<script>alert(1)</script> & <b>x</b>"
HOSTILE_PROBLEM = "test-0"


def report_store(home) -> dict:
    """A small fabricated workspace (dashboard_store.py: EI, PPO and a failed GRPO run) whose EI
    run has a hostile name and config value, and whose first sample of HOSTILE_PROBLEM at the
    EI run's last checkpoint has REPORT_HOSTILE as its text."""
    ids = fabricate_store(home, problems=4, k=4, ei_rounds=1, ppo_checkpoints=1, rollout_problems=2)
    ei = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as store:
        store.update_run(ei, name=REPORT_HOSTILE, config={**store.get_run(ei)["config"], "note": REPORT_HOSTILE})
        conn = sqlite3.connect(store.path)
        with conn:
            changed = conn.execute("UPDATE samples SET text = ? WHERE checkpoint_id = ? AND problem_id = ? "
                                   "AND sample_idx = 0", (REPORT_HOSTILE, ids["checkpoints"][ei][-1], HOSTILE_PROBLEM))
        assert changed.rowcount == 1
        conn.close()
    return ids


# -- lm-eval-harness --log_samples files ---------------------------------------------------------------

FILTERS = ("strict-match", "flexible-extract")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def responses(doc: dict, k: int) -> list[str]:
    """k responses to a doc: right (`#### N`), wrong, then one without a `####` line (lm-eval's
    flexible-extract would take its number; reasonlab's strict check does not)."""
    a = int(doc["answer"].rsplit("#### ", 1)[1])
    return [f"{a - 1} + 1 = {a}\n#### {a}", f"#### {a + 1}", f"The answer is {a}."][:k]


def lm_eval_lines(rows, k=3, filters=FILTERS, do_sample=True, temperature=0.7) -> list[dict]:
    """One logged sample per document and filter, as lm-eval's evaluator builds it and
    EvaluationTracker.save_results_samples writes it (arguments as gen_args_i / arg_j)."""
    lines = []
    for doc_id, doc in enumerate(rows):
        prompt = f"Question: {doc['question']}\nAnswer:"
        resps = responses(doc, k)
        for name in filters:
            found = re.search(r"#### (\-?[0-9\.\,]+)", resps[0]) if name == "strict-match" else \
                re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", resps[0])
            filtered = (found.group(1) if found else "[invalid]") if name == "strict-match" else \
                ("".join(found[-1]) if found else "[invalid]")
            lines.append({
                "doc_id": doc_id, "doc": doc, "target": doc["answer"],
                "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": {
                    "until": ["Question:", "</s>", "<|im_end|>"], "do_sample": do_sample, "temperature": temperature}}},
                "resps": [resps], "filtered_resps": [filtered], "filter": name, "metrics": ["exact_match"],
                "doc_hash": sha(json.dumps(doc, indent=2, ensure_ascii=False)), "prompt_hash": sha(prompt),
                "target_hash": sha(doc["answer"]),
                "exact_match": float(filtered == doc["answer"].rsplit("#### ", 1)[1])})
    return lines


def import_lines(tmp_path, lines, name="samples_gsm8k_2024-06-01T12-00-00.jsonl", **options):
    path = write_jsonl(tmp_path / name, lines)
    with Store() as store:
        return imports.import_file(store, path, **options), path


# -- a dashboard server for a real browser (Playwright in Debian's chromium) ----------------------------

ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
MINUTE = 60_000  # Playwright timeouts are in milliseconds


def require(what: str, ok: bool, how: str) -> None:
    """Skip when `what` is missing, but fail under CI, which must run the browser tests."""
    if ok:
        return
    message = f"{what} is not available: {how}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the browser tests)")
    pytest.skip(message)


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # require() checks it in each browser test, so the reason is reported
    expect = sync_playwright = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(home: Path, log_name: str = "streamlit.log"):
    """`streamlit run app.py` on a free localhost port over the workspace `home`; yields its url."""
    port = free_port()
    env = {**os.environ, "REASONLAB_HOME": str(home), "OMP_NUM_THREADS": "1"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / log_name, "wb")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port), "--server.address", "127.0.0.1"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        if server.poll() is not None:
            raise AssertionError(f"streamlit exited with {server.returncode}; see {ARTIFACTS / log_name}")
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, timeout=90, what="the streamlit server")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
