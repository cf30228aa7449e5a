"""Search over every sample (engine/search.py): the full-text index finds what the text holds, the
filters combine as a pandas reference says, groups count right, no typed text is a SQL error, the
index follows deletes and updates and is built for a store made before it, and the CLI and the
page show the results (the page's search living in its URL)."""

import json
import re
import sqlite3

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import search as search_module
from engine.cli import main
from engine.errors import ReasonlabError
from engine.schema import MIGRATIONS
from engine.search import search, text_query
from engine.store import Store, migrate
from tests.helpers import open_page

FTS_MIGRATION = next(i for i, script in enumerate(MIGRATIONS) if "samples_fts" in script)  # the version before it


def add(store: Store, run_id: int, texts, step: int = 0, kind: str = "eval", problem: str = "p", **fields) -> None:
    store.add_samples([{"run_id": run_id, "step": step, "kind": kind, "task": "multistep", "split": "test",
                        "problem_id": problem, "sample_idx": i, "text": text, **fields} for i, text in enumerate(texts)])


def found_ids(store: Store, text: str, **filters) -> set[int]:
    """Every matching sample's id, through the groups' examples (one group per sample here)."""
    result = search(store, text, limit=10_000, examples=10_000, **filters)
    return {e["id"] for examples in result.groups["examples"] for e in examples}


def contains(text: str, query: str) -> bool:
    """The reference: the query's words and symbols (as the index splits text), in any case, appear
    one after another among the text's (what lies between them in the text being spaces only)."""
    want = [p.lower() for p in search_module.pieces(query.strip())]
    have = [p.lower() for p in search_module.pieces(text)]
    return bool(want) and any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


def whole(query: str, text: str) -> bool:
    """`text` holds `query` exactly, not inside a longer word."""
    word = search_module.is_word_char
    for m in re.finditer(re.escape(query), text):
        if not (word(query[0]) and m.start() and word(text[m.start() - 1])) and \
           not (word(query[-1]) and m.end() < len(text) and word(text[m.end()])):
            return True
    return False


# -- the text: index and literal check against a reference ------------------------------------------

WORDS = ["carry", "Carry", "CARRY", "carrying", "the", "borrow", "17", "117", "170", "12", "5", "3.5", "café", "CAFÉ",
         "über", "e\u0301", "x_1", "+", "-", "*", "/", "=", "####", "(", ")", '"', "'", ":", "🙂", "😀", "×", "²"]
SPACES = [" ", "  ", "\n", " \n", "\t", ""]


@st.composite
def solution(draw):
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=12))
    return "".join(w + draw(st.sampled_from(SPACES)) for w in words)


