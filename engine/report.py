"""A static HTML report of runs, to share: one self-contained file (plotly.js embedded once, no
server, no network) with each run's config, its learning and pass@k curves, the findings' figures
when the runs are the findings suite's, and a few problems' solution trees and samples.

    report_html(store, run_ids, problems=None) -> str    the page (the Runs page's download)
    write_report(store, run_ids, out, problems, replace) -> Path   the page, written atomically

The figures are the dashboard's own (engine/dashboard queries -> engine/viz figures), so the report
shows what the pages show. Text is text: every model or user string written into the page goes
through html.escape here; strings drawn by plotly were escaped by engine/viz (plot_text.text), and
plotly's JSON writes '<' as \\u003c, so no data string can close the figures' scripts.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from engine import __version__, dashboard, viz
from engine.errors import ReasonlabError
from engine.safe_write import place
from engine.store import Store

DEFAULT_PROBLEMS = 3  # problems per run when none are chosen
MAX_SAMPLES = 16  # samples shown per problem (the greedy one first): keeps a K=96 report small
TEXT_CHARS = 4000  # a sample's text beyond this is cut (a runaway generation)
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0} th{white-space:nowrap}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;margin:0}
section{border-top:2px solid #888;margin-top:2em} .note{color:#666} .figure{margin:1em 0}
"""


def esc(value) -> str:
    """Any value as HTML text (None: empty)."""
    return html.escape("" if value is None else str(value))


class _Page:
    """The page's parts in order; figures become divs drawn by the one embedded plotly.js."""

    def __init__(self):
        self.parts: list[str] = []
        self.figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig) -> None:
        self.figures += 1
        height = f"{fig.layout.height or 450}px"  # the div's own: its parent has no height to share
        self.add('<div class="figure">' + pio.to_html(fig, full_html=False, include_plotlyjs=False,
                                                      div_id=f"figure-{self.figures}", default_height=height,
                                                      config={"displaylogo": False}) + "</div>")


def _runs(store: Store, run_ids: Sequence[int]) -> list[dict]:
    """The runs, each once, in the order given; unknown ids are one error naming them."""
    ids = list(dict.fromkeys(int(r) for r in run_ids))
    if not ids:
        raise ReasonlabError("report: give one or more run ids")
    runs = {i: store.get_run(i) for i in ids}
    if missing := [str(i) for i, run in runs.items() if run is None]:
        known = ", ".join(str(i) for i in sorted(store.runs()["id"])) or "none"
        raise ReasonlabError(f"report: no run {', '.join(missing)} in this workspace (its runs: {known})")
    return list(runs.values())


def _view(store: Store, run_id: int) -> tuple[str, int] | None:
    """(kind, step) whose problems the report shows: the last evaluated checkpoint, else the last
    training step with rollouts; None when the run has no samples."""
    for kind in ("eval", "rollout"):
        steps = dashboard.sample_steps(store, run_id, kind)
        if steps:
            return kind, steps[-1]
    return None


def chosen_problems(table: pd.DataFrame, wanted: Sequence[str] | None) -> list[str]:
    """The problems to show from a view's `problem_table`: the wanted ones it has, else the
    DEFAULT_PROBLEMS with the most distinct final answers (where the samples disagree most, so
    the tree branches most), in the table's order among equals."""
    if wanted:
        return [p for p in wanted if p in set(table["problem_id"])]
    ranked = table.assign(_order=range(len(table))).sort_values(["distinct_answers", "_order"],
                                                                 ascending=[False, True])
    return ranked["problem_id"].head(DEFAULT_PROBLEMS).tolist()


def report_html(store: Store, run_ids: Sequence[int], problems: Sequence[str] | None = None) -> str:
    """The report of some runs as one HTML page. `problems`: problem ids to show in each run (at
    its last evaluated checkpoint, else its last training step); default: chosen_problems'.
    A problem that no run has is an error naming it."""
    runs = _runs(store, run_ids)
    views = {r["id"]: _view(store, r["id"]) for r in runs}
    tables = {r: dashboard.problem_table(store, r, *v) for r, v in views.items() if v is not None}
    for p in problems or ():
        if not any(p in set(t["problem_id"]) for t in tables.values()):
            raise ReasonlabError(f"report: problem {p!r} has no samples at the last checkpoint of run "
                                 f"{', '.join(str(r['id']) for r in runs)}")
    page = _Page()
    labels = [dashboard.run_label(r) for r in runs]
    page.add(f"<h1>reasonlab report</h1><p class=note>{esc(len(runs))} run(s): {esc('; '.join(labels))}. "
             f"Written {esc(time.strftime('%Y-%m-%d %H:%M'))} by reasonlab {esc(__version__)} from "
             f"{esc(store.path)}.</p>")
    page.add("<ul>" + "".join(f'<li><a href="#run-{r["id"]}">{esc(label)}</a></li>' for r, label in zip(runs, labels))
             + "</ul>")
    if len(runs) > 1:
        _comparison(page, store, runs)
    _findings(page, store, runs)
    for run in runs:
        _run(page, store, run, views[run["id"]], tables.get(run["id"]), problems)
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>reasonlab report: {esc(', '.join('run ' + str(r['id']) for r in runs))}</title>"
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head>\n<body>\n"
            + "\n".join(page.parts) + "\n</body></html>\n")


