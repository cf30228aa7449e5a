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
    from engine.algorithms.sft import train_sft
    from engine.config import SFTConfig

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


@pytest.fixture
def fabricated(workspace):
    """A small populated workspace (dashboard_store.py): an EI run, a PPO run with losses and a failed
    GRPO run, 6 problems x (greedy + 8 samples) per checkpoint. Returns fabricate_store's ids."""
    from tests.dashboard_store import fabricate_store

    return fabricate_store(workspace, problems=6, k=8, ei_rounds=2, ppo_checkpoints=2, rollout_problems=4)
