"""`reasonlab export` and the dashboard's downloads: every table in every format loads with pandas and
datasets, values round-trip exactly (awkward texts included), prompts are the run's own, and the
file is never written over or half-written."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine import export
from engine.cli import main
from engine.errors import ReasonlabError
from engine.model.prompts import Prompter
from engine.store import Store
from engine.tasks import get_task
from engine.tasks.multistep import MultiStep
from tests.dashboard_store import fabricate_store
from tests.data_files import build_chat_model, write_gsm8k
from tests.helpers import open_page

SAMPLE_COLUMNS = ["run_id", "kind", "step", "checkpoint_id", "task", "split", "problem_id", "sample_idx", "prompt",
                  "completion", "answer", "correct", "reward", "logprob", "n_tokens", "sample_id"]
COLUMNS = {"samples": SAMPLE_COLUMNS, "rollouts": SAMPLE_COLUMNS,
           "metrics": ["run_id", "step", "name", "value", "samples_seen", "wall_time"],
           "curves": ["run_id", "checkpoint_id", "step", "metric", "k", "value", "lo", "hi", "problems", "label", "scorer"],
           "notes": ["id", "tag", "text", "task", "split", "problem_id", "sample_id", "run_id", "created_at", "kind",
                     "step", "sample_idx"]}
AWKWARD = ['she said "7, not 8"\n#### 7', "line one\r\nline two, with a comma", "naïve café — 3 × 4 = 12 ✓ 数学",
           "<script>alert('x')</script> & <b>bold</b>", "NA", "null", "", " leading and trailing ", "tab\there",
           "#### =SUM(A1:A2)"]


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """A small populated workspace shared by the read-only tests: an EI run (3 evaluated checkpoints,
    rollouts at 2 steps), a PPO run and a failed GRPO run."""
    home = tmp_path_factory.mktemp("export") / "home"
    ids = fabricate_store(home, problems=6, k=8, ei_rounds=2, ppo_checkpoints=2, rollout_problems=4)
    with Store(home / "store.sqlite") as s:  # notes on a problem and on a sample of every run
        for run_id in (ids["runs"]["ei"], ids["runs"]["ppo"]):  # (the failed GRPO run has no samples)
            s.add_note(AWKWARD[0], "tag, with a comma", run_id=run_id, problem_id="test-1")
            s.add_note(AWKWARD[3], sample_id=int(s.samples(run_id=run_id, limit=1)["id"][0]))
    return home, ids


def read(path: Path, fmt: str) -> pd.DataFrame:
    """A file as a user reads it back, with the readers' options the module docstring names."""
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    return pd.read_json(path, lines=True, dtype=False, precise_float=True)


def load_dataset(path: Path, cache: Path):
    import datasets

    return datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(cache))


def plain_run(store: Store, config: dict | None = None, algo: str = "ei") -> int:
    """A run of the built-in task whose prompts are the task's own (prompt_format plain)."""
    return store.create_run(algo, {"task": "multistep", "prompt_format": "plain", **(config or {})}, status="finished")


def sample(run_id: int, text: str, i: int = 0, **fields) -> dict:
    return {"run_id": run_id, "step": 0, "kind": "eval", "task": "multistep", "split": "test",
            "problem_id": "test-0", "sample_idx": i, "text": text, **fields}


# -- every table, every format ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", export.FORMATS)
@pytest.mark.parametrize("what", export.WHATS)
def test_every_table_loads_in_pandas_with_the_fields_column_names(fabricated, tmp_path, what, fmt):
    home, ids = fabricated
    run_id = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as store:
        rows, out = export.export_run(store, run_id, what, tmp_path / f"out.{fmt}")
        expected = {"samples": lambda: store.samples(run_id=run_id).query("kind != 'rollout'"),
                    "rollouts": lambda: store.samples(run_id=run_id, kind="rollout"),
                    "metrics": lambda: store.metrics(run_id),
                    "checkpoints": lambda: store.checkpoints(run_id)}
        n_expected = len(expected[what]()) if what in expected else None
    df = read(out, fmt)
    assert len(df) == rows > 0
    if n_expected is not None:
        assert rows == n_expected
    if what in COLUMNS:
        assert list(df.columns) == COLUMNS[what]
    else:  # checkpoints: fixed columns, then every metric the checkpoints hold
        assert list(df.columns[:6]) == ["checkpoint_id", "run_id", "step", "path", "created_at", "evaluated"]
        assert {"maj@1", "pass@1", "pass@8", "maj@8", "split", "problems"} <= set(df.columns)
    assert set(df["run_id"]) == {run_id} if what != "notes" else run_id in set(df["run_id"])  # notes: also on its problems


