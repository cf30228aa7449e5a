"""Algorithm configs: every field documented, `--set` values coerced to the field's type."""

import pytest

from engine.config import CONFIGS, describe, make_config
from engine.errors import ReasonlabError


@pytest.mark.parametrize("algo", sorted(CONFIGS))
def test_every_field_has_a_docstring(algo):
    undocumented = [name for name, doc, _ in describe(algo) if not doc]
    assert undocumented == []


def test_set_values_take_the_field_type(tiny_checkpoint):
    cfg = make_config("ppo", base=tiny_checkpoint, sets=["n=3", "lr=1e-4", "reward_scale=false", "reward=dense"])
    assert (cfg.n, cfg.lr, cfg.reward_scale, cfg.reward) == (3, 1e-4, False, "dense")
    assert cfg.algo == "ppo" and cfg.base == str(tiny_checkpoint)
    with pytest.raises(ReasonlabError, match="ppo config field reward_scale must be bool, got 'maybe'"):
        make_config("ppo", base=tiny_checkpoint, sets=["reward_scale=maybe"])
    with pytest.raises(ReasonlabError, match="--set expects field=value"):
        make_config("ppo", base=tiny_checkpoint, sets=["lr"])
    with pytest.raises(ReasonlabError, match="unknown algorithm 'dpo'"):
        make_config("dpo", base=tiny_checkpoint)


def test_sft_carry_slips_are_checked():
    from engine.algorithms.sft import SFTConfig

    with pytest.raises(ReasonlabError, match="carry_slips"):
        SFTConfig(carry_slips=1.5).validate()
    SFTConfig(carry_slips=0.0).validate()
