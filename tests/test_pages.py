"""Every dashboard page through Streamlit's AppTest, on an empty workspace and on a fabricated store
(an EI run, a PPO run with losses, a failed GRPO run, a live one): widgets present, no exception,
figures built, empty states that say what to do next."""

import base64
import json
import os
import re
import time

import numpy as np
import pytest

from engine import dashboard, jobs, quickstart
from engine.model.presets import untrained_checkpoint
from engine.store import Store
from tests.data_files import gsm8k_rows, write_gsm8k
from tests.helpers import PAGES, charts, open_page, shown_code, texts


def array(x):
    """A figure's data array: plotly writes numeric arrays as base64 ({"dtype", "bdata"})."""
    if isinstance(x, dict) and "bdata" in x:
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def unquoted(value: str) -> str:
    """An alert's text with the code spans dashboard.literal put stored text in taken off."""
    return re.sub(r"(`+) (.*?) \1", r"\2", value, flags=re.S)


# -- every page, empty and populated ---------------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_every_page_on_an_empty_workspace_says_what_to_do(name, workspace):
    at = open_page(name)
    assert not at.exception
    assert at.title
    if name == "home":
        assert at.button[0].label == "Start the quickstart"
    elif name == "findings":  # every card waits for its runs; the button queues them
        assert texts(at.markdown).count("Waiting for") == 8
        assert next(b for b in at.button if b.key == "queue").label == "Run the missing experiments"
    elif name == "launch":  # the shipped base (copied into the workspace) is there to start from
        assert next(s for s in at.selectbox if s.label == "Base checkpoint").value == "base-shipped"
    else:
        assert at.info and ("Launch" in texts(at.info) or "quickstart" in texts(at.info))


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_a_populated_store(name, fabricated):
    at = open_page(name)
    assert not at.exception and not [e for e in at.error if "fabricated" not in e.value]
    expected_charts = {"home": 0, "findings": 8, "launch": 0, "runs": 0, "solutions": 1, "search": 0, "pass_at_k": 3, "diversity": 3, "compare": 2}
    assert len(at.get("plotly_chart")) == expected_charts[name]


# -- home -------------------------------------------------------------------------------------------


def test_home_quickstart_button_starts_it(workspace, monkeypatch):
    started = []
    monkeypatch.setattr(quickstart, "start", lambda: started.append(True))
    at = open_page("home")
    at.button[0].click().run()
    assert started == [True] and not at.exception


def test_home_build_my_own_base_starts_the_quickstart_building_one(workspace, monkeypatch):
    started = []
    monkeypatch.setattr(quickstart, "start", lambda **kw: started.append(kw))
    at = open_page("home")
    next(b for b in at.button if b.label == "Build my own base").click().run()
    assert started == [{"build_base": True}] and not at.exception


def test_home_says_which_base_the_quickstart_started_from(workspace):
    base = workspace / "checkpoints" / "base-shipped"
    with Store() as s:
        run_id = s.create_run("ei", {"base": str(base), "rounds": 3}, total=3, status="queued", name="quickstart")
    (workspace / "quickstart.json").write_text(json.dumps(
        {"phase": "launched", "pid": os.getpid(), "step": 0, "steps": None, "run_id": run_id, "error": None,
         "base_source": "shipped", "base": str(base)}))
    at = open_page("home")
    caption = texts(at.caption)
    assert not at.exception and "started from the shipped base model" in caption and str(base) in caption


def test_home_shows_the_base_model_being_built(workspace):
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "quickstart.json").write_text(json.dumps(
        {"phase": "building", "pid": os.getpid(), "step": 120, "steps": 600, "run_id": None, "error": None,
         "building_since": time.time() - 60}))
    at = open_page("home")
    assert not at.exception
    bar = at.get("progress")[0]
    assert "step 120 of 600" in bar.proto.text and abs(bar.proto.value - 20) <= 1  # percent
    # 120 steps in a minute: 480 to go take about 4 more
    left = re.search(r"about (\d+)m (\d+)s left", bar.proto.text)
    assert left and 235 <= 60 * int(left[1]) + int(left[2]) <= 250, bar.proto.text


