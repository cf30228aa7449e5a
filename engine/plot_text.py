"""Data strings as plotly draws them literally, and the figure drawn when there is no data.

Plotly reads HTML in every string it draws (<b>, <a href>, <br>...) and decodes entities, so a
data string with & < > as entities shows as written.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

LABEL_CHARS = 120  # drawn labels, ticks and legend entries: a 100k-character answer stays readable
HOVER_CHARS = 2000  # hover boxes


def text(value, limit: int | None = LABEL_CHARS) -> str:
    """A data string as plotly draws it literally: cut to `limit` characters, then & < > as HTML
    entities (plotly turns tags into markup, and decodes entities back to the characters)."""
    s = "" if value is None else str(value)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    return html.escape(s, quote=False)


def texts(values, limit: int | None = LABEL_CHARS) -> list[str]:
    return [text(v, limit) for v in values]


def lacks(table: pd.DataFrame, *columns: str) -> bool:
    """No rows, or not the columns a figure needs (an analysis of nothing returns a bare table)."""
    return table is None or table.empty or any(c not in table.columns for c in columns)


def empty_figure(title: str | None = None, message: str = "nothing to show yet") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title_text(title), xaxis={"visible": False}, yaxis={"visible": False}, height=300,
                      annotations=[{"text": text(message, 300), "showarrow": False, "xref": "paper",
                                    "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 16}}])
    return fig


def title_text(title: str | None) -> str | None:
    return None if title is None else text(title, 300)
