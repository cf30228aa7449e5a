"""Tasks read from files (gsm8k, svamp, jsonl): loading, splits, errors naming file and line,
skip_bad, scoring with the dense reward, config fields and the CLI (`--task gsm8k --data PATH`)."""

import dataclasses
import json
import random

import pytest

from engine.config import TaskSpec, config_from_dict, make_config
from engine.errors import ReasonlabError
from engine.store import Store
from engine.tasks import TaskOptionError, get_task
from engine.tasks.files import in_test
from tests.data_files import gsm8k_rows, svamp_rows, write_gsm8k, write_jsonl
from tests.helpers import assert_one_line_error, reasonlab


@pytest.fixture
def gsm8k(tmp_path):
    return write_gsm8k(tmp_path / "gsm8k.jsonl", n=40)


@pytest.fixture
def base_dir(untrained_checkpoint):
    """A checkpoint for config validation (it loads the base)."""
    return untrained_checkpoint


# -- loading and splits -----------------------------------------------------------------------------


def test_gsm8k_problems_answers_references_and_annotations(gsm8k):
    task = get_task("gsm8k", data=str(gsm8k))
    row = gsm8k_rows(40)[0]
    p = next(p for p in task.problems("all") if p.question == row["question"])
    a, b = (int(x) for x in row["answer"].split(" = ")[0].split()[-3::2])
    assert p.answer == str(a + b)
    assert p.reference == f"She has {a} + {b} = {a + b} pens.\n#### {a + b}"  # annotation removed
    assert p.data == {"line": 1, "results": (str(a + b),)}
    assert task.sample_solution(p, random.Random(0)) == p.reference
    assert task.prompt(p) == f"Question: {p.question}\nAnswer:\n"


def test_single_file_split_by_question_hash(gsm8k, tmp_path):
    task = get_task("gsm8k", data=str(gsm8k))
    train, test, every = (task.problems(s) for s in ("train", "test", "all"))
    assert len(every) == 40 and len(train) + len(test) == 40 and 0 < len(test) < 10
    assert all(in_test(p.question) for p in test) and not any(in_test(p.question) for p in train)
    assert [p.id for p in test] == [f"test-{i}" for i in range(len(test))]
    assert task.problems("train", 3) == train[:3]
    # the rule reads the questions, not the line order
    shuffled = gsm8k_rows(40)
    random.Random(1).shuffle(shuffled)
    again = get_task("gsm8k", data=str(write_jsonl(tmp_path / "shuffled.jsonl", shuffled)))
    assert {p.question for p in again.problems("test")} == {p.question for p in test}


def test_eval_data_is_the_test_split(gsm8k, tmp_path):
    held = write_gsm8k(tmp_path / "test.jsonl", n=5, seed=7)
    task = get_task("gsm8k", data=str(gsm8k), eval_data=str(held))
    assert len(task.problems("train")) == 40
    assert [p.question for p in task.problems("test")] == [r["question"] for r in gsm8k_rows(5, seed=7)]


def test_svamp_json_list_with_optional_equation(tmp_path):
    path = tmp_path / "svamp.json"
    path.write_text(json.dumps(svamp_rows(), indent=2))
    task = get_task("svamp", data=str(path), eval_data=str(path))
    problems = task.problems("test")
    assert problems[0].question == "Jack had 8 pens. He gave 3 pens to Mary. How many pens does he have now?"
    assert problems[1].question.startswith("Each box holds 4 cakes. There are 6 boxes. How many")
    assert [p.answer for p in problems] == ["5", "24", "5", "17"]
    assert problems[2].reference == "11 + 3 = 14\n14 - 9 = 5\n#### 5"
    assert problems[2].data["results"] == ("14", "5")
    assert problems[3].reference == "#### 17" and problems[3].data["results"] == ()
    assert [p.data["line"] for p in problems] == [2, 9, 16, 23]  # where each item starts