def test_home_shows_the_base_learning_while_it_builds(workspace):
    workspace.mkdir(parents=True, exist_ok=True)
    probes = [{"step": 100, "question": "Ann has 3 <b>apples</b>.", "completion": "3 + 4 = 8\n#### 8", "answer": "8",
               "correct": False},
              {"step": 200, "question": "Ann has 3 <b>apples</b>.", "completion": "3 + 4 = 7\n#### 7", "answer": "7",
               "correct": True}]
    (workspace / "quickstart.json").write_text(json.dumps(
        {"phase": "building", "pid": os.getpid(), "step": 210, "steps": 600, "run_id": None, "error": None,
         "building_since": time.time() - 60, "loss": [[100, 1.5], [200, 0.9]], "probes": probes}))
    at = open_page("home")
    assert not at.exception
    loss = charts(at)[0]
    assert array(loss["data"][0]["x"]) == [100, 200] and array(loss["data"][0]["y"]) == [1.5, 0.9]
    assert "step 200" in texts(at.caption)
    assert at.get("text")[0].value == "Ann has 3 <b>apples</b>."  # task text as text
    assert shown_code(at)[0].value == "3 + 4 = 7\n#### 7" and ":green[correct]" in texts(at.caption)
    table = at.dataframe[0].value
    assert table["step"].tolist() == [100, 200] and table["correct"].tolist() == [False, True]
    assert table["solution"].tolist() == ["3 + 4 = 8 | #### 8", "3 + 4 = 7 | #### 7"]


def test_home_lists_a_queued_run_before_any_checkpoint_exists(workspace):
    with Store() as s:  # the first run of a workspace, still waiting for a worker
        s.create_run("ei", {"base": "b", "rounds": 4}, total=4, status="queued")
    at = open_page("home")
    assert not at.exception and not at.error
    assert at.get("metric")[0].value == "1"  # Runs


def test_home_shows_a_failed_quickstart(workspace):
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "quickstart.json").write_text(json.dumps(
        {"phase": "building", "pid": 999_999_999, "step": 5, "steps": 600, "run_id": None, "error": None}))
    at = open_page("home")  # its process is gone: reported failed, and the button is back
    assert "exited unexpectedly" in at.error[0].value
    assert at.button[0].label == "Start the quickstart"


def test_home_overview_lists_runs_and_checkpoints(fabricated):
    at = open_page("home")
    runs = at.dataframe[0].value
    assert set(runs["algo"]) == {"ei", "ppo", "grpo"} and "progress" in runs
    assert {m.label for m in at.metric} >= {"Runs", "Finished", "Evaluated checkpoints"}
    assert len(at.dataframe[1].value) == 3 + 3  # EI steps 0-2, PPO steps 0, 20, 40
    assert list(at.dataframe[2].value["checkpoint"]) == ["base-tiny"]


# -- launch -----------------------------------------------------------------------------------------


def test_launch_has_every_field_with_its_default_and_help(fabricated):
    at = open_page("launch")
    assert [r.value for r in at.radio][:2] == ["ei", "defaults"]
    k = at.number_input(key="ei:defaults:k")
    assert k.value == 96 and "Solutions sampled" in k.help
    assert at.text_input(key="ei:defaults:lr").value == "0.001"
    at.radio[0].set_value("ppo").run()
    assert at.number_input(key="ppo:defaults:steps").value == 60
    assert at.selectbox(key="ppo:defaults:reward").options == ["sparse", "dense", "orm"]
    assert at.checkbox(key="ppo:defaults:whiten_advantages").value is True
    assert not at.button[0].disabled


@pytest.mark.parametrize("algo, field, value, message", [
    ("ei", "k", 0, "ei config field k must be >= 1"),
    ("grpo", "n", 1, "grpo config field n must be >= 2"),
    ("ppo", "lr", "fast", "ppo config field lr must be float"),
    ("ppo", "clip_eps", "1.5", "ppo config field clip_eps must be in (0, 1)"),
])
def test_launch_shows_an_invalid_value_inline_naming_the_field(fabricated, algo, field, value, message):
    at = open_page("launch")
    at.radio[0].set_value(algo).run()
    widget = at.number_input(key=f"{algo}:defaults:{field}") if isinstance(value, int) else \
        at.text_input(key=f"{algo}:defaults:{field}")
    widget.set_value(value).run()
    assert not at.exception
    assert message in at.error[0].value
    assert at.button[0].disabled