def report_bytes(store: Store, run_ids: Sequence[int], problems: Sequence[str] | None = None) -> bytes:
    """report_html as UTF-8 (a download button's data)."""
    return report_html(store, run_ids, problems).encode()


def _comparison(page: _Page, store: Store, runs: list[dict]) -> None:
    """The pass@k page's comparison: each run's last checkpoint against k, and maj@1 of every run
    against samples seen."""
    ids = [r["id"] for r in runs]
    table = dashboard.checkpoints_table(store)
    evaluated = table[table["evaluated"] & table["run_id"].isin(ids)]
    last = evaluated.groupby("run_id")["checkpoint_id"].last().tolist()
    page.add("<section><h2>The runs compared</h2>")
    if len(last) < 2:
        page.add("<p class=note>Fewer than two of these runs have an evaluated checkpoint.</p></section>")
        return
    curves = dashboard.pass_at_k(store, last)
    for metric in ("pass", "maj"):
        page.figure(viz.fig_checkpoint_curves(curves, metric, title=f"{metric}@k of each run's last checkpoint"))
    page.figure(viz.fig_runs_training(dashboard.runs_training_curves(store, ids), "maj@1",
                                      title="maj@1 of each run against samples seen, 95% bootstrap bands"))
    page.add("</section>")


def _findings(page: _Page, store: Store, runs: list[dict]) -> None:
    """The Findings page's card of every finding these runs take part in, when they are runs of
    the findings suite (matched by config at either size, from their own base); nothing else."""
    from engine import findings
    from engine.findings import figures, suite

    ids = {r["id"] for r in runs}
    prefix = suite.RUN_NAME.format(key="")
    bases = {str(r["config"].get("base")) for r in runs
             if str(r["name"] or "").startswith(prefix) and isinstance(r["config"], dict)}
    found = []
    for size in suite.SIZES:
        for base in sorted(bases):
            try:
                matched = suite.match(store, suite.configs(base, size))
                if ids & {m.run_id for m in matched.values()}:
                    found = findings.cards(store, size, base)
            except ReasonlabError:  # the base is gone, or the configs moved on: no cards
                continue
    found = [c for c in found if any(r is not None and r.run_id in ids for r in c.runs.values())]
    if not found:
        return
    page.add("<section><h2>Findings</h2>")
    for c in found:
        page.add(f"<h3>{esc(c.finding.key)} · {esc(c.finding.title)} [{esc(c.verdict.status)}]</h3>"
                 f"<p><strong>Claim.</strong> {esc(c.finding.claim)}</p>"
                 f"<p class=note>Source: {esc(c.finding.source)}</p>")
        page.figure(figures.figure(c))
        page.add(f"<p><strong>Verdict.</strong> {esc(c.verdict.text)}</p>")
    page.add("</section>")


def _rows(pairs) -> str:
    """A two-column table of (name, value), leaving out empty values."""
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in pairs
                               if v is not None and v != "") + "</table>"