def test_svamp_also_reads_jsonl(tmp_path):
    task = get_task("svamp", data=str(write_jsonl(tmp_path / "svamp.jsonl", svamp_rows())))
    assert [p.answer for p in task.problems("all")] == ["5", "24", "5", "17"]


def test_jsonl_with_configurable_fields_and_free_form_answers(tmp_path):
    rows = [{"problem": "What is half of one?", "solution": "\\frac{1}{2}"},
            {"problem": "How many legs has a cat?", "solution": 4.0},
            {"problem": "Worked out", "solution": "2 + 2 = <<2+2=4>>4\n#### 4"}]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    task = get_task("jsonl", data=str(path), eval_data=str(path), question_field="problem", answer_field="solution")
    half, legs, worked = task.problems("test")
    assert (half.answer, legs.answer, worked.answer) == ("\\frac{1}{2}", "4", "4")
    assert worked.data["results"] == ("4",)
    assert task.score(half, "Half of one.\n#### 0.5").correct  # math-verify: 0.5 == 1/2
    assert task.score(half, "#### 1/2").answer == "\\frac{1}{2}"  # reported in the reference's form
    assert not task.score(half, "#### 1/3").correct


# -- malformed files --------------------------------------------------------------------------------


GOOD = json.dumps(gsm8k_rows(1)[0])


@pytest.mark.parametrize("kind, lines, line, problem", [
    ("gsm8k", [GOOD, '{"question": "q", "answer": '], 2, "not valid JSON"),
    ("gsm8k", [GOOD, "", '{"question": "q"}'], 3, "missing field 'answer'"),
    ("gsm8k", ['{"question": "q", "answer": "it is 4"}'], 1, "field 'answer' has no final `#### N` line"),
    ("gsm8k", [GOOD, '{"question": "q", "answer": "so\\n#### many"}'], 2, "final answer 'many' is not a number"),
    ("gsm8k", [GOOD, GOOD, "[1, 2]"], 3, "expected a JSON object, got list"),
    ("gsm8k", ['{"question": "", "answer": "#### 4"}'], 1, "field 'question' must be non-empty text"),
    ("svamp", ['{"Body": "b", "Question": "q?", "Answer": "five"}'], 1, "Answer 'five' is not a number"),
    ("svamp", ['{"Body": "b", "Answer": 3}'], 1, "missing field 'Question'"),
    ("jsonl", ['{"question": "q", "answer": [1, 2]}'], 1, "field 'answer' must be a number or non-empty text"),
    ("jsonl", [GOOD, '{"q": "x", "answer": 1}'], 2, "missing field 'question'"),
    # what Python cannot read raised ValueError, RecursionError, UnicodeEncodeError (in the split's hash)
    ("jsonl", [GOOD, '{"question": "q", "answer": ' + "9" * 5000 + "}"], 2,
     "not readable JSON (Exceeds the limit (4300 digits) for integer string conversion"),
    ("gsm8k", [GOOD, "[" * 100_000 + "]" * 100_000], 2, "JSON nested too deeply to read"),
    ("gsm8k", [GOOD, '{"question": "x\\ud800", "answer": "#### 1"}'], 2,
     "field 'question' is not valid text: character 1 is '\\ud800', a lone surrogate"),
    ("jsonl", [GOOD, '{"question": "q", "answer": "\\udfff"}'], 2, "field 'answer' is not valid text"),
    ("jsonl", [GOOD, '{"question": "q", "answer": 1e999}'], 2, "field 'answer' is not a finite number"),
    ("svamp", ['{"Body": "b", "Question": "q?", "Answer": 1e999}'], 1, "Answer 'Infinity' is not a number"),
])
def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path, kind, lines, line, problem):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TaskOptionError) as e:
        get_task(kind, data=str(path))
    assert e.value.option == "data"
    assert f"{path}, line {line}: {problem}" in str(e.value)
    assert "--skip-bad" in str(e.value)  # and says how to go on without those lines