def test_launch_refuses_a_directory_that_is_no_checkpoint(fabricated, tmp_path):
    at = open_page("launch")
    at.selectbox[0].set_value("another directory…").run()
    at.text_input[0].set_value(str(tmp_path)).run()
    assert "config field base must be a checkpoint directory" in at.error[0].value
    assert at.button[0].disabled


def test_launch_queues_a_background_run_and_links_to_it(fabricated, workspace, monkeypatch):
    spawned = []
    monkeypatch.setattr(jobs, "spawn_worker", lambda: spawned.append(True))
    at = open_page("launch")
    at.radio[1].set_value("smoke test").run()
    assert at.number_input(key="ei:smoke test:k").value == 3
    at.text_input[-1].set_value("from-the-test").run()  # the run's name: the last text input
    at.button[0].click().run()
    assert not at.exception and spawned == [True]
    assert "is queued" in at.success[0].value
    link = at.get("page_link")[-1]
    assert "Watch run" in link.proto.label and "run=" in link.proto.query_string
    with Store() as s:
        run = s.runs().iloc[0]
    assert run["name"] == "from-the-test" and run["status"] == "queued"
    assert run["config"]["k"] == 3 and run["config"]["eval_split"] == "test"


def by_label(widgets, label):
    return next(w for w in widgets if w.label == label)


def test_launch_offers_every_task_with_its_own_inputs(fabricated):
    at = open_page("launch")
    task = by_label(at.selectbox, "Task")
    assert task.value == "multistep" and set(task.options) >= {"multistep: built-in word problems",
                                                              "gsm8k: GSM8K JSONL file", "svamp: SVAMP JSON file",
                                                              "jsonl: question/answer JSONL file",
                                                              "gym: reasoning-gym generator"}
    assert not [w for w in at.text_input if w.key and w.key.startswith("task:")]  # the built-in task reads no file
    task.set_value("jsonl").run()
    assert {w.key for w in at.text_input if (w.key or "").startswith("task:")} == {
        "task:jsonl:data", "task:jsonl:eval_data", "task:jsonl:question_field", "task:jsonl:answer_field"}
    assert at.text_input(key="task:jsonl:question_field").value == "question"
    assert at.checkbox(key="task:jsonl:skip_bad").value is False
    assert by_label(at.selectbox, "Evaluation split").options == ["train", "test", "all"]
    assert "ei config field data: required for task jsonl" in at.error[0].value
    assert at.button[0].disabled


@pytest.mark.parametrize("content, message", [
    (None, "data file {path} does not exist"),
    ([json.dumps(gsm8k_rows(1)[0]), "{oops"], "{path}, line 2: not valid JSON"),
    (['{"question": "q"}'], "{path}, line 1: missing field 'answer'"),
    (['{"question": "q", "answer": "#### lots"}'], "{path}, line 1: final answer 'lots' is not a number"),
])
def test_launch_validates_the_data_file_naming_file_and_line(fabricated, tmp_path, content, message):
    path = tmp_path / "train.jsonl"
    if content is not None:
        path.write_text("\n".join(content) + "\n")
    at = open_page("launch")
    by_label(at.selectbox, "Task").set_value("gsm8k").run()
    at.text_input(key="task:gsm8k:data").set_value(str(path)).run()
    assert not at.exception
    assert unquoted(at.error[0].value).startswith("ei config field data: " + message.format(path=path))
    assert at.button[0].disabled


