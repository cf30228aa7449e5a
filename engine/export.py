"""A run's tables as files: `reasonlab export` and the dashboard's download buttons.

    samples      its evaluation samples (kinds eval and eval_deep; the `kind` column says which)
    rollouts     its training rollouts (kind rollout)
    metrics      what it logged, long form: run_id, step, name, value, samples_seen, wall_time
    curves       pass@k / maj@k / rerank@k (by log-probability) of each evaluated checkpoint, long
                 form with 95% bootstrap bands (engine.dashboard.pass_at_k)
    checkpoints  one row per checkpoint, its metrics JSON flattened into columns

Sample columns follow the field's names (run_id, kind, step, checkpoint_id, task, split, problem_id,
sample_idx (-1: the greedy solution), prompt, completion, answer, correct, reward, logprob,
n_tokens, sample_id), so a file loads as it is with pandas.read_parquet / read_csv /
read_json(lines=True) and datasets.load_dataset("parquet", data_files=...). The store keeps no
prompts: `prompt` is rebuilt from the run's own task and prompt format (RunPrompts), and is null
where it cannot be (the task's data file has moved, the run was imported from another tool).

Samples and rollouts (a run may hold millions) stream from one read transaction, CHUNK rows at a
time, into pyarrow's ParquetWriter / CSVWriter or JSON lines, so memory stays bounded by a chunk;
the other tables are small and built whole. Files are written to a temporary sibling and then
linked into place: never over an existing file unless `force`, never half-written.

Reading back: csv writes an empty text and a missing one alike (an empty field), and pandas reads
texts such as "NA" as missing unless given keep_default_na=False, na_values=[""]. pandas.read_json
turns numeric-looking answers into numbers and `*_time` columns into dates unless given dtype=False,
and rounds the last digit of floats unless given precise_float=True (the file holds every digit).
"""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa

from engine.errors import ReasonlabError
from engine.safe_write import place
from engine.store import Store

WHATS = ("samples", "rollouts", "metrics", "curves", "checkpoints", "notes")
FORMATS = ("parquet", "csv", "jsonl")
EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
              ".json": "jsonl"}
MIME = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv", "jsonl": "application/jsonl"}
KINDS = {"samples": ("eval", "eval_deep"), "rollouts": ("rollout",)}
IMPORTED = "import"  # the algo of runs engine/imports.py makes from other tools' samples
CHUNK = 10_000  # sample rows per piece: ~10 MB with few-shot prompts; a 500k-sample run peaks ~100 MB above the imports

SAMPLE_SCHEMA = pa.schema([
    ("run_id", pa.int64()), ("kind", pa.string()), ("step", pa.int64()), ("checkpoint_id", pa.int64()),
    ("task", pa.string()), ("split", pa.string()), ("problem_id", pa.string()), ("sample_idx", pa.int64()),
    ("prompt", pa.string()), ("completion", pa.string()), ("answer", pa.string()), ("correct", pa.bool_()),
    ("reward", pa.float64()), ("logprob", pa.float64()), ("n_tokens", pa.int64()), ("sample_id", pa.int64()),
])
# the stored column behind each exported one (prompt is rebuilt, not stored)
STORED = {"completion": "text", "sample_id": "id"}


# -- what to export -----------------------------------------------------------------------------


def tables(store: Store, run_id: int, what: str, chunk: int = CHUNK) -> Iterator[pa.Table]:
    """The export of one run as pyarrow tables (several for samples and rollouts, one otherwise;
    at least one, empty with its columns when the run has no rows of that kind). An unknown run
    or `what` is refused here, before anything is read or written."""
    check_what(what)
    if store.get_run(int(run_id)) is None:
        raise ReasonlabError(f"no run {run_id} in this workspace ({store.path.parent})")
    return _tables(store, int(run_id), what, chunk)


def _tables(store: Store, run_id: int, what: str, chunk: int) -> Iterator[pa.Table]:
    if what in KINDS:
        yield from sample_tables(store, run_id, KINDS[what], chunk)
    elif what == "metrics":
        metrics = store.metrics(run_id)[["run_id", "step", "name", "value", "samples_seen", "wall_time"]]
        yield arrow(metrics.astype({"samples_seen": "Int64"}))
    elif what == "curves":
        yield arrow(curves(store, run_id))
    elif what == "notes":  # written in the run, or on the problems its samples have (engine/notes.py)
        yield arrow(store.notes(run_id=run_id).astype({"sample_id": "Int64", "run_id": "Int64", "step": "Int64",
                                                       "sample_idx": "Int64"}))
    else:
        yield arrow(checkpoints(store, run_id))