@pytest.mark.parametrize("what", export.WHATS)
def test_every_parquet_export_loads_with_datasets(fabricated, tmp_path, what):
    home, ids = fabricated
    with Store(home / "store.sqlite") as store:
        rows, out = export.export_run(store, ids["runs"]["ei"], what, tmp_path / f"{what}.parquet")
    ds = load_dataset(out, tmp_path / "hf")
    assert ds.num_rows == rows
    assert ds.column_names == list(pd.read_parquet(out).columns)
    if what in ("samples", "rollouts"):
        assert ds.features["completion"].dtype == "string" and ds.features["correct"].dtype == "bool"
        assert ds.features["sample_idx"].dtype == "int64" and ds.features["logprob"].dtype == "float64"


def test_samples_hold_the_evaluations_and_rollouts_the_training_samples(fabricated, tmp_path):
    home, ids = fabricated
    with Store(home / "store.sqlite") as store:
        _, samples = export.export_run(store, ids["runs"]["ppo"], "samples", tmp_path / "s.parquet")
        _, rollouts = export.export_run(store, ids["runs"]["ppo"], "rollouts", tmp_path / "r.parquet")
        steps = store.samples(run_id=ids["runs"]["ppo"], kind="rollout")["step"].unique()
    samples, rollouts = pd.read_parquet(samples), pd.read_parquet(rollouts)
    assert set(samples["kind"]) == {"eval"} and set(rollouts["kind"]) == {"rollout"}
    assert (samples["sample_idx"] == -1).any()  # the greedy solutions
    assert samples["checkpoint_id"].notna().all() and rollouts["checkpoint_id"].isna().all()
    assert sorted(rollouts["step"].unique()) == sorted(steps)


def test_samples_include_the_deep_evaluation_under_its_own_kind(workspace, tmp_path):
    with Store() as store:
        run_id = plain_run(store)
        store.add_samples([sample(run_id, "a", 0), {**sample(run_id, "b", 0), "kind": "eval_deep"},
                           {**sample(run_id, "c", 0), "kind": "rollout", "split": "train"}])
        _, out = export.export_run(store, run_id, "samples", tmp_path / "s.parquet")
    df = pd.read_parquet(out)
    assert df[["kind", "completion"]].values.tolist() == [["eval", "a"], ["eval_deep", "b"]]


def test_curves_are_the_pass_at_k_pages_table_for_each_evaluated_checkpoint(fabricated, tmp_path):
    from engine import dashboard

    home, ids = fabricated
    run_id = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as store:
        _, out = export.export_run(store, run_id, "curves", tmp_path / "c.parquet")
        page = dashboard.pass_at_k(store, ids["checkpoints"][run_id], rerank=True)
    curves = pd.read_parquet(out)
    assert set(curves["checkpoint_id"]) == set(ids["checkpoints"][run_id])
    assert set(curves["metric"]) == {"pass", "maj", "rerank"}
    assert (curves["lo"] <= curves["value"] + 1e-12).all() and (curves["value"] <= curves["hi"] + 1e-12).all()
    mine = curves.set_index(["checkpoint_id", "metric", "k"])["value"].sort_index()
    theirs = page.set_index(["checkpoint_id", "metric", "k"])["value"].sort_index()
    assert np.allclose(mine.to_numpy(), theirs.to_numpy()) and list(mine.index) == list(theirs.index)


def test_checkpoints_flatten_their_metrics_into_columns(fabricated, tmp_path):
    home, ids = fabricated
    run_id = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as store:
        _, out = export.export_run(store, run_id, "checkpoints", tmp_path / "c.jsonl")
        stored = store.checkpoints(run_id)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["checkpoint_id"] for r in rows] == stored["id"].tolist()
    for row, metrics in zip(rows, stored["metrics"]):
        assert {k: row[k] for k in metrics} == metrics