def test_launch_skips_bad_lines_on_request_and_queues_the_file_task(fabricated, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "spawn_worker", lambda **_: None)
    good, bad = write_gsm8k(tmp_path / "train.jsonl", n=30), tmp_path / "eval.jsonl"
    bad.write_text("\n".join([json.dumps(r) for r in gsm8k_rows(4, seed=5)] + ["{broken"]) + "\n")
    at = open_page("launch")
    by_label(at.selectbox, "Task").set_value("gsm8k").run()
    at.text_input(key="task:gsm8k:data").set_value(str(good)).run()
    at.text_input(key="task:gsm8k:eval_data").set_value(str(bad)).run()
    assert f"ei config field eval_data: {bad}, line 5: not valid JSON" in at.error[0].value
    at.checkbox(key="task:gsm8k:skip_bad").check().run()
    assert not at.error and not at.button[0].disabled
    at.button[0].click().run()
    with Store() as s:
        task = s.runs().iloc[0]["config"]["task"]
    assert (task["name"], task["data"], task["eval_data"], task["skip_bad"]) == ("gsm8k", str(good), str(bad), True)


def test_launch_a_reasoning_gym_generator_with_options(fabricated, monkeypatch):
    pytest.importorskip("reasoning_gym")
    monkeypatch.setattr(jobs, "spawn_worker", lambda **_: None)
    at = open_page("launch")
    by_label(at.selectbox, "Task").set_value("gym").run()
    generator = at.selectbox(key="task:gym:gym_name")
    assert {"gsm_symbolic", "basic_arithmetic", "chain_sum", "leg_counting", "products"} <= set(generator.options)
    assert by_label(at.selectbox, "Evaluation split").options == ["train", "test"]
    generator.set_value("products").run()
    at.text_input(key="task:gym:gym_options").set_value("{terms: 3}").run()
    assert "ei config field gym_options: not a JSON object" in at.error[0].value and at.button[0].disabled
    at.text_input(key="task:gym:gym_options").set_value('{"min_terms": 3}').run()
    assert "rejected by products" in at.error[0].value
    at.text_input(key="task:gym:gym_options").set_value('{"max_digits": 3}').run()  # 2 digits: too few questions
    assert not at.error
    at.button[0].click().run()
    with Store() as s:
        task = s.runs().iloc[0]["config"]["task"]
    assert (task["name"], task["gym_name"], json.loads(task["gym_options"])) == ("gym", "products", {"max_digits": 3})


def test_launch_takes_any_hf_directory_and_groups_the_model_fields(fabricated, tmp_path):
    model_dir = untrained_checkpoint(tmp_path / "Qwen2.5-0.5B-Instruct")  # a whole HF directory, not the workspace's
    at = open_page("launch")
    at.selectbox[0].set_value("another directory…").run()
    at.text_input[0].set_value(str(model_dir)).run()
    assert not at.error and not at.button[0].disabled
    assert at.selectbox(key="ei:defaults:prompt_format").options == ["auto", "plain", "chat", "few_shot"]
    assert at.checkbox(key="ei:defaults:trust_remote_code").value is False  # opt-in only
    at.number_input(key="ei:defaults:lora_r").set_value(-1).run()
    assert [unquoted(e.value) for e in at.error] == ["ei config field lora_r must be >= 0, got -1",
                                           "ei config field lora_r must be >= 0, got -1 (under Model)"]


# -- runs -------------------------------------------------------------------------------------------


def test_runs_shows_a_failed_run_with_its_error_and_resume(fabricated):
    at = open_page("runs", {"run": str(fabricated["runs"]["grpo"])})
    assert "fabricated failure" in at.error[0].value
    assert [b.label for b in at.button] == ["Resume", f"Delete run {fabricated['runs']['grpo']}"]
    assert not [c for c in at.code if "Traceback" in c.value]  # offered as a download, never shown
    assert at.get("download_button")


def test_runs_shows_curves_losses_and_log_of_a_ppo_run(fabricated):
    at = open_page("runs", {"run": str(fabricated["runs"]["ppo"])})
    assert not at.exception and not at.error
    figures = charts(at)
    assert len(figures) == 2  # learning curves, losses and KL
    assert {t["name"] for t in figures[0]["data"]} >= {"reward", "train/accuracy", "maj@1", "pass@8"}
    assert {a["text"] for a in figures[1]["layout"]["annotations"]} >= {"policy_loss", "approx_kl", "kl_ref"}
    log = shown_code(at)[0].value
    assert "step 40" in log and "evaluated" in log
    assert {m.label for m in at.metric} == {"Elapsed", "Time left", "Samples seen", "maj@1"}