def _when(t) -> str:
    return "" if t is None or t != t else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _run(page: _Page, store: Store, run: dict, view, problems_table, wanted) -> None:
    """One run: what it is, its config, the Runs and pass@k pages' figures, its problems."""
    run_id = run["id"]
    page.add(f'<section id="run-{run_id}"><h2>{esc(dashboard.run_label(run))}</h2>')
    page.add(_rows([("run", run_id), ("name", run["name"]), ("algorithm", run["algo"]), ("status", run["status"]),
                    ("step", f"{run['step']} of {run['total'] or '?'}"), ("created", _when(run["created_at"])),
                    ("finished", _when(run["finished_at"])), ("started from", run["parent_checkpoint"]),
                    ("error", run["error"])]))
    page.add("<h3>Config</h3><pre>" + esc(json.dumps(run["config"], indent=2, sort_keys=True, default=str)) + "</pre>")
    page.add("<h3>Curves</h3>")
    metrics = dashboard.run_metrics(store, run_id)
    if metrics.empty:
        page.add("<p class=note>This run logged no metrics.</p>")
    else:
        page.figure(viz.fig_run_curves(metrics, title="Learning curves against samples seen"))
        losses = viz.fig_run_losses(metrics, title="Losses and KL")
        if losses is not None:
            page.figure(losses)
    table = dashboard.checkpoints_table(store, run_id)
    evaluated = table[table["evaluated"]]["checkpoint_id"].tolist()
    if evaluated:
        page.figure(viz.fig_training_curves(dashboard.run_curves(store, run_id),
                                            title="maj@1 (greedy), pass@1, pass@K and maj@K against step"))
        curves = dashboard.pass_at_k(store, evaluated)
        page.figure(viz.fig_checkpoint_curves(curves, "pass", title="pass@k by checkpoint"))
        last = curves[curves["checkpoint_id"] == evaluated[-1]]
        label = table.set_index("checkpoint_id").at[evaluated[-1], "label"]
        page.figure(viz.fig_curves(last, title=f"{label}: every metric, 95% bootstrap bands"))
    else:
        page.add("<p class=note>No evaluated checkpoint: no pass@k curves.</p>")
    if view is not None:
        _problems(page, store, run_id, view, problems_table, wanted)
    page.add("</section>")


def _problems(page: _Page, store: Store, run_id: int, view: tuple[str, int], table: pd.DataFrame, wanted) -> None:
    kind, step = view
    where = f"checkpoint step {step}" if kind == "eval" else f"training step {step} (rollouts)"
    shown = chosen_problems(table, wanted)
    how = ("chosen" if wanted else f"the {DEFAULT_PROBLEMS} with the most distinct final answers")
    page.add(f"<h3>Problems at {esc(where)}: {esc(how)}</h3>")
    if wanted and len(shown) < len(wanted):
        page.add(f"<p class=note>Not sampled here: {esc(', '.join(p for p in wanted if p not in shown))}.</p>")
    rows = table.set_index("problem_id")
    for problem_id in shown:
        p = rows.loc[problem_id]
        info = dashboard.problem_info(store, run_id, p["split"], problem_id)
        samples = dashboard.problem_samples(store, run_id, kind, step, problem_id)
        page.add(f"<h4>{esc(problem_id)}</h4>" + _rows([
            ("question", info.get("question", "")), ("answer", info.get("answer", "?")),
            ("solve rate", f"{p['solve_rate']:.0%}" if p["solve_rate"] == p["solve_rate"] else "-"),
            ("distinct answers", p["distinct_answers"]),
            ("in the dashboard", f"/solutions?run={run_id}&kind={kind}&step={step}&problem={problem_id}")]))
        page.figure(viz.fig_tree(dashboard.tree(samples), title="Solution tree (colour: share ending correct)"))
        page.add(_samples(samples))


def _samples(samples: pd.DataFrame) -> str:
    """The first MAX_SAMPLES samples (greedy first) as a table, each text in a <pre>."""
    head = samples.head(MAX_SAMPLES)
    rows = []
    for s in head.itertuples(index=False):
        text = s.text if len(s.text or "") <= TEXT_CHARS else s.text[:TEXT_CHARS] + "… (cut)"
        correct = "-" if s.correct is None or s.correct != s.correct else ("yes" if s.correct == 1 else "no")
        reward = "-" if s.reward is None or s.reward != s.reward else f"{s.reward:.3g}"
        rows.append(f"<tr><td>{'greedy' if s.sample_idx < 0 else esc(s.sample_idx)}</td><td>{esc(s.answer)}</td>"
                    f"<td>{correct}</td><td>{reward}</td><td><pre>{esc(text)}</pre></td></tr>")
    return (f"<p class=note>{len(head)} of {len(samples)} samples shown.</p><table class=samples><tr><th>sample</th>"
            "<th>answer</th><th>correct</th><th>reward</th><th>text</th></tr>" + "".join(rows) + "</table>")


def write_report(store: Store, run_ids: Sequence[int], out: str | Path, problems: Sequence[str] | None = None,
                 replace: bool = False) -> Path:
    """Write report_html to `out` (resolved to an absolute path) through a temporary file beside it,
    so a reader never sees half a report. An existing `out` is refused unless `replace`."""
    out = Path(out).expanduser().resolve()
    if out.is_dir():
        raise ReasonlabError(f"report: {out} is a directory; give a file name such as {out / 'report.html'}")
    if not out.parent.is_dir():
        raise ReasonlabError(f"report: no directory {out.parent}")
    if out.exists() and not replace:  # before the work; checked again when the file is put in place
        raise ReasonlabError(f"{out} exists already; pass --force to replace it")
    page = report_bytes(store, run_ids, problems)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(page)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a report to share from the others
        place(tmp, out, replace)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