def test_metrics_are_the_runs_logged_values_in_long_form(fabricated, tmp_path):
    home, ids = fabricated
    run_id = ids["runs"]["ppo"]
    with Store(home / "store.sqlite") as store:
        _, out = export.export_run(store, run_id, "metrics", tmp_path / "m.csv")
        stored = store.metrics(run_id)
    df = pd.read_csv(out)
    assert df[["step", "name"]].values.tolist() == stored[["step", "name"]].values.tolist()
    assert df["value"].tolist() == stored["value"].tolist()  # exact: csv keeps every digit
    assert df["wall_time"].tolist() == stored["wall_time"].tolist()


# -- values round-trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_awkward_texts_and_missing_values_round_trip_exactly(workspace, tmp_path, fmt):
    with Store() as store:
        run_id = plain_run(store)
        checkpoint_id = store.add_checkpoint(run_id, 0, tmp_path / "nowhere")
        store.add_samples([sample(run_id, text, i, checkpoint_id=checkpoint_id, answer=text or None,
                                  correct=[1, 0, None][i % 3], reward=[1.0, -0.123456789012345, None][i % 3],
                                  logprob=-1 / 3 - i, n_tokens=None if i == 2 else 40 + i)
                           for i, text in enumerate(AWKWARD)])
        _, out = export.export_run(store, run_id, "samples", tmp_path / f"s.{fmt}")
        stored = store.samples(run_id=run_id).sort_values("sample_idx").reset_index(drop=True)
    df = read(out, fmt).sort_values("sample_idx").reset_index(drop=True)
    texts = df["completion"].fillna("") if fmt == "csv" else df["completion"]  # csv: "" and missing alike
    assert texts.tolist() == stored["text"].tolist() == AWKWARD
    assert [None if pd.isna(a) else a for a in df["answer"]] == [a or None for a in AWKWARD]
    assert [None if pd.isna(c) else bool(c) for c in df["correct"]] == [[True, False, None][i % 3] for i in range(len(AWKWARD))]
    assert pd.isna(df.at[2, "reward"]) and pd.isna(df.at[2, "n_tokens"]) and df.at[3, "n_tokens"] == 43
    assert df["logprob"].tolist() == stored["logprob"].tolist()  # every digit
    assert df.at[1, "reward"] == -0.123456789012345
    assert df["checkpoint_id"].tolist() == [checkpoint_id] * len(AWKWARD)


def test_jsonl_is_utf8_one_object_a_line_with_non_ascii_kept(workspace, tmp_path):
    with Store() as store:
        run_id = plain_run(store)
        store.add_samples([sample(run_id, text, i) for i, text in enumerate(AWKWARD)])
        rows, out = export.export_run(store, run_id, "samples", tmp_path / "s.jsonl")
    raw = out.read_bytes()
    assert "naïve café".encode() in raw and b"\\u00ef" not in raw
    lines = raw.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == rows == len(AWKWARD)
    assert {json.loads(line)["completion"] for line in lines[:-1]} == set(AWKWARD)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=40), min_size=1, max_size=5))
def test_any_text_round_trips_through_jsonl_and_csv(texts):
    table = pd.DataFrame({"problem_id": [f"test-{i}" for i in range(len(texts))], "completion": texts})
    back = pd.read_json(io.BytesIO(export.to_bytes(table, "jsonl")), lines=True, dtype=False)
    assert back["completion"].tolist() == texts
    back = pd.read_csv(io.BytesIO(export.to_bytes(table, "csv")), keep_default_na=False, dtype=str)
    assert back["completion"].tolist() == texts


# -- prompts ------------------------------------------------------------------------------------------


def test_prompt_is_the_runs_own_task_prompt(workspace, tmp_path):
    task = MultiStep()
    problems = task.problems("test", 3)
    with Store() as store:
        run_id = plain_run(store)
        store.add_samples([{**sample(run_id, "1 + 1 = 2\n#### 2", 0), "problem_id": p.id} for p in problems])
        _, out = export.export_run(store, run_id, "samples", tmp_path / "s.parquet")
    df = pd.read_parquet(out).set_index("problem_id")
    assert [df.at[p.id, "prompt"] for p in problems] == [task.prompt(p) for p in problems]
    assert problems[0].question in df.at[problems[0].id, "prompt"]