def test_runs_follows_a_live_run_and_cancels_it(fabricated):
    with Store() as s:
        run_id = s.create_run("ei", {"base": "b", "rounds": 4}, total=4, status="running")
        s.update_run(run_id, pid=os.getpid(), started_at=time.time() - 60, heartbeat_at=time.time(),
                     step=1, progress=0.25, phase="round 2/4: sampling")
    at = open_page("runs", {"run": str(run_id)})
    assert not at.exception
    bar = at.get("progress")[0]
    assert "round 2/4: sampling" in bar.proto.text and bar.proto.value == 25
    assert at.metric[1].value.startswith("3m")  # time left: about 60 s per quarter done
    at.button(key="cancel").click().run()
    with Store() as s:
        assert s.get_run(run_id)["cancel_requested"] == 1


def test_runs_deletes_a_stopped_run_after_saying_what_goes(fabricated):
    ei, ppo = fabricated["runs"]["ei"], fabricated["runs"]["ppo"]
    at = open_page("runs", {"run": str(ei)})
    with Store() as s:
        footprint = s.run_footprint(ei)
    summary = texts(at.get("text"))  # as text: it names the run's directory
    assert f"Deletes run {ei} (ei, finished): its {footprint['checkpoints']} checkpoints, {footprint['samples']:,} samples" in summary
    assert "cannot be undone" in summary
    at.button(key="delete").click().run()
    assert not at.exception
    assert unquoted(at.success[0].value).startswith(f"run {ei} deleted: {footprint['checkpoints']} checkpoints")
    assert not [o for o in at.selectbox[0].options if o.startswith(f"run {ei} ")] and at.selectbox[0].value != ei
    assert at.query_params["run"] == str(at.selectbox[0].value)  # the link follows the run now shown
    with Store() as s:
        assert s.get_run(ei) is None and s.get_run(ppo) is not None
    for name in PAGES:  # the other pages no longer show it, and do not fail
        other = open_page(name)
        assert not other.exception, name


def test_runs_offers_no_delete_for_an_active_run(fabricated):
    with Store() as s:
        run_id = s.create_run("ei", {"base": "b", "rounds": 4}, total=4, status="running")
        s.update_run(run_id, pid=os.getpid(), started_at=time.time(), heartbeat_at=time.time())
    at = open_page("runs", {"run": str(run_id)})
    assert [b.label for b in at.button] == ["Cancel"]


def test_runs_says_why_a_run_cannot_be_deleted(fabricated):
    ei = fabricated["runs"]["ei"]
    with Store() as s:
        child = s.create_run("ppo", {"base": str(jobs.run_dir(ei) / "step-00002")}, status="failed")
    at = open_page("runs", {"run": str(ei)})
    at.button(key="delete").click().run()
    assert f"used by run {child}" in at.error[0].value
    with Store() as s:
        assert s.get_run(ei) is not None


def test_runs_selects_the_run_in_the_link(fabricated):
    at = open_page("runs", {"run": str(fabricated["runs"]["ei"])})
    assert at.selectbox[0].value == fabricated["runs"]["ei"]
    at.selectbox[0].set_value(fabricated["runs"]["ppo"]).run()
    assert at.query_params["run"] == str(fabricated["runs"]["ppo"])


# -- solutions --------------------------------------------------------------------------------------


