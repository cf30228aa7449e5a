"""Views as links: what a page's query parameters name, read back into its widgets' choices.

A page writes its state into the URL (`?run=3&kind=eval&step=20&problem=test-17`) after it has
placed its widgets, and reads it when it places them: so a link opens exactly that view, even as
the first page a browser opens after the server starts. Values that no longer exist (a deleted
run, a step the run never reached) fall back to the page's default, never to an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

SEPARATOR = ","  # of several values in one parameter (chosen checkpoints)


def pick(options: Sequence, wanted: str | None, default: int = 0) -> int:
    """Position in `options` of the value a link names (compared as text), else `default`."""
    if wanted is not None:
        texts = [str(o) for o in options]
        if wanted in texts:
            return texts.index(wanted)
    return default


def picks(options: Sequence, wanted: str | None, default: Sequence = ()) -> list:
    """The options a link names, in the link's order and once each (those that no longer exist
    left out); `default` when it names none of them."""
    if wanted:
        by_text = {str(o): o for o in options}
        chosen = list(dict.fromkeys(by_text[w] for w in wanted.split(SEPARATOR) if w in by_text))
        if chosen:
            return chosen
    return list(default)


def joined(values: Sequence) -> str:
    return SEPARATOR.join(str(v) for v in values)


def state(params: Mapping[str, object]) -> dict[str, str]:
    """Query parameters as text, those without a value (None) left out."""
    return {k: str(v) for k, v in params.items() if v is not None}


def view_url(page_url: str | None, page: str, params: Mapping[str, object]) -> str:
    """The link to a view: the page's address as the browser has it (st.context.url), else the
    page's path on this server, then its query."""
    base = page_url or f"/{page}"
    query = urlencode(state(params))
    return f"{base}?{query}" if query else base
