"""The dashboard shell: app.py builds the navigation over pages/ and opens Home."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.helpers import APP, PAGES, ROOT


def test_app_opens_home_on_an_empty_workspace(workspace):
    at = AppTest.from_file(APP).run()
    assert not at.exception
    assert at.title[0].value == "reasonlab"
    assert at.button[0].label == "Start the quickstart"
    assert "No base model in this workspace yet" in at.info[0].value


def test_navigation_has_a_file_per_page_and_nothing_else():
    text = Path(APP).read_text()
    for page in PAGES:
        assert f'"pages/{page}.py"' in text and (ROOT / "pages" / f"{page}.py").is_file()
    assert sorted(p.stem for p in (ROOT / "pages").glob("*.py")) == sorted(PAGES)


def test_home_lists_base_models(workspace):
    ck = workspace / "checkpoints" / "base-tiny"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text("{}")
    at = AppTest.from_file(APP).run()
    assert not at.exception
    assert list(at.dataframe[0].value["checkpoint"]) == ["base-tiny"]