def test_solutions_shows_the_tree_and_the_texts_through_a_node(fabricated):
    at = open_page("solutions")
    assert not at.exception
    assert at.selectbox[0].value == fabricated["runs"]["ppo"]  # the newest run with checkpoints
    tree = charts(at)[0]["data"][0]
    assert tree["type"] == "icicle" and array(tree["values"])[0] == 8  # the root: every sample of the problem
    nodes = at.selectbox[-1]
    assert nodes.label == "Step"
    with Store() as s:  # the same tree, to know the id of its most frequent first step
        first = dashboard.tree(dashboard.problem_samples(s, fabricated["runs"]["ppo"], "eval", 40, "test-0"))["id"][1]
    nodes.set_value(first).run()
    assert "samples reach this step" in texts(at.caption)
    assert shown_code(at) and all("\n" in c.value or "####" in c.value for c in shown_code(at)[:1])
    at.radio[2].set_value("node-link").run()
    assert charts(at)[0]["data"][1]["mode"].startswith("markers")


def test_solutions_filters_problems_and_samples(fabricated):
    at = open_page("solutions")
    at.radio[1].set_value("never solved").run()
    assert not at.exception
    label = at.selectbox[2].label if len(at.selectbox) > 2 else ""
    assert "Problem" in label or "No problem matches" in texts(at.info)
    at = open_page("solutions")
    samples = at.dataframe[0].value
    assert list(samples.columns) == ["sample_idx", "correct", "answer", "reward", "logprob", "n_tokens", "text", "notes"]
    assert len(samples) == 9  # greedy + 8
    at.radio[3].set_value("correct").run()
    assert (at.dataframe[0].value["correct"] == 1).all()


def test_solutions_of_training_rollouts_and_across_steps(fabricated):
    at = open_page("solutions")
    at.selectbox[0].set_value(fabricated["runs"]["ei"]).run()
    history = at.dataframe[1].value
    assert list(history["step"]) == [0, 1, 2]  # the EI run's checkpoints
    at.radio[0].set_value("rollout").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert at.selectbox[1].label == "Training step"


def test_solutions_shows_model_text_as_text(fabricated):
    """A sample that looks like markup stays text: code blocks and table cells, never HTML."""
    with Store() as s:
        s.add_samples([{"run_id": fabricated["runs"]["ei"],
                        "checkpoint_id": fabricated["checkpoints"][fabricated["runs"]["ei"]][-1],
                        "step": 2, "kind": "eval", "task": "multistep", "split": "test", "problem_id": "test-0",
                        "sample_idx": 99, "text": "<script>alert(1)</script>\n**bold**", "correct": 0}])
    at = open_page("solutions")
    at.selectbox[0].set_value(fabricated["runs"]["ei"]).run()
    assert not at.get("html") and not any("<script>" in m.value for m in at.markdown)
    assert "<script>alert(1)</script>\n**bold**" in set(at.dataframe[0].value["text"])


# -- pass@k, diversity, compare ---------------------------------------------------------------------


def test_pass_at_k_curves_per_checkpoint_and_over_training(fabricated):
    at = open_page("pass_at_k")
    by_k, bands, over = charts(at)
    assert [t["name"] for t in by_k["data"]] == ["run 2 ppo · step 0", "run 2 ppo · step 40"]
    assert by_k["layout"]["xaxis"]["type"] == "log" and array(by_k["data"][0]["x"])[-1] == 8
    assert {t["name"] for t in over["data"] if t.get("name")} == {"maj@1", "pass@1", "pass@8", "maj@8"}
    at.radio[0].set_value("rerank").run()
    assert not at.exception and charts(at)[0]["layout"]["yaxis"]["title"]["text"] == "rerank@k"
    at.multiselect[0].set_value([]).run()
    assert "Choose one or more checkpoints." in texts(at.info)