def test_a_line_with_bytes_that_are_not_utf8_is_a_malformed_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join([GOOD.encode(), b'{"question": "caf\xe9", "answer": "#### 1"}', GOOD.encode()]))
    with pytest.raises(TaskOptionError, match=f"{path}, line 2: field 'question' is not valid text"):
        get_task("gsm8k", data=str(path))
    assert len(get_task("gsm8k", data=str(path), skip_bad=True).problems("all")) == 2


def test_json_strings_may_hold_line_separators_other_than_newline(tmp_path):
    path = tmp_path / "data.jsonl"  # U+2028 and U+0085 end a line for str.splitlines, not for JSONL
    path.write_text(json.dumps({"question": "one\u2028two\x85three", "answer": "#### 4"}, ensure_ascii=False) + "\n")
    assert get_task("gsm8k", data=str(path)).problems("all")[0].question == "one\u2028two\x85three"


def test_a_number_longer_than_28_digits_is_a_valid_answer(tmp_path):
    path = tmp_path / "data.jsonl"  # quantizing 29 digits and 7 decimals raised InvalidOperation
    long = "1" * 29 + ".1234567"
    path.write_text(json.dumps({"question": "q", "answer": f"#### {long}"}) + "\n")
    task = get_task("gsm8k", data=str(path))
    p = task.problems("all")[0]
    assert p.answer == "1" * 29 + ".123457"
    assert task.score(p, f"so #### {long}").correct and not task.score(p, "#### " + "1" * 29).correct


@pytest.mark.parametrize("body", ['[{"Body": "b.", "Question": "q", "Answer": ' + "9" * 5000 + "}]",
                                  "[" + "[" * 100_000 + "]" * 100_000 + "]"])
def test_a_json_list_python_cannot_read_names_the_line(tmp_path, body):
    path = tmp_path / "svamp.json"
    path.write_text(body)
    with pytest.raises(TaskOptionError, match=f"{path}, line 1: (not readable JSON|JSON nested too deeply)"):
        get_task("svamp", data=str(path))


def test_an_equation_python_cannot_evaluate_gives_no_reference_steps(tmp_path):
    path = tmp_path / "svamp.json"  # `1e999 + 1` raised TypeError while loading
    path.write_text(json.dumps([{"Body": "b.", "Question": "q", "Answer": 3, "Equation": "1e999 + 1"}]))
    assert get_task("svamp", data=str(path)).problems("all")[0].reference == "#### 3"


def test_the_split_hash_takes_any_text():
    assert in_test("\ud800") in (True, False)  # a lone surrogate raised UnicodeEncodeError


def test_a_broken_json_list_names_the_line(tmp_path):
    path = tmp_path / "svamp.json"
    text = json.dumps(svamp_rows(), indent=2)
    path.write_text(text.replace('"Answer": 24.0', '"Answer": 24.0,,'))
    with pytest.raises(ReasonlabError, match=f"{path}, line 14: not valid JSON"):
        get_task("svamp", data=str(path))


def test_missing_file_and_bad_eval_data_name_their_option(tmp_path, gsm8k):
    with pytest.raises(TaskOptionError, match=f"data file {tmp_path / 'nope.jsonl'} does not exist"):
        get_task("gsm8k", data=str(tmp_path / "nope.jsonl"))
    bad = write_jsonl(tmp_path / "bad.jsonl", [], ("{oops",))
    with pytest.raises(TaskOptionError) as e:
        get_task("gsm8k", data=str(gsm8k), eval_data=str(bad))
    assert e.value.option == "eval_data" and f"{bad}, line 1" in str(e.value)


def test_skip_bad_keeps_the_valid_lines_and_counts_the_others(tmp_path):
    rows = gsm8k_rows(6)
    path = write_jsonl(tmp_path / "g.jsonl", rows[:3], ("{not json", '{"question": "q"}')
                       + tuple(json.dumps(r) for r in rows[3:]))
    task = get_task("gsm8k", data=str(path), skip_bad=True)
    assert [p.question for p in task.problems("all")] == [r["question"] for r in rows]
    assert [p.data["line"] for p in task.problems("all")] == [1, 2, 3, 6, 7, 8]
    assert task.skipped == [f"{path}, line 4: not valid JSON (Expecting property name enclosed in double quotes)",
                            f"{path}, line 5: missing field 'answer'"]


