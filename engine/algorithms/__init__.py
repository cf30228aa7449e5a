"""The algorithms reasonlab trains, one record each, read by everything that names them (the config
classes, the CLI's --algo, the job worker, the Launch page). Adding an algorithm is its module (a
`train(ctx, cfg)` loop), its config dataclass in engine/config.py, and one line in ALGORITHMS."""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Algorithm:
    name: str  # `--algo`, and the store's runs.algo
    label: str  # as the dashboard shows it
    config: str  # its config dataclass, by name, in engine/config.py (named, so this module stays light)
    module: str  # engine.algorithms.<module> holds its loop, train(ctx, cfg)

    def config_class(self) -> type:
        return getattr(importlib.import_module("engine.config"), self.config)

    def train(self, ctx, cfg) -> None:
        importlib.import_module(f"engine.algorithms.{self.module}").train(ctx, cfg)


ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    Algorithm("ei", "Expert Iteration", "EIConfig", "expert_iteration"),
    Algorithm("ppo", "PPO", "PPOConfig", "ppo"),
    Algorithm("rcrl", "Return-conditioned RL", "RCRLConfig", "rcrl"),
    Algorithm("grpo", "GRPO", "GRPOConfig", "grpo"),
    Algorithm("sft", "Continued SFT", "ContinuedSFTConfig", "continued_sft"),
)}