def test_pass_at_k_sets_runs_side_by_side_against_samples_seen(fabricated):
    ei, ppo = fabricated["runs"]["ei"], fabricated["runs"]["ppo"]
    at = open_page("pass_at_k")
    at.multiselect[1].set_value([ppo, ei]).run()
    assert not at.exception
    runs = charts(at)[-1]
    lines = [t for t in runs["data"] if t.get("name")]
    assert [t["name"] for t in lines] == [f"run {ei} · ei quickstart (K=8)", f"run {ppo} · ppo (K=8)"]
    assert runs["layout"]["xaxis"]["title"]["text"] == "samples seen"
    with Store() as s:  # each point sits at what its run had sampled when it saved the checkpoint
        for line, run_id in zip(lines, (ei, ppo)):
            logged = s.metrics(run_id, ["eval/maj@1"]).sort_values("step")
            assert array(line["x"]) == logged["samples_seen"].tolist()
            assert np.allclose(array(line["y"]), logged["value"].tolist())
    at.radio(key="runs_metric").set_value("pass@K").run()
    at.radio(key="runs_x").set_value("step").run()
    runs = charts(at)[-1]
    assert runs["layout"]["yaxis"]["title"]["text"] == "pass@K" and runs["layout"]["xaxis"]["title"]["text"] == "training step"
    assert {t["customdata"][0][1] for t in runs["data"] if t.get("name")} == {"pass@8"}
    at.multiselect[1].set_value([]).run()
    assert "Choose one or more runs." in texts(at.info)


def test_pass_at_k_reranks_by_a_runs_orm_or_a_typed_one_and_names_it(fabricated, workspace, tmp_path):
    from engine.algorithms.orm import OutcomeRewardModel

    ppo = fabricated["runs"]["ppo"]
    own = OutcomeRewardModel.from_base(workspace / "checkpoints" / "base-tiny").save(jobs.run_dir(ppo) / "orm")
    at = open_page("pass_at_k")
    at.radio[0].set_value("rerank").run()
    by = at.selectbox(key="rerank_by")
    assert by.options == ["log-probability", f"run {ppo} · ppo: its own ORM", "an ORM directory…"]
    assert "ranked by log-probability" in texts(at.caption)
    by.set_value(f"run {ppo} · ppo: its own ORM").run()
    assert not at.exception and not at.error
    by_k, bands = charts(at)[:2]
    assert by_k["layout"]["title"]["text"] == f"rerank@k by checkpoint (rerank by the ORM {own})"
    assert bands["layout"]["title"]["text"].endswith(f"(rerank by the ORM {own})")
    assert f"ranked by the ORM {own}" in unquoted(texts(at.caption))

    at.selectbox(key="rerank_by").set_value("an ORM directory…").run()
    assert "Give the directory of an outcome reward model" in texts(at.info)
    odd = tmp_path / "<b>not an orm"
    odd.mkdir()
    at.text_input(key="orm_dir").set_value(str(odd)).run()
    assert not at.exception and unquoted(at.error[0].value) == f"checkpoint {odd} has no config.json; " \
                                                                "is it a Hugging Face model directory?"
    at.text_input(key="orm_dir").set_value(str(own)).run()
    assert not at.error and charts(at)[0]["layout"]["title"]["text"].endswith(f"(rerank by the ORM {own})")
    assert len(charts(at)) == 3  # the runs' curves below still drawn


def test_diversity_over_training_per_problem_and_answers(fabricated):
    at = open_page("diversity")
    over, hist, answers = charts(at)
    assert [a["text"] for a in over["layout"]["annotations"]] == ["distinct_answers", "distinct_steps",
                                                                   "answer_entropy", "distinct_2", "self_bleu"]
    assert hist["data"][0]["type"] == "histogram" and len(array(hist["data"][0]["x"])) == 6
    assert answers["data"][0]["type"] == "bar" and any("✓" in x for x in answers["data"][0]["x"])
    at.selectbox[3].set_value("self_bleu").run()
    assert not at.exception


def test_compare_headline_figures_and_aligned_samples(fabricated):
    at = open_page("compare")
    assert {m.label for m in at.metric} == {"maj@1", "pass@1", "pass@K", "Gained / lost", "McNemar p",
                                            "Solve rate change"}
    scatter, bars = charts(at)
    assert bars["data"][0]["x"] == ["gained", "lost", "both", "neither"]
    assert "diff" in [c.language for c in at.code]
    at.selectbox[0].set_value(at.selectbox[1].value).run()
    assert "same checkpoint" in at.warning[0].value