def test_skip_bad_with_nothing_usable_is_still_an_error(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [], ("{x", "{y"))
    with pytest.raises(ReasonlabError, match=r"has no usable problems \(2 malformed lines skipped\)"):
        get_task("gsm8k", data=str(path), skip_bad=True)


# -- scoring ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion, answer, correct, lenient, dense, steps", [
    ("Ann has 3 + 4 = 7 pens.\n#### 7", "7", True, True, 1.0, (1, 1)),
    ("3 + 4 = 7\n#### 7.00", "7", True, True, 1.0, (1, 1)),
    ("3 + 4 = 7\n#### $7", "7", True, True, 1.0, (1, 1)),
    ("3 + 4 = 8\n#### 8", "8", False, False, 0.0, (1, 0)),
    ("3 + 4 = 7 but then #### 8", "8", False, False, 1.0, (1, 1)),  # reached the result, wrong answer
    ("It is 7", None, False, True, 1.0, (0, 0)),                       # no ####: only flexible is right
    ("#### 7\n\nQuestion: Bo has 1 pen. How many?\nAnswer:\n#### 1", "7", True, True, 1.0, (0, 0)),
    ("", None, False, False, 0.0, (0, 0)),
])
def test_gsm8k_scoring_table(tmp_path, completion, answer, correct, lenient, dense, steps):
    path = write_jsonl(tmp_path / "one.jsonl", [{"question": "Ann has 3 pens and gets 4 more. How many?",
                                                 "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}])
    task = get_task("gsm8k", data=str(path), eval_data=str(path))
    score = task.score(task.problems("test")[0], completion)
    assert (score.answer, score.correct, score.correct_lenient, score.dense) == (answer, correct, lenient, dense)
    assert (score.steps_total, score.steps_valid) == steps


def test_dense_reward_is_the_share_of_annotated_results_reached(tmp_path):
    path = write_jsonl(tmp_path / "two.jsonl", [{"question": "q", "answer": "<<48/2=24>>24 then <<48+24=72>>72\n#### 72"}])
    task = get_task("gsm8k", data=str(path), eval_data=str(path))
    p = task.problems("test")[0]
    assert task.score(p, "48 / 2 = 24\n#### 70").dense == 0.5
    assert task.score(p, "24 and 72\n#### 72").dense == 1.0
    assert task.step_signature("48/2 = 24\n24+48=72\n#### 72") == ("24", "72", "72")


# -- as config fields -----------------------------------------------------------------------------------


def test_config_requires_data_for_a_file_task(base_dir):
    with pytest.raises(ReasonlabError, match="ei config field data: required for task gsm8k"):
        make_config("ei", base=base_dir, sets=["task=gsm8k"])


def test_config_errors_name_the_field_file_and_line(base_dir, gsm8k, tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", gsm8k_rows(2), ('{"question": "q", "answer": "#### x"}',))
    with pytest.raises(ReasonlabError, match=f"grpo config field data: {bad}, line 3: final answer 'x'"):
        make_config("grpo", base=base_dir, sets=["task=gsm8k", f"data={bad}"])
    with pytest.raises(ReasonlabError, match=f"ei config field eval_data: {bad}, line 3"):
        make_config("ei", base=base_dir, sets=["task=gsm8k", f"data={gsm8k}", f"eval_data={bad}"])
    cfg = make_config("ei", base=base_dir, sets=["task=gsm8k", f"data={bad}", "skip_bad=true"])
    assert cfg.task.skip_bad is True and len(cfg.task.build().skipped) == 1
    huge = write_jsonl(tmp_path / "huge.jsonl", gsm8k_rows(2), ('{"question": "q", "answer": ' + "9" * 5000 + "}",))
    with pytest.raises(ReasonlabError, match=f"ei config field data: {huge}, line 3: not readable JSON"):
        make_config("ei", base=base_dir, sets=["task=gsm8k", f"data={huge}"])


@pytest.mark.parametrize("sets, field, message", [
    (["data=x.jsonl"], "data", "is not an option of task multistep (it has none)"),
    (["task=gym", "gym_name=chain_sum", "question_field=q"], "question_field", "is not an option of task gym"),
    (["task=jsonl", "data={data}", "question_field= "], "question_field", "must name a field"),
    (["task=nope"], "task", "must be one of gsm8k, gym, jsonl, multistep, svamp"),
    (["task=gsm8k", "data={data}", "eval_split=ood"], "eval_split", "must be one of train, test, all"),
    (["dtype=float16"], "dtype", "must be one of auto, float32, bfloat16"),
    (["prompt_format=markdown"], "prompt_format", "must be one of auto, plain, chat, few_shot"),
    (["lora_r=-1"], "lora_r", "must be >= 0"),
    (["lora_r=8", "lora_dropout=1"], "lora_dropout", "[0, 1)"),
])
def test_config_field_checks(base_dir, gsm8k, sets, field, message):
    with pytest.raises(ReasonlabError, match=f"config field {field}:? ") as e:
        make_config("ei", base=base_dir, sets=[s.format(data=gsm8k) for s in sets])
    assert message in str(e.value)


def test_config_paths_become_absolute_and_the_stored_config_rebuilds_the_task(base_dir, gsm8k, monkeypatch):
    monkeypatch.chdir(gsm8k.parent)
    cfg = make_config("ei", base=base_dir, sets=["task=gsm8k", f"data={gsm8k.name}"])
    assert cfg.task.data == str(gsm8k)  # a background worker runs in another directory
    with Store() as store:
        run_id = store.create_run("ei", dataclasses.asdict(cfg), total=1)
        stored = store.get_run(run_id)["config"]
    again = config_from_dict("ei", stored)  # what `reasonlab resume` does
    again.validate()
    assert [p.question for p in again.task.build().problems("train")] == \
        [p.question for p in cfg.task.build().problems("train")]


# -- the command line -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_sft_and_eval_on_a_gsm8k_file(tmp_path, gsm8k):
    out = tmp_path / "base"
    sft = reasonlab("sft", "--task", "gsm8k", "--data", gsm8k, "--out", out, "--steps", "5", "--quiet")
    assert sft.returncode == 0, sft.stderr
    meta = json.loads((out / "reasonlab.json").read_text())
    assert meta["config"]["task"] == dataclasses.asdict(TaskSpec("gsm8k", data=str(gsm8k)))
    # no --task: the checkpoint's own task (and data file) is evaluated
    ev = reasonlab("eval", out, "--split", "test", "-k", "2", "--limit", "3", "--max-new-tokens", "8", "--json")
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    assert metrics["task"] == "gsm8k" and metrics["problems"] == 3 and metrics["prompt_format"] == "plain"
    assert 0 <= metrics["pass@2"] <= 1 and metrics["skipped_lines"] == 0

    bad = write_jsonl(tmp_path / "bad.jsonl", gsm8k_rows(3), ("{oops",))
    refused = reasonlab("eval", out, "--task", "gsm8k", "--data", bad, "--split", "all", "-k", "1", "--json")
    assert_one_line_error(refused, f"data: {bad}, line 4: not valid JSON")
    skipped = reasonlab("eval", out, "--task", "gsm8k", "--data", bad, "--skip-bad", "--split", "all", "-k", "1",
                        "--max-new-tokens", "4", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout)["problems"] == 3
    assert "skipped 1 malformed lines" in skipped.stderr


def test_cli_refuses_a_task_flag_the_task_does_not_take(tmp_path, gsm8k):
    result = reasonlab("eval", tmp_path, "--task", "multistep", "--data", gsm8k, "--json")
    assert_one_line_error(result, "--data is not an option of task multistep")


def test_the_dashboard_shows_questions_of_a_file_task_run(gsm8k):
    from engine import dashboard

    task = get_task("gsm8k", data=str(gsm8k))
    with Store() as s:
        run_id = s.create_run("ei", {"task": "gsm8k", "data": str(gsm8k), "skip_bad": False}, total=1)
        s.add_samples([{"run_id": run_id, "step": 1, "kind": "rollout", "task": "gsm8k", "split": "train",
                        "problem_id": f"train-{i}", "sample_idx": 0, "text": "#### 1", "correct": 0} for i in (0, 5)])
        table = dashboard.problem_table(s, run_id, "rollout", 1)
        assert list(table["question"]) == [task.problems("train")[i].question for i in (0, 5)]
        info = dashboard.problem_info(s, run_id, "train", "train-5")
    assert info["answer"] == task.problems("train")[5].answer and info["reference"].endswith(f"#### {info['answer']}")


def test_a_run_logs_how_many_lines_skip_bad_left_out(base_dir, tmp_path):
    from types import SimpleNamespace

    from engine.algorithms.context import RunContext

    bad = write_jsonl(tmp_path / "bad.jsonl", gsm8k_rows(12), ("{x", '{"question": "q"}'))
    cfg = make_config("ei", base=base_dir, sets=["task=gsm8k", f"data={bad}", "skip_bad=true"])
    with Store() as s:
        run_id = s.create_run("ei", cfg.__dict__.copy(), total=1)
        ctx = RunContext(s, run_id, cfg, tmp_path / "run")
        ctx.use_tokenizer(SimpleNamespace(chat_template=None))  # a model from elsewhere with no chat template
        metrics = s.metrics(run_id)
    assert metrics.set_index("name")["value"]["data/skipped_lines"] == 2
    assert metrics.set_index("name")["value"]["data/train_pool"] == len(ctx.task.problems("train"))
    assert ctx.meta["prompt_format"] == "few_shot"
    assert ctx.prompt(ctx.task.problems("train")[0]).count("Question:") == 5  # 4 worked examples, then it
    assert ctx.stop == ("Question:",)  # sampling ends where the model would start a fifth example


def test_a_completion_that_cannot_be_scored_is_unjudged_and_the_run_logs_how_many(base_dir, gsm8k, tmp_path,
                                                                                monkeypatch):
    from types import SimpleNamespace

    from engine.algorithms.context import RunContext
    from engine.algorithms.rollout import sample_rollouts
    from engine.sampling.base import Completion

    cfg = make_config("ei", base=base_dir, sets=["task=gsm8k", f"data={gsm8k}"])
    problems = get_task("gsm8k", data=str(gsm8k)).problems("train", 2)
    texts = [f"#### {problems[0].answer}", "#### 1e999", "#### 2", "#### 3"]

    class Canned:
        def sample(self, prompts, n, **kwargs):
            return [[Completion([1], texts[2 * i + j], [-0.1], "stop") for j in range(n)] for i in range(len(prompts))]

    def score(self, problem, completion):  # what a task's scoring raising on a model's text looks like
        if "e999" in completion:
            raise ArithmeticError("cannot judge this")
        return original(self, problem, completion)

    task = cfg.task.build()
    original = type(task).score
    monkeypatch.setattr(type(task), "score", score)
    rollouts = sample_rollouts(SimpleNamespace(eval=lambda: None), lambda text, add_special_tokens: {"input_ids": [1]},
                               task, problems, 2, cfg, seed=0, sampler=Canned())
    assert [r.score.unjudged for r in rollouts] == [False, True, False, False]
    assert rollouts[0].score.correct and not rollouts[1].score.correct
    with Store() as s:
        run_id = s.create_run("ei", cfg.__dict__.copy(), total=1)
        RunContext(s, run_id, cfg, tmp_path / "run").log_rollouts(1, rollouts)
        metrics = s.metrics(run_id).set_index("name")["value"]
    assert metrics["score/unjudged"] == 1
