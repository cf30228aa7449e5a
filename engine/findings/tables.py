"""F5's results table as a person copies it: Markdown, LaTeX and CSV, each value with its 95% interval."""

from __future__ import annotations

import math

import pandas as pd

METRICS = ("maj@1", "maj@K", "rerank@K", "pass@K")


def _cell(row, metric: str) -> str:
    value = row[metric]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f} [{row[f'{metric} lo']:.3f}, {row[f'{metric} hi']:.3f}]"


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table; run labels are the suite's own (no user text), | is escaped anyway."""
    lines = ["| run | K | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for _, row in table.iterrows():
        cells = [str(row["run"]).replace("|", "\\|"), str(int(row["K"]))] + [_cell(row, m) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _latex_escape(s: str) -> str:
    out = str(s).replace("\\", "\0")  # backslashes last, so the braces they bring are not escaped
    for a, b in (("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                 ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        out = out.replace(a, b)
    return out.replace("\0", r"\textbackslash{}")


def latex(table: pd.DataFrame) -> str:
    """A booktabs tabular: value and interval per cell."""
    head = " & ".join(["run", "$K$", *METRICS])
    lines = [r"\begin{tabular}{l r " + "c " * len(METRICS) + "}", r"\toprule", head + r" \\", r"\midrule"]
    for _, row in table.iterrows():
        cells = [_latex_escape(row["run"]), str(int(row["K"]))] + [_cell(row, m).replace("–", "--") for m in METRICS]
        lines.append(" & ".join(cells) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def csv(table: pd.DataFrame) -> str:
    return table.drop(columns=[c for c in ("key",) if c in table.columns]).to_csv(index=False)