def test_prompt_follows_the_format_auto_picks_for_the_base(fabricated, tmp_path):
    """The fabricated base has no chat template and no reasonlab.json: auto means few-shot, as the
    run itself would have resolved it."""
    home, ids = fabricated
    task = MultiStep()
    with Store(home / "store.sqlite") as store:
        _, out = export.export_run(store, ids["runs"]["ei"], "samples", tmp_path / "s.parquet")
    df = pd.read_parquet(out).drop_duplicates("problem_id").set_index("problem_id")
    few_shot = Prompter(task, None, "few_shot")
    problems = {p.id: p for p in task.problems("test", 6)}
    assert df["prompt"].to_dict() == {pid: few_shot(problems[pid]) for pid in df.index}


def test_prompt_carries_the_rcrl_token_where_the_run_sampled_after_it(workspace, tmp_path):
    """RCRL: step 0 is evaluated and round 1 sampled before the run conditions on <|good|>; its
    checkpoints record the suffix, and later rollouts and evaluations carry it."""
    good = "<|good|>"
    with Store() as store:
        run_id = plain_run(store, algo="rcrl")
        store.add_checkpoint(run_id, 0, tmp_path / "base")
        for step in (1, 2):
            path = tmp_path / f"step-{step}"
            path.mkdir()
            (path / "reasonlab.json").write_text(json.dumps({"made_by": "reasonlab rcrl", "prompt_format": "plain",
                                                             "prompt_suffix": good}))
            store.add_checkpoint(run_id, step, path)
        rows = [{**sample(run_id, "x", 0), "step": s, "kind": k, "split": "test" if k == "eval" else "train",
                 "problem_id": "test-1" if k == "eval" else "train-1"} for s in (0, 1, 2) for k in ("eval", "rollout")]
        store.add_samples(rows)
        _, samples = export.export_run(store, run_id, "samples", tmp_path / "s.parquet")
        _, rollouts = export.export_run(store, run_id, "rollouts", tmp_path / "r.parquet")
    task = MultiStep()
    base = {"test": task.prompt(task.problems("test", 2)[1]), "train": task.prompt(task.problems("train", 2)[1])}
    evals = pd.read_parquet(samples).set_index("step")["prompt"].to_dict()
    assert evals == {0: base["test"], 1: base["test"] + good, 2: base["test"] + good}
    drawn = pd.read_parquet(rollouts).set_index("step")["prompt"].to_dict()
    assert drawn == {0: base["train"], 1: base["train"], 2: base["train"] + good}


def test_prompt_uses_the_chat_template_of_a_chat_model(workspace, tmp_path):
    base = build_chat_model(tmp_path / "chat", ["Question: Ann has 3 pens. #### 3"])
    task = MultiStep()
    problem = task.problems("test", 1)[0]
    with Store() as store:
        run_id = store.create_run("grpo", {"task": "multistep", "base": str(base), "prompt_format": "auto"})
        store.add_samples([sample(run_id, "3")])
        _, out = export.export_run(store, run_id, "samples", tmp_path / "s.parquet")
    prompt = pd.read_parquet(out)["prompt"].iloc[0]
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert problem.question in prompt


def test_prompt_is_null_when_the_data_file_has_moved(workspace, tmp_path):
    data = write_gsm8k(tmp_path / "gsm8k.jsonl", n=40)
    problem = get_task("gsm8k", data=str(data)).problems("test", 1)[0]
    with Store() as store:
        here = plain_run(store, {"task": "gsm8k", "data": str(data)})
        gone = plain_run(store, {"task": "gsm8k", "data": str(tmp_path / "moved" / "gsm8k.jsonl")})
        for run_id in (here, gone):
            store.add_samples([{**sample(run_id, "x\n#### 3"), "task": "gsm8k", "problem_id": problem.id}])
        _, found = export.export_run(store, here, "samples", tmp_path / "here.parquet")
        _, lost = export.export_run(store, gone, "samples", tmp_path / "gone.parquet")
    assert pd.read_parquet(found)["prompt"].tolist() == [f"Question: {problem.question}\nAnswer:\n"]
    lost = pd.read_parquet(lost)
    assert lost["prompt"].isna().all() and lost["completion"].tolist() == ["x\n#### 3"]


