"""One record per algorithm (engine/algorithms/__init__.py), read by everything that names one: the
config classes, the CLI's --algo, the Launch form and its size presets, the job worker."""

import importlib

import pytest

from engine import cli, launch
from engine.algorithms import ALGORITHMS
from engine.config import CONFIGS, RunConfig, parse_bool


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_names_its_config_and_its_loop(name):
    algo = ALGORITHMS[name]
    assert algo.name == name and algo.label
    assert issubclass(algo.config_class(), RunConfig) and CONFIGS[name] is algo.config_class()
    assert callable(importlib.import_module(f"engine.algorithms.{algo.module}").train)


def test_everything_that_lists_algorithms_lists_the_registrys():
    names = list(ALGORITHMS)
    assert list(CONFIGS) == names and list(launch.LABELS) == names
    assert all(set(preset) == set(names) for preset in launch.SIZES.values())
    train = next(a for a in cli.parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "algo")
    assert list(train.choices) == names


def test_a_run_is_trained_by_the_loop_its_record_names(monkeypatch):
    called = []
    module = importlib.import_module(f"engine.algorithms.{ALGORITHMS['grpo'].module}")
    monkeypatch.setattr(module, "train", lambda ctx, cfg: called.append((ctx, cfg)))
    ALGORITHMS["grpo"].train("ctx", "cfg")
    assert called == [("ctx", "cfg")]


@pytest.mark.parametrize("text, value", [("1", True), ("TRUE", True), ("yes", True), ("On", True),
                                         ("0", False), ("false", False), ("No", False), ("off", False)])
def test_yes_and_no_are_read_one_way_for_set_and_for_presets(text, value):
    assert parse_bool(text) is value
    assert launch._typed("bool", text) is value


@pytest.mark.parametrize("text", ["", "2", "yep", "truthy"])
def test_anything_else_is_not_a_yes_or_no(text):
    with pytest.raises(ValueError):
        parse_bool(text)
