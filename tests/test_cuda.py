"""PPO and GRPO on a CUDA GPU, end to end: sampling, the sampler's log-probabilities and hidden
states, the length-grouped minibatches (their indices live on the CPU), the update, the
evaluation. Run where a GPU is (the device tool ran them on an H200 on 2026-12-04, where they
found the minibatches mixing CPU and GPU tensors, and transformers fetching Hub kernels)."""

import os

import pytest
import torch

from engine.store import Store

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("algo, extra", [("ppo", {"dtype": "float32"}), ("ppo", {"dtype": "bfloat16"}),
                                         ("grpo", {"dtype": "float32"}),
                                         ("grpo", {"dtype": "bfloat16", "kl_coef": 0.05})])
def test_a_policy_run_on_the_gpu_trains_and_evaluates_to_the_end(algo, extra, tiny_checkpoint):
    from engine import jobs
    from engine.config import make_config
    from engine.launch import SIZES

    with Store() as store:
        cfg = make_config(algo, base=tiny_checkpoint,
                          sets={**SIZES["smoke test"][algo], "device": "cuda", "steps": 3, "prompts_per_step": 16,
                                "n": 4, "minibatch_size": 16, **extra})
        run_id = jobs.submit(store, cfg)
        assert jobs.execute(store, store.claim_run(run_id, os.getpid())) == "finished", store.get_run(run_id)["error"]
        last = store.checkpoints(run_id).iloc[-1]
        assert last["step"] == 3 and 0 <= last["metrics"]["maj@1"] <= 1
        losses = store.metrics(run_id, ["policy_loss", "grad_norm"])
        assert len(losses) == 6 and losses["value"].notna().all() and losses["value"].abs().lt(1e3).all()