def test_prompt_is_null_when_auto_cannot_be_resolved_because_the_base_is_gone(workspace, tmp_path):
    with Store() as store:
        run_id = plain_run(store, {"prompt_format": "auto", "base": str(tmp_path / "deleted-base")})
        store.add_samples([sample(run_id, "x")])
        _, out = export.export_run(store, run_id, "samples", tmp_path / "s.parquet")
    assert pd.read_parquet(out)["prompt"].isna().all()


def test_an_imported_run_has_no_prompts_since_another_tool_made_them(workspace, tmp_path):
    with Store() as store:
        run_id = store.create_run("import", {"task": "multistep", "source": str(tmp_path / "lm-eval.jsonl")},
                                  status="finished")
        store.add_samples([sample(run_id, "3 + 4 = 7\n#### 7")])
        _, out = export.export_run(store, run_id, "samples", tmp_path / "s.parquet")
    df = pd.read_parquet(out)
    assert df["prompt"].isna().all() and df["completion"].tolist() == ["3 + 4 = 7\n#### 7"]


@pytest.mark.slow
def test_prompts_are_the_ones_a_real_rcrl_run_sampled_from(workspace, tmp_path, monkeypatch):
    """Two RCRL rounds from the shipped base: every evaluation's and rollout's exported prompt is
    the text the run handed its sampler (<|good|> after the prompt from round 2 and checkpoint 1 on)."""
    from engine.algorithms import context
    from engine.assets import shipped_base
    from engine.evaluation import evaluate as evaluation

    sampled, current = {}, {}  # (kind, step, problem_id) -> prompt; the evaluation in progress
    evaluate, log_rollouts, with_greedy = (context.RunContext.evaluate, context.RunContext.log_rollouts,
                                           evaluation.sample_with_greedy)

    def evaluate_at(ctx, at, *args, deep=False):
        current.update(kind="eval_deep" if deep else "eval", step=at)
        return evaluate(ctx, at, *args, deep=deep)

    def record_eval(sampler, prompts, **kw):  # one prompt per problem, in the evaluation's problem order
        current["prompts"] = prompts
        return with_greedy(sampler, prompts, **kw)

    def record_rollouts(ctx, at, rollouts):
        sampled.update({("rollout", at, r.problem.id): r.prompt_text for r in rollouts})
        return log_rollouts(ctx, at, rollouts)

    monkeypatch.setattr(context.RunContext, "evaluate", evaluate_at)
    monkeypatch.setattr(context.RunContext, "log_rollouts", record_rollouts)
    monkeypatch.setattr(evaluation, "sample_with_greedy", record_eval)
    original = context.evaluate

    def record_evaluation(sampler, cfg, orm=None):
        metrics, rows = original(sampler, cfg, orm)
        ids = list(dict.fromkeys(r["problem_id"] for r in rows))
        sampled.update({(current["kind"], current["step"], pid): p for pid, p in zip(ids, current["prompts"])})
        return metrics, rows

    monkeypatch.setattr(context, "evaluate", record_evaluation)
    sets = ["max_new_tokens=24", "eval_limit=3", "eval_k=2", "train_problems=64", "sample_batch_size=64", "rounds=2",
            "k=3", "problems_per_round=4", "sft_max_steps=3", "batch_size=4"]
    assert main(["train", "--algo", "rcrl", "--base", str(shipped_base()), "--quiet",
                 *[x for s in sets for x in ("--set", s)]]) == 0
    with Store() as store:
        run_id = int(store.runs()["id"].max())
        parts = [pd.read_parquet(export.export_run(store, run_id, what, tmp_path / f"{what}.parquet")[1])
                 for what in ("samples", "rollouts")]
    exported = {(k, s, p): prompt for part in parts
                for k, s, p, prompt in part[["kind", "step", "problem_id", "prompt"]].itertuples(index=False)}
    assert exported == sampled
    assert {(k, s, p.endswith("<|good|>")) for (k, s, _), p in exported.items()} == {
        ("eval", 0, False), ("eval", 1, True), ("eval", 2, True), ("rollout", 1, False), ("rollout", 2, True)}