def sample_tables(store: Store, run_id: int, kinds: tuple[str, ...], chunk: int = CHUNK) -> Iterator[pa.Table]:
    """A run's samples of some kinds, in SAMPLE_SCHEMA, `chunk` rows at a time, ordered by kind,
    step, problem_id, sample_idx (the order of the index samples_run_kind_step: no sort). One read
    transaction on a connection of its own: a consistent snapshot of a run still training, and
    the shared Store is not held while the file is written."""
    columns = [STORED.get(f.name, f.name) for f in SAMPLE_SCHEMA if f.name != "prompt"]
    sql = (f"SELECT {', '.join(columns)} FROM samples WHERE run_id = ? AND kind IN ({', '.join('?' * len(kinds))})"
           " ORDER BY kind, step, problem_id, sample_idx")
    prompts = RunPrompts(store, run_id)
    conn = sqlite3.connect(store.path, timeout=30)
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("BEGIN")
        cursor = conn.execute(sql, (run_id, *kinds))
        empty = True
        while rows := cursor.fetchmany(chunk):
            empty = False
            yield _sample_table(rows, columns, prompts)
        if empty:
            yield SAMPLE_SCHEMA.empty_table()
    finally:
        conn.close()


def _sample_table(rows: list[tuple], columns: list[str], prompts: RunPrompts) -> pa.Table:
    values = dict(zip(columns, zip(*rows)))
    values["prompt"] = prompts.of(values["kind"], values["step"], values["split"], values["problem_id"])
    arrays = []
    for field in SAMPLE_SCHEMA:
        column = values[STORED.get(field.name, field.name)]
        if field.type == pa.bool_():  # stored 0 / 1 / NULL
            arrays.append(pa.array(column, pa.int64()).cast(pa.bool_()))
        else:
            arrays.append(pa.array(column, field.type))
    return pa.Table.from_arrays(arrays, schema=SAMPLE_SCHEMA)


def curves(store: Store, run_id: int) -> pd.DataFrame:
    """pass@k, maj@k and rerank@k (by log-probability) against k for each of the run's evaluated
    checkpoints, with bootstrap bands: run_id, checkpoint_id, step, metric, k, value, lo, hi,
    problems, label, scorer."""
    from engine import dashboard

    table = dashboard.checkpoints_table(store, run_id)
    evaluated = table.loc[table["evaluated"].astype(bool), "checkpoint_id"].astype(int).tolist()
    curves = dashboard.pass_at_k(store, evaluated, rerank=True) if evaluated else pd.DataFrame()
    columns = ["run_id", "checkpoint_id", "step", "metric", "k", "value", "lo", "hi", "problems", "label", "scorer"]
    if curves.empty:
        return pd.DataFrame({c: pd.Series(dtype="string" if c in ("metric", "label", "scorer") else "float64")
                             for c in columns})
    return curves.assign(run_id=run_id)[columns].astype({"checkpoint_id": int, "step": int, "k": int})


def checkpoints(store: Store, run_id: int) -> pd.DataFrame:
    """One row per checkpoint of the run: checkpoint_id, run_id, step, path, created_at, evaluated,
    then its metrics (maj@1, pass@k, ..., deep/...) as columns (a name taken already gets a
    `metrics.` prefix)."""
    rows = store.checkpoints(run_id)
    fixed = pd.DataFrame({"checkpoint_id": rows["id"].astype(int), "run_id": rows["run_id"].astype(int),
                          "step": rows["step"].astype(int), "path": rows["path"].astype(str),
                          "created_at": rows["created_at"].astype(float),
                          "evaluated": rows["metrics"].map(bool).astype(bool)})
    metrics = pd.json_normalize([m if isinstance(m, dict) else {} for m in rows["metrics"]])
    metrics = metrics.rename(columns=lambda c: f"metrics.{c}" if c in fixed.columns else c)
    return pd.concat([fixed.reset_index(drop=True), metrics], axis=1)


# -- prompts --------------------------------------------------------------------------------------