def test_the_index_finds_exactly_the_samples_whose_words_and_symbols_follow_the_text(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    run_id = store.create_run("ei", {}, status="finished")

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(texts=st.lists(solution(), min_size=1, max_size=12), pick=st.integers(0, 100), span=st.integers(1, 4),
           spacing=st.sampled_from([" ", "", "  "]))
    def check(texts, pick, span, spacing):
        store._conn.execute("DELETE FROM samples")
        add(store, run_id, texts)
        ids = store.sample_rows(["id", "text"], run_id=run_id)
        pieces = search_module.pieces(texts[pick % len(texts)])
        start = pick % len(pieces)
        query = spacing.join(pieces[start:start + span])
        expected = {i for i, t in zip(ids["id"], ids["text"]) if contains(t, query)}
        assert found_ids(store, query) == expected, query
        # what LIKE finds (the text as typed, not inside a longer word) the index finds too
        liked = store._query("SELECT id, text FROM samples WHERE text LIKE '%' || ? || '%'", (query,))
        assert {i for i, t in zip(liked["id"], liked["text"]) if whole(query, t)} <= expected, query

    check()


@pytest.mark.parametrize("query, found", [
    ("17", ["#### 17", "12 + 5 = 17\n#### 17", "x=17."]),
    ("carry", ["I forgot the carry", "Carry the one", "CARRY", "carry, the", "carry  the",
               "carry theory; carry, the"]),
    ("12 + 5", ["12 + 5 = 17\n#### 17", "12+5", "(12 +5)"]),
    ("12+5", ["12 + 5 = 17\n#### 17", "12+5", "(12 +5)"]),
    ('"12 + 5"', ["12 + 5 = 17\n#### 17", "12+5", "(12 +5)"]),
    ("carry the", ["Carry the one", "carry  the"]),
    ("####", ["#### 17", "12 + 5 = 17\n#### 17"]),
    ("3.5", ["3.5 * 2 = 7"]),
])
def test_text_is_matched_as_written_whole_words_in_any_case(workspace, query, found):
    texts = ["#### 17", "12 + 5 = 17\n#### 17", "x=17.", "117 and 170", "I forgot the carry", "Carry the one", "CARRY",
             "carrying", "12+5", "(12 +5)", "12 - 5", "112 + 5", "12 + 56, 12 - 5", "carry, the", "carry  the",
             "carry theory; carry, the",
             "3.5 * 2 = 7", "35", "3.55"]
    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        add(s, run_id, texts)
        rows = s.sample_rows(["id", "text"], run_id=run_id)
        ids = dict(zip(rows["text"], rows["id"]))
        assert found_ids(s, query) == {ids[t] for t in found}


HOSTILE = ['"', '""', '"""', "'", "*", "carry*", "-17", "- 17", "NEAR(carry the)", "NEAR(", "carry AND the", "OR",
           "NOT carry", "(", ")", "text:17", "{text}: 17", "^17", "\\", "%", "_", "🙂", "\x00", "a\x00b", "🙂 17",
           "   ", "", "17 \"", "+", "x" * 200, "e\u0301", "\u202e17", "ﬁ", "İ"]


@pytest.mark.parametrize("query", HOSTILE)
def test_no_typed_text_is_a_sql_error(workspace, query):
    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        add(s, run_id, [query, "carry the 17", 'he said "carry*" (NEAR: -17) 🙂'])
        result = search(s, query)
        assert result.matches >= (1 if text_query(query) else 3)  # its own text, or (no text) every sample


def test_no_text_at_all_raises(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    add(store, store.create_run("ei", {}, status="finished"), ["carry the 17", "12 + 5 = 17\n#### 17"])

    @settings(max_examples=150, deadline=None)
    @given(st.text(max_size=search_module.MAX_TEXT))
    def check(query):
        search(store, query)

    check()


def test_the_word_characters_are_the_indexs_and_a_surrogate_is_no_error(workspace):
    assert search_module.TOKENIZER in next(script for script in MIGRATIONS if "samples_fts" in script)
    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        add(s, run_id, ["a🙂17 b😀17 e\u0301 x"])
        s._conn.execute("CREATE VIRTUAL TABLE temp.terms USING fts5vocab(main, samples_fts, row)")
        terms = {t for (t,) in s._conn.execute("SELECT term FROM temp.terms")}
        pieces = search_module.pieces("a🙂17 b😀17 e\u0301 x")
        assert {p for p in pieces if search_module.is_word_char(p[0])} == terms  # whatever SQLite's Unicode tables say
        assert search(s, "\udcff").matches == 0 and search(s, answer="\udcff").matches == 0


def test_too_long_a_text_is_refused_by_name(workspace):
    with Store() as s, pytest.raises(ReasonlabError, match=f"at most {search_module.MAX_TEXT}"):
        search(s, "x" * (search_module.MAX_TEXT + 1))


# -- filters and groups ----------------------------------------------------------------------------


FILTERS = st.fixed_dictionaries({}, optional={
    "text": st.sampled_from(["12", "5", "+ 3", "####", "= 1"]), "kind": st.sampled_from(["eval", "rollout"]),
    "answer": st.sampled_from(["12", "7", "13"]), "correct": st.booleans(), "reward_min": st.sampled_from([0.0, 0.5]),
    "reward_max": st.sampled_from([0.5, 1.0]), "length_min": st.integers(0, 20), "length_max": st.integers(10, 40),
    "step_min": st.integers(0, 40), "step_max": st.integers(0, 80)})


def test_filters_combine_as_a_pandas_reference_says(fabricated):
    with Store() as s:
        every = s.samples()
        runs = [None, *fabricated["runs"].values()]

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(filters=FILTERS, run=st.sampled_from(runs))
        def check(filters, run):
            if any(filters.get(f"{name}_min", 0) > filters.get(f"{name}_max", 10**9) for name in ("length", "step")):
                return  # refused by name (test_bad_filters_are_refused_by_name)
            f = {**filters, "run_id": run} if run is not None else filters
            keep = pd.Series(True, index=every.index)
            if "text" in f:
                keep &= every["text"].map(lambda t: contains(t, f["text"]))
            for column, key in (("run_id", "run_id"), ("kind", "kind"), ("answer", "answer")):
                if key in f:
                    keep &= every[column] == f[key]
            if "correct" in f:
                keep &= every["correct"].fillna(0).astype(bool) == f["correct"]
            for column, name in (("reward", "reward"), ("n_tokens", "length"), ("step", "step")):
                if f"{name}_min" in f:
                    keep &= every[column] >= f[f"{name}_min"]
                if f"{name}_max" in f:
                    keep &= every[column] <= f[f"{name}_max"]
            hits = every[keep]
            expected = (hits.assign(correct=hits["correct"].fillna(0).astype(int))
                        .groupby(["run_id", "kind", "step", "problem_id"])
                        .agg(matches=("id", "size"), correct=("correct", "sum")).reset_index())
            expected = expected.sort_values(["matches", "run_id", "kind", "step", "problem_id"],
                                            ascending=[False, False, True, True, True]).reset_index(drop=True)
            result = search(s, limit=10_000, **f)
            got = result.groups.drop(columns="examples")
            pd.testing.assert_frame_equal(got, expected, check_dtype=False)
            assert result.matches == len(hits) and result.groups_total == len(expected)

        check()


def test_groups_count_matches_and_correct_ones_and_the_limit_keeps_the_totals(workspace):
    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        s.add_samples([{"run_id": run_id, "step": step, "kind": "eval", "task": "multistep", "split": "test",
                        "problem_id": problem, "sample_idx": i, "text": f"{text}\n#### {answer}", "answer": answer,
                        "correct": correct, "reward": float(correct or 0), "n_tokens": 9}
                       for step, problem, i, text, answer, correct in [
                           (1, "a", 0, "carry 12", "12", 1), (1, "a", 1, "carry 12", "12", 1), (1, "a", 2, "carry", "3", 0),
                           (1, "a", 3, "no", "3", 0), (1, "b", 0, "carry", "4", None), (2, "a", 0, "carry", "12", 1)]])
        result = search(s, "carry", examples=2)
        groups = result.groups.drop(columns="examples").to_dict("records")
        assert groups == [{"run_id": run_id, "kind": "eval", "step": 1, "problem_id": "a", "matches": 3, "correct": 2},
                          {"run_id": run_id, "kind": "eval", "step": 1, "problem_id": "b", "matches": 1, "correct": 0},
                          {"run_id": run_id, "kind": "eval", "step": 2, "problem_id": "a", "matches": 1, "correct": 1}]
        assert (result.matches, result.groups_total) == (5, 3)
        first = result.groups.at[0, "examples"]
        assert [e["sample_idx"] for e in first] == [0, 1] and first[0]["snippet"] == "carry 12 ⏎ #### 12"
        limited = search(s, "carry", limit=1)
        assert len(limited.groups) == 1 and (limited.matches, limited.groups_total) == (5, 3)
        assert search(s, "carry", correct=False).groups["matches"].tolist() == [1, 1]  # unscored counts as wrong
        assert search(s, "carry", answer="12").matches == 3


def test_bad_filters_are_refused_by_name(workspace):
    with Store() as s:
        with pytest.raises(ReasonlabError, match="no run 7"):
            search(s, "x", run_id=7)
        with pytest.raises(ReasonlabError, match="kind must be one of"):
            search(s, kind="evals")
        with pytest.raises(ReasonlabError, match="reward range is empty"):
            search(s, reward_min=1, reward_max=0)
        with pytest.raises(ReasonlabError, match="limit"):
            search(s, limit=0)


def test_a_snippet_centres_on_the_match_and_shows_control_characters_escaped():
    text = "a" * 300 + " 12 + 5 = 17 " + "b" * 300
    cut = search_module.snippet(text, "12+5", width=60)
    assert cut.startswith("…") and cut.endswith("…") and "12 + 5 = 17" in cut
    assert search_module.snippet("\x1b[31mred\r\nnext") == "\\x1b[31mred ⏎ next"


# -- the index follows the samples -----------------------------------------------------------------


def indexed(store: Store, word: str) -> set[int]:
    return set(store._query("SELECT rowid FROM samples_fts WHERE samples_fts MATCH ?", (f'"{word}"',))["rowid"])


def test_deleting_or_truncating_a_run_takes_its_samples_out_of_the_index(workspace):
    with Store() as s:
        gone, kept = (s.create_run("ei", {}, status="finished") for _ in range(2))
        for run_id in (gone, kept):
            add(s, run_id, ["carry the one", "carry"] * 5, step=1)
            add(s, run_id, ["carry late"], step=2)
        assert search(s, "carry").matches == 22
        assert s.delete_run(gone, chunk=3)  # several chunks
        s.truncate_run(kept, after_step=1)
        assert search(s, "carry").matches == 10 and set(search(s, "carry").groups["run_id"]) == {kept}
        assert indexed(s, "carry") == set(s.sample_rows(["id"], run_id=kept)["id"])
        assert indexed(s, "late") == set()
        s._conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('integrity-check')")


def test_a_changed_text_is_found_by_its_new_words_only(workspace):
    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        add(s, run_id, ["carry the one"])
        s._conn.execute("UPDATE samples SET text = 'borrow ten' WHERE run_id = ?", (run_id,))
        assert search(s, "carry").matches == 0 and search(s, "borrow").matches == 1
        s._conn.execute("INSERT INTO samples_fts (samples_fts) VALUES ('integrity-check')")


def test_a_store_from_before_the_index_is_migrated_and_its_samples_found(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, target=FTS_MIGRATION) == FTS_MIGRATION
    conn.execute("INSERT INTO runs (algo, config, status, created_at) VALUES ('ei', '{}', 'finished', 1.0)")
    conn.executemany("INSERT INTO samples (run_id, step, kind, task, split, problem_id, sample_idx, text, created_at)"
                     " VALUES (1, 0, 'eval', 'multistep', 'test', 'p', ?, ?, 1.0)", [(0, "carry 17"), (1, "12 + 5 = 17")])
    conn.close()
    with Store(path) as s:
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert search(s, "17").matches == 2 and search(s, "carry").matches == 1
        add(s, 1, ["carry on"])  # and new samples join the old in the index
        assert search(s, "carry").matches == 2


def test_adding_samples_keeps_their_order_and_values(workspace):
    """add_samples goes through a staging table (the index's cost): ids follow the rows' order."""
    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        add(s, run_id, [f"text {i}" for i in range(50)], correct=1, reward=0.5, n_tokens=7)
        rows = s.samples(run_id=run_id)
        assert rows["text"].tolist() == [f"text {i}" for i in range(50)] and rows["id"].is_monotonic_increasing
        assert set(rows["reward"]) == {0.5} and set(rows["n_tokens"]) == {7} and set(rows["correct"]) == {1}
        with pytest.raises(sqlite3.IntegrityError):
            add(s, run_id, ["fine", None])
        assert len(s.samples(run_id=run_id)) == 50  # nothing of a refused batch stays, staged or stored
        add(s, run_id, ["next"])
        assert s.samples(run_id=run_id)["text"].iloc[-1] == "next" and len(s.samples(run_id=run_id)) == 51


# -- the CLI ----------------------------------------------------------------------------------------


def test_cli_search_prints_groups_with_their_solutions_links_and_json(fabricated, capsys):
    ei = fabricated["runs"]["ei"]
    with Store() as s:
        expected = search(s, "12", run_id=ei, kind="eval", step_min=1, limit=2)
    assert main(["search", "12", "--run", str(ei), "--kind", "eval", "--min-step", "1", "--limit", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{expected.matches:,} samples match, in {expected.groups_total:,} problem views")
    g = expected.groups.iloc[0]
    assert out[1] == (f"run {ei} eval step {g['step']} {g['problem_id']}: {g['matches']} samples, {g['correct']} correct  "
                      f"/solutions?run={ei}&kind=eval&step={g['step']}&problem={g['problem_id']}")
    assert out[2].startswith(f"    sample {g['examples'][0]['id']} (")

    assert main(["search", "=", "--run", str(ei), "--step", "2", "--wrong", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["filters"] == {"text": "=", "run_id": ei, "correct": False, "step_min": 2, "step_max": 2}
    assert data["groups"] and all(g["step"] == 2 and g["correct"] == 0 for g in data["groups"])
    assert data["matches"] == sum(g["matches"] for g in data["groups"])


@pytest.mark.parametrize("argv, message", [
    (["search", "x", "--min-reward", "2", "--max-reward", "1"], "the reward range is empty"),
    (["search", "x", "--step", "2", "--min-step", "1"], "give --step, or --min-step/--max-step, not both"),
    (["search", "x", "--run", "99"], "no run 99"),
])
def test_cli_search_refuses_bad_filters_in_one_line(workspace, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("reasonlab: error: ") and message in err and len(err.strip().splitlines()) == 1


# -- the page ----------------------------------------------------------------------------------------


def test_the_page_opened_from_a_link_shows_its_results_and_links_each_group_to_solutions(fabricated):
    ppo = fabricated["runs"]["ppo"]
    with Store() as s:
        line = s.samples(run_id=ppo, kind="eval")["text"].iloc[0].splitlines()[0]  # e.g. "3 + 9 = 12"
        expected = search(s, line, run_id=ppo, kind="eval", limit=50)
        wrong = search(s, "####", run_id=ppo, kind="eval", correct=False)
    assert expected.matches > 0
    at = open_page("search", {"q": line, "run": str(ppo), "kind": "eval"})
    assert not at.exception and not at.error
    assert at.text_input[0].value == line and at.selectbox[0].value == ppo
    assert at.subheader[0].value.startswith(f"{expected.matches:,} samples match, in {expected.groups_total:,} problem views")
    links = [link.proto for link in at.get("page_link")]
    first = expected.groups.iloc[0]
    assert len(links) == len(expected.groups) and links[0].page == "solutions"
    assert links[0].query_string == f"run={ppo}&kind=eval&step={first['step']}&problem={first['problem_id']}"
    assert any(first["examples"][0]["snippet"] in c.value for c in at.code)  # the snippets, as code

    at.text_input[0].set_value("####").run()  # the search follows the inputs, and the URL follows them
    at.radio[1].set_value(False).run()
    assert (at.query_params["q"], at.query_params["correct"], at.query_params["run"]) == ("####", "0", str(ppo))
    assert at.subheader[0].value.startswith(f"{wrong.matches:,} samples match")


def test_the_page_without_a_search_waits_for_one_and_refuses_an_empty_range_in_one_line(fabricated):
    at = open_page("search")
    assert not at.exception and not at.subheader and any("Type a text" in c.value for c in at.caption)
    at = open_page("search", {"min_step": "5", "max_step": "1"})
    assert not at.exception and "step range is empty" in at.error[0].value


def test_the_page_shows_hostile_samples_and_problem_ids_as_text_only(workspace):
    from tests.helpers import HOSTILE as EVIL
    from tests.helpers import check

    with Store() as s:
        run_id = s.create_run("ei", {}, status="finished")
        add(s, run_id, [EVIL, f"carry\n{EVIL}"], problem=EVIL)
    at = open_page("search", {"q": "evil"})
    assert at.subheader[0].value.startswith("2 samples match")
    check(at, "hostile", "search?q=evil")
