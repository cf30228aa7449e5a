"""Stored and user text in Streamlit's markdown (alerts, captions, metric values): shown as code.

Streamlit renders every alert, caption and metric value as markdown, with KaTeX (`$x$`), colours
(`:red[...]`), emoji shortcodes, bare URLs as links and HTML entities. Backslash escapes cannot
stop all of them (emoji and links are found in the parsed text), but markdown leaves a code
span's or a fenced block's content alone, so run errors, paths, names and answers go in one.
"""

from __future__ import annotations

import re

_BACKTICKS = re.compile(r"`+")


def literal(value) -> str:
    """Markdown that shows `value` exactly: an inline code span, or a fenced block when the text
    has several lines (a code span turns line breaks into spaces)."""
    s = "" if value is None else str(value)
    if not s.strip():
        return "`(empty)`"
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(s)), default=0) + 1)
    if "\n" in s or "\r" in s:
        s = s.replace("\r\n", "\n").replace("\r", "\n")  # as markdown reads them (a last \r would join the fence's \n)
        fence = fence if len(fence) >= 3 else "```"
        return f"\n\n{fence}\n{s}\n{fence}\n"
    # the spaces let the text start or end with a backtick; markdown drops one on each side
    return f"{fence} {s} {fence}"