class RunPrompts:
    """The prompt each of a run's samples was drawn from, rebuilt the way the run built it: the
    run's own task (from its stored config, data files included), its prompt format (plain, chat
    or few_shot: the one its checkpoints' reasonlab.json record, else its config's resolved against
    its base as RunContext.use_tokenizer does) and RCRL's return token after the prompt (the
    checkpoints' prompt_suffix: on evaluations of the run's own checkpoints, and on rollouts drawn
    after its first checkpoint; never at step 0, which is evaluated before the run sets it).

    None where it cannot be rebuilt: the task's data file has moved or changed, the problem id is
    not one the task can regenerate, a chat format's tokenizer is gone, or the run was imported
    (engine/imports.py: another tool made its prompts)."""

    def __init__(self, store: Store, run_id: int):
        from engine.dashboard.samples import _task_spec

        self.task_name, self.options = _task_spec(store, run_id)
        run = store.get_run(run_id) or {}
        self.config, self.algo = run.get("config") or {}, run.get("algo")
        ckpts = store.checkpoints(run_id)
        self.paths = dict(zip(ckpts["step"].astype(int), ckpts["path"]))
        self.metas = {s: m for s, m in ((s, _meta(p)) for s, p in self.paths.items() if s > 0) if m.get("made_by")}
        self._prompter = None
        self._problems: dict[tuple[str, str], object] = {}  # (split, problem_id) -> Problem or None
        self._cache: dict[tuple, str | None] = {}  # (split, problem_id, suffix) -> prompt
        self._suffixes: dict[tuple[str, int], str] = {}

    def of(self, kinds, steps, splits, problem_ids) -> list[str | None]:
        """One prompt (or None) per sample row, given its kind, step, split and problem_id."""
        keys = [(s, p, self.suffix(k, int(t))) for k, t, s, p in zip(kinds, steps, splits, problem_ids)]
        missing = {}
        for split, pid, _ in keys:
            if (split, pid) not in self._problems:
                missing.setdefault(split, set()).add(pid)
        for split, pids in missing.items():
            self._find(split, sorted(pids))
        return [self._prompt(*key) for key in keys]

    def _find(self, split: str, pids: list[str]) -> None:
        from engine.dashboard.samples import problems_by_id

        found = problems_by_id(self.task_name, split, pids, self.options)
        self._problems.update({(split, p): found.get(p) for p in pids})

    def _prompt(self, split: str, pid: str, suffix: str | None) -> str | None:
        key = (split, pid, suffix)
        if key not in self._cache:
            problem, prompter = self._problems.get((split, pid)), self.prompter()
            try:
                self._cache[key] = None if problem is None or prompter is None else prompter(problem) + suffix
            except (ReasonlabError, ValueError):  # e.g. few-shot examples from a train split the file lacks
                self._cache[key] = None
        return self._cache[key]

    def suffix(self, kind: str, step: int) -> str:
        """What followed the prompt: RCRL's good-return token after its first checkpoint, else ""."""
        if (kind, step) not in self._suffixes:
            if kind == "rollout":  # drawn by the policy of the run's newest checkpoint before this step
                sampled_by = max((s for s in self.paths if s < step), default=0)
            else:
                sampled_by = step
            self._suffixes[kind, step] = "" if sampled_by == 0 else self.run_suffix()
        return self._suffixes[kind, step]

    def run_suffix(self) -> str:
        if self.metas:
            return next(iter(self.metas.values())).get("prompt_suffix", "")
        if self.algo == "rcrl":  # its checkpoints are gone: RCRL conditions on its good-return token
            from engine.algorithms.rcrl import GOOD

            return GOOD
        return ""

    def prompter(self):
        """The run's Prompter, or None when its task or format cannot be rebuilt."""
        if self._prompter is None:
            self._prompter = self._make_prompter() or False
        return self._prompter or None

    def _make_prompter(self):
        from engine.model.prompts import PROMPT_FORMATS, Prompter, resolve_format
        from engine.tasks import get_task

        if self.algo == IMPORTED:
            return None
        try:
            task = get_task(self.task_name, **dict(self.options))
        except ReasonlabError:  # a data file since moved, a task since renamed
            return None
        fmt = next((m["prompt_format"] for m in self.metas.values() if m.get("prompt_format") in PROMPT_FORMATS[1:]),
                   None)
        base = self.config.get("base") or self.paths.get(0)
        requested, base_meta = self.config.get("prompt_format", "auto"), _meta(base) if base else {}
        if fmt is None:  # no checkpoint of the run says: as the run resolved it (RunContext.use_tokenizer)
            fmt = requested if requested != "auto" else base_meta.get("prompt_format")
            fmt = fmt if fmt in PROMPT_FORMATS[1:] else None
        tokenizer = None
        if fmt in (None, "chat"):  # auto asks the tokenizer whether it has a chat template
            tokenizer = self._tokenizer([*(self.paths[s] for s in self.metas), base])
            if tokenizer is None:  # the base is gone: nothing says which format auto picked
                return None
            if fmt == "chat" and not getattr(tokenizer, "chat_template", None):
                return None
        try:
            return Prompter(task, tokenizer, fmt or resolve_format("auto", tokenizer, base_meta))
        except ReasonlabError:
            return None

    def _tokenizer(self, paths):
        from engine.model.checkpoint import load_tokenizer

        for path in paths:
            try:
                return load_tokenizer(path, trust_remote_code=bool(self.config.get("trust_remote_code")))
            except (ReasonlabError, OSError, TypeError, ValueError):
                continue
        return None