# -- writing safely -----------------------------------------------------------------------------------


def test_export_never_overwrites_a_file_unless_told(fabricated, tmp_path):
    home, ids = fabricated
    out = tmp_path / "mine.csv"
    out.write_text("my own notes")
    with Store(home / "store.sqlite") as store:
        with pytest.raises(ReasonlabError, match=f"{out} exists already; pass --force"):
            export.export_run(store, ids["runs"]["ei"], "metrics", out)
        assert out.read_text() == "my own notes"
        rows, _ = export.export_run(store, ids["runs"]["ei"], "metrics", out, force=True)
    assert len(pd.read_csv(out)) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv"]  # no temporary left behind


def test_format_comes_from_the_extension_unless_given(fabricated, tmp_path):
    home, ids = fabricated
    with Store(home / "store.sqlite") as store:
        export.export_run(store, ids["runs"]["ei"], "metrics", tmp_path / "m.jsonl")
        export.export_run(store, ids["runs"]["ei"], "metrics", tmp_path / "m.data", fmt="parquet")
    assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])["run_id"] == ids["runs"]["ei"]
    assert (tmp_path / "m.data").read_bytes()[:4] == b"PAR1"


def test_cli_export_prints_what_it_wrote(fabricated, tmp_path, monkeypatch, capsys):
    home, ids = fabricated
    monkeypatch.setenv("REASONLAB_HOME", str(home))
    out = tmp_path / "rollouts.parquet"
    assert main(["export", str(ids["runs"]["ei"]), "--what", "rollouts", "--out", str(out)]) == 0
    n = len(pd.read_parquet(out))
    assert capsys.readouterr().out == f"wrote {n:,} rows (rollouts of run {ids['runs']['ei']}) to {out}\n"
    assert main(["export", str(ids["runs"]["ei"]), "--out", str(tmp_path / "samples.csv")]) == 0  # samples by default
    assert set(pd.read_csv(tmp_path / "samples.csv")["kind"]) == {"eval"}