def test_launch_repeats_an_error_in_the_folded_fields_next_to_the_button(fabricated):
    at = open_page("launch")
    at.number_input(key="ei:defaults:eval_k").set_value(0).run()
    assert [unquoted(e.value) for e in at.error] == ["ei config field eval_k must be >= 1, got 0",
                                           "ei config field eval_k must be >= 1, got 0 (under Sampling and evaluation)"]


@pytest.mark.parametrize("maj, delta, colour", [((0.25, 0.5), "+0.250 since step 0", "green"),
                                                ((0.5, 0.25), "-0.250 since step 0", "red"),
                                                ((0.5, 0.5), "+0.000 since step 0", "gray")])
def test_runs_maj1_change_is_coloured_by_its_sign_and_grey_when_none(workspace, maj, delta, colour):
    with Store() as s:
        run_id = s.create_run("ei", {"base": "b", "rounds": 1}, total=1, status="finished")
        for step, value in enumerate(maj):
            s.log_metrics(run_id, step, {"eval/maj@1": value})
    at = open_page("runs", {"run": str(run_id)})
    shown = next(m for m in at.metric if m.label == "maj@1")
    assert shown.value == f"{maj[1]:.3f}" and shown.proto.delta == delta
    assert type(shown.proto).MetricColor.Name(shown.proto.color).lower() == colour
    assert (type(shown.proto).MetricDirection.Name(shown.proto.direction) == "NONE") == (colour == "gray")


# -- a workspace's first run, at each state a real run passes through ---------------------------------


def first_run_states(workspace):
    """Yield (state, run_id) as a first EI run goes: queued; started (step-0 checkpoint recorded,
    not yet evaluated); its evaluation samples written but not yet scored; evaluated; round 1's
    rollouts and metrics in, round 1's checkpoint recorded but not yet evaluated."""
    from engine.tasks.multistep import MultiStep

    task = MultiStep()
    problems = task.problems("test", 3)
    base = untrained_checkpoint(workspace / "checkpoints" / "base-tiny")  # where the quickstart leaves it

    def samples(run_id, checkpoint_id, step, kind):
        return [{"run_id": run_id, "checkpoint_id": checkpoint_id, "step": step, "kind": kind, "task": "multistep",
                 "split": "test" if kind == "eval" else "train", "problem_id": p.id, "sample_idx": i,
                 "text": p.reference, "answer": p.answer, "correct": int(i % 2 == 0), "reward": float(i % 2 == 0),
                 "n_tokens": 12, "logprob": -3.0} for p in problems for i in range(-1 if kind == "eval" else 0, 4)]

    with Store() as s:
        run_id = s.create_run("ei", {"base": str(base), "rounds": 2, "k": 4}, total=2, status="queued",
                              parent_checkpoint=base)
        yield "queued", run_id
        s.update_run(run_id, status="running", pid=os.getpid(), started_at=time.time(), heartbeat_at=time.time(),
                     phase="evaluating step 0")
        step0 = s.add_checkpoint(run_id, 0, base)
        yield "started", run_id
        s.add_samples(samples(run_id, step0, 0, "eval"))
        yield "evaluation written", run_id
        s.update_checkpoint_metrics(step0, {"maj@1": 0.5, "pass@1": 0.5, "pass@4": 1.0, "maj@4": 0.5})
        s.log_metrics(run_id, 0, {"eval/maj@1": 0.5, "eval/pass@4": 1.0}, samples_seen=0)
        yield "evaluated", run_id
        s.add_samples(samples(run_id, None, 1, "rollout"))
        s.log_metrics(run_id, 1, {"reward": 0.5, "train/accuracy": 0.5}, samples_seen=12)
        s.add_checkpoint(run_id, 1, str(workspace / "runs" / "step-1"))
        s.update_run(run_id, step=1, progress=0.5, phase="evaluating step 1")
        yield "round 1 saved", run_id


def test_every_page_follows_a_first_run_through_each_state(workspace):
    for state, run_id in first_run_states(workspace):
        for name in PAGES:
            at = open_page(name, {"run": str(run_id)} if name == "runs" else None)
            assert not at.exception, f"{name} page, first run {state}: {at.exception}"
            assert not at.error, f"{name} page, first run {state}: {[e.value for e in at.error]}"