def _meta(path) -> dict:
    from engine.model.checkpoint import read_meta

    try:
        return read_meta(path)
    except (ReasonlabError, OSError, TypeError):
        return {}


# -- writing --------------------------------------------------------------------------------------


def check_what(what: str) -> str:
    if what not in WHATS:
        raise ReasonlabError(f"unknown export {what!r}; choose one of {', '.join(WHATS)}")
    return what


def file_format(fmt: str | None, out: Path | str | None = None) -> str:
    """The format asked for, else the one out's extension names."""
    if fmt is None:
        suffix = Path(out).suffix.lower() if out is not None else ""
        if suffix not in EXTENSIONS:
            raise ReasonlabError(f"cannot tell the format of {out} from its extension {suffix or '(none)'}; "
                                 f"give --format ({', '.join(FORMATS)}) or end the name in .parquet, .csv or .jsonl")
        return EXTENSIONS[suffix]
    if fmt not in FORMATS:
        raise ReasonlabError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def write(parts: Iterable[pa.Table], fmt: str, sink: BinaryIO) -> int:
    """Write tables of one schema to a binary file as one file of the format; returns the rows."""
    from pyarrow import csv, parquet

    rows, writer = 0, None
    try:
        for table in parts:
            if fmt == "parquet":
                writer = writer or parquet.ParquetWriter(sink, table.schema)
                writer.write_table(table)
            elif fmt == "csv":
                table = _flat(table)
                writer = writer or csv.CSVWriter(sink, table.schema)
                writer.write_table(table)
            else:
                for row in table.to_pylist():
                    sink.write(json.dumps(_finite(row), ensure_ascii=False, default=str).encode() + b"\n")
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def export_run(store: Store, run_id: int, what: str, out: str | Path, fmt: str | None = None,
               force: bool = False) -> tuple[int, Path]:
    """Write one run's `what` to `out` (format: `fmt`, else out's extension); (rows, absolute path).
    Refuses an existing `out` unless `force`; writes a temporary sibling, then links it in."""
    check_what(what)
    out = Path(out).expanduser().resolve()
    if out.is_dir():
        raise ReasonlabError(f"--out {out} is a directory; give a file name (e.g. {out / 'samples.parquet'})")
    fmt = file_format(fmt, out)
    parts = tables(store, run_id, what)
    _check_out(out, force)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            rows = write(parts, fmt, f)
        place(tmp, out, force)
    except OSError as e:
        raise ReasonlabError(f"cannot write {out}: {e.strerror or e}") from None
    except sqlite3.Error as e:
        raise ReasonlabError(f"cannot read run {run_id} from the store {store.path}: {e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return rows, out


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise ReasonlabError(f"{out} exists already; pass --force to replace it")
    if not out.parent.is_dir():
        raise ReasonlabError(f"cannot write {out}: directory {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise ReasonlabError(f"cannot write {out}: directory {out.parent} is not writable")


# -- bytes for the dashboard ------------------------------------------------------------------------


def file_name(run_id: int | None, what: str, fmt: str) -> str:
    return f"run-{run_id}-{what}.{fmt}" if run_id is not None else f"{what}.{fmt}"


def run_bytes(store: Store, run_id: int, what: str, fmt: str) -> bytes:
    """The whole `reasonlab export` file of one run, in memory (a download button's data)."""
    sink = io.BytesIO()
    write(tables(store, run_id, check_what(what)), file_format(fmt), sink)
    return sink.getvalue()


def to_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """A table a page shows, as a file of the format (a named index becomes a column)."""
    sink = io.BytesIO()
    write([arrow(df)], file_format(fmt), sink)
    return sink.getvalue()


def arrow(df: pd.DataFrame) -> pa.Table:
    """A DataFrame as a pyarrow table: a named index and MultiIndex columns flattened, NaN as null,
    and an object column of mixed types (which arrow refuses) as its text."""
    if isinstance(df.columns, pd.MultiIndex):
        df = df.set_axis(["@".join(str(p) for p in c) for c in df.columns], axis=1)
    if any(name is not None for name in df.index.names):
        df = df.reset_index()
    columns = {}
    for name in df.columns:
        try:
            columns[str(name)] = pa.array(df[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[str(name)] = pa.array([None if _missing(v) else str(v) for v in df[name]], pa.string())
    return pa.table(columns) if columns else pa.table({})


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _flat(table: pa.Table) -> pa.Table:
    """CSV holds scalars only: a list or struct column becomes its JSON text."""
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [None if v is None else json.dumps(v, ensure_ascii=False, default=str)
                    for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    return table


def _finite(row: dict) -> dict:
    """JSON has no NaN or infinity: null instead."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