@pytest.mark.parametrize("args, message", [
    (["99", "--out", "{tmp}/x.parquet"], "no run 99 in this workspace"),
    (["{run}", "--what", "everything", "--out", "{tmp}/x.parquet"],
     "unknown export 'everything'; choose one of samples, rollouts, metrics, curves, checkpoints"),
    (["{run}", "--format", "xlsx", "--out", "{tmp}/x.xlsx"], "unknown format 'xlsx'; choose one of parquet, csv, jsonl"),
    (["{run}", "--out", "{tmp}/x.txt"], "cannot tell the format of {tmp}/x.txt from its extension .txt"),
    (["{run}", "--out", "{tmp}/missing/x.csv"], "cannot write {tmp}/missing/x.csv: directory {tmp}/missing does not exist"),
    (["{run}", "--out", "{tmp}"], "--out {tmp} is a directory"),
    (["{run}", "--out", "/proc/reasonlab-export.csv"], "cannot write /proc/reasonlab-export.csv"),
])
def test_cli_export_errors_are_one_line_naming_the_problem(fabricated, tmp_path, monkeypatch, capsys, args, message):
    home, ids = fabricated
    monkeypatch.setenv("REASONLAB_HOME", str(home))
    fill = {"tmp": str(tmp_path), "run": str(ids["runs"]["ei"])}
    assert main(["export", *(a.format(**fill) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("reasonlab: error: " + message.format(**fill)) and err.count("\n") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


# -- bounded memory -----------------------------------------------------------------------------------


def test_samples_stream_in_chunks_of_the_schema(fabricated):
    home, ids = fabricated
    with Store(home / "store.sqlite") as store:
        parts = list(export.tables(store, ids["runs"]["ei"], "samples", chunk=7))
        total = len(store.samples(run_id=ids["runs"]["ei"]).query("kind == 'eval'"))
    assert max(p.num_rows for p in parts) == 7 and sum(p.num_rows for p in parts) == total
    assert all(p.schema == export.SAMPLE_SCHEMA for p in parts)


def test_a_run_without_rollouts_exports_an_empty_file_with_its_columns(workspace, tmp_path):
    with Store() as store:
        run_id = plain_run(store)
        rows, out = export.export_run(store, run_id, "rollouts", tmp_path / "r.parquet")
    assert rows == 0 and list(pd.read_parquet(out).columns) == SAMPLE_COLUMNS


# -- dashboard ----------------------------------------------------------------------------------------


def test_to_bytes_writes_a_pages_table_in_every_format():
    table = pd.DataFrame({"problem_id": ["test-1", "test-2"], "solve_rate": [0.5, None], "solved": [True, False],
                          "question": ['a "quoted", text', "ünïcode\nline"]})
    assert pd.read_parquet(io.BytesIO(export.to_bytes(table, "parquet"))).equals(table)
    assert pd.read_csv(io.BytesIO(export.to_bytes(table, "csv"))).equals(table)
    assert pd.read_json(io.BytesIO(export.to_bytes(table, "jsonl")), lines=True).equals(table)


def test_run_bytes_is_the_file_the_cli_writes(fabricated, tmp_path):
    home, ids = fabricated
    with Store(home / "store.sqlite") as store:
        _, out = export.export_run(store, ids["runs"]["ei"], "rollouts", tmp_path / "r.jsonl")
        assert export.run_bytes(store, ids["runs"]["ei"], "rollouts", "jsonl") == out.read_bytes()


def download_labels(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


@pytest.fixture
def store(workspace):
    return fabricate_store(workspace, problems=6, k=8, ei_rounds=2, ppo_checkpoints=2, rollout_problems=4)


def test_every_analysis_page_offers_its_tables_for_download(store):
    run = store["runs"]["ppo"]  # the newest run with checkpoints: the one Solutions opens on
    expected = {
        "solutions": ["Download these samples (CSV)", f"Run {run}: all evaluation samples",
                      f"Run {run}: all training rollouts"],
        "pass_at_k": ["Download the curves with their bands (CSV)", "Download the training curves (CSV)"],
        "runs": ["Download this table (CSV)", "Download the metrics (CSV)", "Download the checkpoints (CSV)"],
        "compare": ["Download the per-problem table (CSV)"],
        "diversity": ["Download this table (CSV)", "Download the means over training (CSV)"],
    }
    for page, labels in expected.items():
        at = open_page(page)
        assert not at.exception, page
        assert set(labels) <= set(download_labels(at)), page


def test_the_whole_run_download_is_built_on_click_in_a_browser(tmp_path):
    """Streamlit runs a deferred `data` callable only when a browser asks for the file: the
    download is the run's export, and the per-problem table its CSV."""
    from tests.helpers import CHROMIUM, CHROMIUM_ARGS, MINUTE, require, serve, sync_playwright

    require("Debian's chromium", Path(CHROMIUM).is_file(), "apt-get install chromium (`make test` does it as root)")
    require("playwright", sync_playwright is not None, "pip install -e '.[dev]'")
    home = tmp_path / "home"
    ids = fabricate_store(home, problems=3, k=2, ei_rounds=1, ppo_checkpoints=1, rollout_problems=2)
    run_id = ids["runs"]["ei"]
    with Store(home / "store.sqlite") as store:
        _, expected = export.export_run(store, run_id, "rollouts", tmp_path / "rollouts.parquet")
        shown = store.samples(run_id=run_id, kind="eval", step=1, problem_id="test-0")
    with serve(home, "export.log") as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1800}).new_page()
            page.set_default_timeout(MINUTE)
            page.goto(f"{url}/solutions?run={run_id}&kind=eval&step=1&problem=test-0")
            page.get_by_role("tab", name="All samples").click(timeout=2 * MINUTE)
            with page.expect_download() as table:
                page.get_by_role("button", name="Download these samples (CSV)").click()
            page.get_by_text("Download the whole run").click()
            with page.expect_download() as whole:
                page.get_by_role("button", name=f"Run {run_id}: all training rollouts").click()
            assert whole.value.suggested_filename == f"run-{run_id}-rollouts.parquet"
            assert pd.read_parquet(whole.value.path()).equals(pd.read_parquet(expected))
            csv = pd.read_csv(table.value.path())
            assert sorted(csv["text"]) == sorted(shown["text"])
        finally:
            browser.close()
