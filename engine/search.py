"""Search every sample: the solution text (the store's FTS5 index, schema migration 5), the
answer, correct or wrong, reward, length and step, over one run or all of them. Results come
grouped by problem, one group per view the Solutions page opens (run, kind, step, problem), with
how many samples matched, how many of them are correct, and a few of them as snippets.

Why that grouping rather than (run, problem): a group is then exactly one screen of Solutions
(one link), and its counts are of one checkpoint's (or one training step's) samples, comparable
with each other; the same problem at other steps is other groups, next to it when sorted.

The search text has no operators; it is matched as written (like a browser's find), so nothing a
person types can be a syntax error:
- words and numbers match whole, ignoring case: `17` finds 17, not 117 or 170; `carry` finds
  "carry" and "Carry", not "carrying";
- symbols match as typed, spaces around them optional: `12 + 5` and `12+5` find both
  "12 + 5" and "12+5", but not "12 - 5";
- words in a row match in that order with any spacing between them: `carry the` finds
  "carry  the", not "carry, the";
- quotes, `*`, `-`, `:`, parentheses, AND/OR/NOT are text like any other; one pair of double
  quotes around the whole text is dropped (`"12 + 5"` is `12 + 5`).
How: the index finds the samples whose words and numbers are the text's, in a row (symbols are
not indexed, engine/schema.py says why); a regular expression then checks the literal text of
those candidates. Text of symbols alone (`####`) has nothing to look up and scans the samples
the other filters leave.

More text sources join as further `TextSource`s: each says, as a condition on a sample row `s`,
which samples its text matches. Notes (engine/notes.py) are searched beside the samples: the
notes whose text or tag holds the search text, matched the same way, each with its link.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlencode

import pandas as pd

from engine.errors import ReasonlabError
from engine.schema import SAMPLE_KINDS

MAX_TEXT = 200  # characters of search text
MAX_LIMIT = 10_000  # groups returned
SOLUTIONS_KINDS = ("eval", "rollout")  # the kinds the Solutions page opens
GROUP = ("run_id", "kind", "step", "problem_id")
EXAMPLE_COLUMNS = ["id", *GROUP, "sample_idx", "correct", "answer", "reward", "n_tokens", "text"]
LITERAL_FUNCTION = "reasonlab_literal"  # the SQL function that checks a candidate's text (registered per connection)

TOKENIZER = "unicode61 remove_diacritics 0 categories 'L* N*'"  # the index's (schema migration 5; a test checks)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_probe: sqlite3.Connection | None = None
_probe_lock = threading.Lock()


@lru_cache(maxsize=8192)
def is_word_char(ch: str) -> bool:
    """Whether the index's tokenizer takes `ch` as part of a word. ASCII: letters and digits.
    Beyond, SQLite's Unicode tables (older than Python's: it keeps some emoji in words, and
    combining accents) decide, so it is asked, once per character."""
    if ch.isascii():
        return ch.isalnum()
    global _probe
    with _probe_lock:
        if _probe is None:
            _probe = sqlite3.connect(":memory:", check_same_thread=False)
            _probe.execute(f'CREATE VIRTUAL TABLE t USING fts5(x, tokenize="{TOKENIZER}")')
            _probe.execute("CREATE VIRTUAL TABLE terms USING fts5vocab(t, row)")
        _probe.execute("DELETE FROM t")
        _probe.execute("INSERT INTO t VALUES (?)", (f"a{ch}b",))
        return _probe.execute("SELECT COUNT(*) FROM terms").fetchone()[0] == 1  # one word, not a and b


def pieces(text: str) -> list[str]:
    """The text as the index reads it: its words, and each other character that is not a space
    (a symbol) on its own."""
    out, word = [], []
    for ch in text:
        if is_word_char(ch):
            word.append(ch)
            continue
        if word:
            out.append("".join(word))
            word = []
        if not ch.isspace():
            out.append(ch)
    if word:
        out.append("".join(word))
    return out


@dataclass(frozen=True)
class TextQuery:
    """What the search text asks of the index and of the literal check."""
    text: str  # as searched: stripped, outer quotes dropped
    match: str | None  # FTS5 query: one phrase of the text's words; None when it has none
    literal: bool  # whether the candidates' text is checked (the index alone decides a single word)


@dataclass(frozen=True)
class TextSource:
    """A text that search looks in, as SQL conditions on a sample row `s`: `indexed` uses the
    parameter :match (an FTS5 query), `literal` the parameter :literal (the search text)."""
    name: str
    indexed: str
    literal: str

    def condition(self, query: TextQuery) -> str:
        parts = ([self.indexed] if query.match else []) + ([self.literal] if query.literal else [])
        return " AND ".join(parts)


SOLUTION = TextSource("solution", indexed="s.id IN (SELECT rowid FROM samples_fts WHERE samples_fts MATCH :match)",
                      literal=f"{LITERAL_FUNCTION}(:literal, s.text)")
TEXT_SOURCES = (SOLUTION,)


def text_query(text: str | None) -> TextQuery | None:
    """The search text as an index lookup and a literal check; None when there is none."""
    text = _utf8(text).strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if not text:
        return None
    if len(text) > MAX_TEXT:
        raise ReasonlabError(f"the search text has {len(text)} characters; at most {MAX_TEXT}")
    found = pieces(text)
    words = [p for p in found if is_word_char(p[0])]
    # words hold word characters only (never a quote), so the phrase cannot break out of its quotes
    match = '"' + " ".join(words) + '"' if words else None
    return TextQuery(text, match, literal=not (len(found) == 1 and words))


@lru_cache(maxsize=64)
def _literal(text: str) -> tuple[re.Pattern, bool, bool]:
    """(regex, starts with a word, ends with a word): the pieces in a row, in any case, one or
    more spaces between two words, optional spaces next to a symbol."""
    found = pieces(text)
    word = [is_word_char(p[0]) for p in found]
    regex = "".join(("" if i == 0 else r"\s+" if word[i - 1] and word[i] else r"\s*") + re.escape(p)
                    for i, p in enumerate(found))
    return re.compile(regex, re.IGNORECASE), word[0], word[-1]


def find_literal(query: str, text: str) -> re.Match | None:
    """The first place `text` holds `query` as written (see the module's docstring), its words whole."""
    regex, word_start, word_end = _literal(query)
    pos = 0
    while (m := regex.search(text, pos)) is not None:
        cut_start = word_start and m.start() > 0 and is_word_char(text[m.start() - 1])
        cut_end = word_end and m.end() < len(text) and is_word_char(text[m.end()])
        if not (cut_start or cut_end):
            return m
        pos = m.start() + 1
    return None


def contains_literal(query: str, text: str | None) -> bool:
    """The SQL function LITERAL_FUNCTION(query, text), called once per candidate."""
    if text is None:
        return False
    regex, word_start, word_end = _literal(query)
    if not (word_start or word_end):  # symbols at both ends: any match will do
        return regex.search(text) is not None
    return find_literal(query, text) is not None


def _utf8(text: str | None) -> str:
    """Text SQLite can take: a lone surrogate (undecodable bytes in a command line) becomes U+FFFD."""
    text = text or ""
    return text.encode("utf-8", "replace").decode("utf-8") if any("\ud800" <= c <= "\udfff" for c in text) else text


class SearchQueries:
    """The search's SQL: a part of `engine.store.Store` (its base class), over its connection.
    Needs `_query(sql, params)`, `_lock` and `_conn`, which Store provides."""

    def register_literal_function(self) -> None:
        """The literal check as the SQL function LITERAL_FUNCTION on the store's connection (idempotent)."""
        with self._lock:
            self._conn.create_function(LITERAL_FUNCTION, 2, contains_literal, deterministic=True)

    def search_groups(self, where: str, params: dict, limit: int) -> pd.DataFrame:
        """The samples `s` matching `where` (conditions with named parameters), counted per GROUP:
        GROUP's columns, matches, correct (of them), groups_total and matches_total (over every
        group, not only the `limit` returned); most matches first, then the newest run."""
        return self._query(
            f"SELECT {', '.join(GROUP)}, COUNT(*) AS matches, SUM(COALESCE(correct, 0)) AS correct,"
            " COUNT(*) OVER () AS groups_total, SUM(COUNT(*)) OVER () AS matches_total"
            f" FROM samples s WHERE {where} GROUP BY {', '.join(GROUP)}"
            " ORDER BY matches DESC, run_id DESC, kind, step, problem_id LIMIT :limit", {**params, "limit": int(limit)})

    def search_examples(self, keys: list[tuple], where: str, params: dict, n: int) -> pd.DataFrame:
        """EXAMPLE_COLUMNS of the first `n` samples `s` (by id) of each group in `keys` (GROUP's
        values) that match `where`, ordered by id. CROSS JOIN: the groups drive, each a lookup in
        the index samples_run_kind_step."""
        values = ", ".join(f"(:g{i}r, :g{i}k, :g{i}s, :g{i}p)" for i in range(len(keys)))
        named = {f"g{i}{c}": _plain(v) for i, key in enumerate(keys) for c, v in zip("rksp", key)}
        return self._query(
            f"WITH g (run_id, kind, step, problem_id) AS (VALUES {values})"
            f" SELECT {', '.join(EXAMPLE_COLUMNS)} FROM (SELECT s.*, ROW_NUMBER() OVER"
            " (PARTITION BY s.run_id, s.kind, s.step, s.problem_id ORDER BY s.id) AS nth"
            " FROM g CROSS JOIN samples s ON s.run_id = g.run_id AND s.kind = g.kind AND s.step = g.step"
            f" AND s.problem_id = g.problem_id WHERE {where}) WHERE nth <= :n ORDER BY id",
            {**params, **named, "n": int(n)})


@dataclass
class SearchResult:
    groups: pd.DataFrame  # one row per GROUP: matches, correct (of them), examples (list of dicts)
    matches: int  # samples that match, in every group (not only those returned)
    groups_total: int  # groups that match (the limit may return fewer)
    filters: dict  # the search as given, those not given left out
    notes: list[dict] = field(default_factory=list)  # notes whose text or tag holds the text (note_entry)

    def as_json(self) -> dict:
        groups = [{**{k: _plain(g[k]) for k in (*GROUP, "matches", "correct")},
                   "solutions": solutions_url(g), "examples": g["examples"]} for _, g in self.groups.iterrows()]
        return {"filters": self.filters, "matches": self.matches, "groups_total": self.groups_total, "groups": groups,
                "notes": self.notes}

    def notes_line(self) -> str:
        return "1 note matches" if len(self.notes) == 1 else f"{len(self.notes)} notes match"

    def lines(self) -> list[str]:
        """The result as text: a summary, then each group with its link and example snippets."""
        shown = f"; the first {len(self.groups):,}" if len(self.groups) < self.groups_total else ""
        out = [f"{self.matches:,} samples match, in {self.groups_total:,} problem views (run, kind, step){shown}"]
        for _, g in self.groups.iterrows():
            link = solutions_url(g)
            out.append(f"run {g['run_id']} {printable(g['kind'])} step {g['step']} {printable(g['problem_id'])}: "
                       f"{g['matches']} samples, {g['correct']} correct" + (f"  {link}" if link else ""))
            out += [f"    sample {e['id']} ({'correct' if e['correct'] else 'wrong'}, answer {printable(e['answer'])}): "
                    f"{e['snippet']}" for e in g["examples"]]
        if self.notes:
            out.append(self.notes_line())
            out += [f"  note {n['id']} on {n['on']}: {printable(n['tag'] or '')} {printable(n['text'])}".rstrip()
                    + (f"  {n['solutions']}" if n["solutions"] else "") for n in self.notes]
        return out


def search(store, text: str | None = None, run_id: int | None = None, kind: str | None = None,
           answer: str | None = None, correct: bool | None = None, reward_min: float | None = None,
           reward_max: float | None = None, length_min: int | None = None, length_max: int | None = None,
           step_min: int | None = None, step_max: int | None = None, limit: int = 100, examples: int = 3,
           sources: tuple[TextSource, ...] = TEXT_SOURCES) -> SearchResult:
    """Samples matching every given filter, grouped by (run, kind, step, problem): most matches
    first, then the newest run. `correct` False means wrong (or not scored); lengths are
    n_tokens; ranges include their ends. `examples` samples per group come with snippets."""
    filters = {k: v for k, v in dict(text=text, run_id=run_id, kind=kind, answer=answer, correct=correct,
                                     reward_min=reward_min, reward_max=reward_max, length_min=length_min,
                                     length_max=length_max, step_min=step_min, step_max=step_max).items()
               if v is not None and v != ""}
    conditions, params, query = _conditions(store, filters, sources)
    where = " AND ".join(sql for sql, _ in conditions)
    if not 1 <= limit <= MAX_LIMIT:
        raise ReasonlabError(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if query is not None and query.literal:
        store.register_literal_function()
    groups = store.search_groups(where, params, limit)
    matches = int(groups["matches_total"].iloc[0]) if len(groups) else 0
    total = int(groups["groups_total"].iloc[0]) if len(groups) else 0
    groups = groups.drop(columns=["groups_total", "matches_total"])
    # a group's examples match it already in run, kind and step; those conditions left out, its
    # lookup in the index samples_run_kind_step is the only plan SQLite sees
    rest = " AND ".join(sql for sql, on_group in conditions if not on_group)
    found = _examples(store, groups, rest, params, query, examples) if examples > 0 and len(groups) else {}
    groups["examples"] = [found.get(tuple(g), []) for g in groups[list(GROUP)].itertuples(index=False)]
    notes = matching_notes(store, query, filters.get("run_id")) if query is not None else []
    return SearchResult(groups, matches, total, filters, notes)


def matching_notes(store, query: TextQuery, run_id: int | None = None) -> list[dict]:
    """The notes (of the run: written in it or on its problems) whose text or tag holds the search
    text, matched as samples are, oldest first; each with what it is on and its Solutions link."""
    notes = store.notes(run_id=run_id)
    out = []
    for n in notes.itertuples(index=False):
        if not contains_literal(query.text, f"{n.text}\n{n.tag or ''}"):
            continue
        on_sample = n.sample_id == n.sample_id and n.sample_id is not None
        run = run_id if run_id is not None else n.run_id if n.run_id == n.run_id else None
        view = None  # the note's view on Solutions: its sample's, or its problem in the searched run (else its own)
        if on_sample:
            view = solutions_query({"run_id": n.run_id, "kind": n.kind, "step": n.step, "problem_id": n.problem_id})
        elif run is not None:
            view = {"run": str(int(run)), "problem": str(n.problem_id)}
        out.append({"id": int(n.id), "tag": _plain(n.tag), "text": n.text, "problem_id": n.problem_id,
                    "run_id": _plain(n.run_id), "sample_id": _plain(n.sample_id), "query": view,
                    "solutions": None if view is None else "/solutions?" + urlencode(view),
                    "on": f"sample {int(n.sample_idx)} of {n.problem_id} ({n.kind} step {int(n.step)})" if on_sample
                    else f"problem {n.problem_id}"})
    return out


def _conditions(store, f: dict, sources: tuple[TextSource, ...]) -> tuple[list[tuple[str, bool]], dict,
                                                                        TextQuery | None]:
    """The WHERE clause's conditions (fixed SQL; every value a parameter), each with whether it is
    on a grouping column; their parameters; the text query."""
    where, params = [("1", False)], {}
    query = text_query(f.get("text"))
    if query is not None:
        where.append(("(" + " OR ".join(f"({s.condition(query)})" for s in sources) + ")", False))
        params.update(match=query.match, literal=query.text if query.literal else None)
    if "run_id" in f:
        if store.get_run(int(f["run_id"])) is None:
            raise ReasonlabError(f"no run {f['run_id']} in the store")
        where.append(("s.run_id = :run_id", True))
        params["run_id"] = int(f["run_id"])
    if "kind" in f:
        if f["kind"] not in SAMPLE_KINDS:
            raise ReasonlabError(f"kind must be one of {', '.join(SAMPLE_KINDS)}, not {f['kind']!r}")
        where.append(("s.kind = :kind", True))
        params["kind"] = f["kind"]
    if "answer" in f:
        where.append(("s.answer = :answer", False))
        params["answer"] = _utf8(str(f["answer"]))
    if "correct" in f:
        where.append(("COALESCE(s.correct, 0) = :correct", False))
        params["correct"] = int(bool(f["correct"]))
    for name, column, cast in (("reward", "reward", float), ("length", "n_tokens", int), ("step", "step", int)):
        low, high = f.get(f"{name}_min"), f.get(f"{name}_max")
        if low is not None and high is not None and low > high:
            raise ReasonlabError(f"the {name} range is empty: minimum {low} is above maximum {high}")
        if low is not None:
            where.append((f"s.{column} >= :{name}_min", column in GROUP))
            params[f"{name}_min"] = cast(low)
        if high is not None:
            where.append((f"s.{column} <= :{name}_max", column in GROUP))
            params[f"{name}_max"] = cast(high)
    return where, params, query


def _examples(store, groups: pd.DataFrame, where: str, params: dict, query: TextQuery | None,
              n: int) -> dict[tuple, list[dict]]:
    """The first `n` matching samples (by id) of each group, with a snippet of each."""
    keys = [tuple(g) for g in groups[list(GROUP)].itertuples(index=False)]
    rows = store.search_examples(keys, where, params, n)
    out: dict[tuple, list[dict]] = {}
    for r in rows.itertuples(index=False):
        out.setdefault((r.run_id, r.kind, r.step, r.problem_id), []).append(
            {"id": int(r.id), "sample_idx": int(r.sample_idx), "correct": _plain(r.correct), "answer": _plain(r.answer),
             "reward": _plain(r.reward), "n_tokens": _plain(r.n_tokens),
             "snippet": snippet(r.text, None if query is None else query.text)})
    return out


def snippet(text: str, query: str | None = None, width: int = 120) -> str:
    """About `width` characters of `text` around the first place it holds `query` (else from its
    start), on one line: line breaks shown as ' ⏎ ', cuts marked with '…'."""
    start = 0
    if query and (m := find_literal(query, text)):
        start = max(0, m.start() - width // 3)
    piece = text[start:start + width]
    flat = printable(re.sub(r"\s*[\r\n]\s*", " ⏎ ", piece))
    return ("…" if start > 0 else "") + flat + ("…" if start + width < len(text) else "")


def printable(value) -> str:
    """Stored text for a terminal: control characters (which it would act on) written as \\xNN."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", str(value))


def example_line(example: dict) -> str:
    """One example of a group on a line: which sample, its verdict, its snippet."""
    which = "greedy" if example["sample_idx"] < 0 else f"sample {example['sample_idx']}"
    return f"{which:>10} {'✓' if example['correct'] else '✗'}  {example['snippet']}"


def solutions_query(group) -> dict[str, str] | None:
    """Query parameters of the Solutions page's view of a group; None for a kind it does not open."""
    if group["kind"] not in SOLUTIONS_KINDS:
        return None
    return {"run": str(int(group["run_id"])), "kind": str(group["kind"]), "step": str(int(group["step"])),
            "problem": str(group["problem_id"])}


def solutions_url(group) -> str | None:
    """The path of a group's view on Solutions, e.g. /solutions?run=3&kind=eval&step=20&problem=test-17."""
    query = solutions_query(group)
    return None if query is None else "/solutions?" + urlencode(query)


def _plain(value):
    """numpy and pandas scalars as JSON's (NaN as None)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and value != value else value
    return value


# -- the search as a link -------------------------------------------------------------------------

# search() argument -> (URL parameter, its type); `correct` is written 1 or 0
URL_PARAMS = {"text": ("q", str), "run_id": ("run", int), "kind": ("kind", str), "correct": ("correct", bool),
              "answer": ("answer", str), "reward_min": ("min_reward", float), "reward_max": ("max_reward", float),
              "length_min": ("min_length", int), "length_max": ("max_length", int),
              "step_min": ("min_step", int), "step_max": ("max_step", int)}


MORE_FILTERS = {"answer", "reward_min", "reward_max", "length_min", "length_max", "step_min", "step_max"}


def from_url(query: dict[str, str]) -> dict:
    """search() arguments from a link's query parameters; a malformed value is left out (the page
    shows that filter unset), never an error."""
    out = {}
    for arg, (name, kind) in URL_PARAMS.items():
        value = query.get(name)
        if value is None or value == "":
            continue
        try:
            if kind is bool:
                out[arg] = {"1": True, "0": False}[value]
            elif kind is float:
                out[arg] = float(value) if float(value) == float(value) else None  # NaN: unset
            else:
                out[arg] = kind(value)
        except (KeyError, ValueError, OverflowError):
            continue
    return {k: v for k, v in out.items() if v is not None}


def to_url(filters: dict) -> dict[str, str | None]:
    """The query parameters of a search (unset ones None), as from_url reads them back."""
    out = {}
    for arg, (name, kind) in URL_PARAMS.items():
        value = filters.get(arg)
        out[name] = None if value is None or value == "" else str(int(value)) if kind is bool else str(value)
    return out


def has_criteria(filters: dict) -> bool:
    """Whether a search names anything to look for (else the page waits for one)."""
    return any(v is not None and v != "" for v in filters.values())
