import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    """Every test gets its own empty REASONLAB_HOME."""
    home = tmp_path / "home"
    monkeypatch.setenv("REASONLAB_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A briefly trained tiny model: it writes the format and stops, so lengths vary."""
    from engine.algorithms.sft import SFTConfig, train_sft

    out = tmp_path_factory.mktemp("ckpt") / "tiny"
    train_sft(SFTConfig(steps=80, seed=0), out, progress=False)
    return out


@pytest.fixture(scope="session")
def untrained_checkpoint(tmp_path_factory):
    """A whole checkpoint at once (config validation loads it): an untrained tiny model."""
    from engine.model.presets import untrained_checkpoint

    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "untrained")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from engine.model.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint)
