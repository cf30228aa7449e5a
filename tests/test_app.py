"""The dashboard shell: the home page renders on an empty and on a populated workspace."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

HOME = str(Path(__file__).resolve().parent.parent / "pages" / "home.py")


def test_home_on_an_empty_workspace(workspace):
    at = AppTest.from_file(HOME).run()
    assert not at.exception
    assert "No checkpoints yet" in at.info[0].value


def test_home_lists_checkpoints(workspace):
    ck = workspace / "checkpoints" / "base-tiny"
    ck.mkdir(parents=True)
    (ck / "config.json").write_text("{}")
    at = AppTest.from_file(HOME).run()
    assert not at.exception
    assert list(at.dataframe[0].value["checkpoint"]) == ["base-tiny"]
