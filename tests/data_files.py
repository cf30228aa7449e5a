"""Test inputs made on the spot, so nothing is downloaded: GSM8K / SVAMP format files and a tiny
Qwen2-architecture chat model (a tokenizer with a chat template) saved as a plain HF directory."""

from __future__ import annotations

import json
import random
from pathlib import Path

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def gsm8k_rows(n: int, seed: int = 0) -> list[dict]:
    """One-step addition problems in GSM8K's format: a worked answer with a calculator annotation."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"question": f"Ann has {a} pens and gets {b} more. How many pens does she have? (#{i})",
                     "answer": f"She has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} pens.\n#### {a + b}"})
    return rows


def write_jsonl(path: Path, rows: list, extra_lines: tuple[str, ...] = ()) -> Path:
    path = Path(path)
    path.write_text("\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n")
    return path


def write_gsm8k(path: Path, n: int = 40, seed: int = 0) -> Path:
    return write_jsonl(path, gsm8k_rows(n, seed))


def svamp_rows() -> list[dict]:
    return [
        {"ID": "chal-1", "Body": "Jack had 8 pens", "Question": "He gave 3 pens to Mary. How many pens does he have now?",
         "Equation": "( 8.0 - 3.0 )", "Answer": 5.0},
        {"ID": "chal-2", "Body": "Each box holds 4 cakes. There are 6 boxes.", "Question": "How many cakes are there?",
         "Equation": "( 4.0 * 6.0 )", "Answer": 24.0},
        {"ID": "chal-3", "Body": "A farmer had 11 cows and bought 3 more. Then he sold 9.",
         "Question": "How many cows does he have?", "Equation": "( ( 11.0 + 3.0 ) - 9.0 )", "Answer": 5.0},
        {"ID": "chal-4", "Body": "Sam read 10 pages on Monday and 7 on Tuesday.", "Question": "How many pages in all?",
         "Answer": 17},  # no Equation: it is optional
    ]


def build_chat_model(out: Path, texts: list[str], seed: int = 0, heads: int = 4) -> Path:
    """A ~0.1M-parameter Qwen2 causal LM with a byte-level BPE tokenizer that has a chat template and
    `<|im_end|>` as its EOS, saved without reasonlab.json: to reasonlab it is any downloaded model.
    `heads` query heads (half as many key/value heads) share the width of 64."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from engine.model.tokenizer import build_tokenizer

    tok = build_tokenizer(texts + ["user assistant"], vocab_size=300)
    tok.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tok.eos_token = "<|im_end|>"
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=512,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
                         tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config)
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def train_chat_model(out: Path, data: Path, heads: int = 4, steps: int = 150) -> Path:
    """build_chat_model, then taught the gsm8k file's solutions in its chat format (~5 s), so that
    it writes `#### N` answers and expert iteration finds correct samples."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.algorithms.sft import finetune
    from engine.model.prompts import Prompter
    from engine.tasks import get_task

    task = get_task("gsm8k", data=str(data))
    texts = [task.prompt(p) + p.reference for p in task.problems("all")] + [task.instruction]
    out = build_chat_model(out, texts, heads=heads)
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    prompter = Prompter(task, tok, "chat")
    finetune(model, tok, [(prompter(p), p.reference) for p in task.problems("train")], steps=steps, batch_size=16,
             lr=3e-3, seed=0)
    model.save_pretrained(out)
    return out


def one_run_store(path: Path, config: dict, texts: list[str], problem_id: str = "test-0"):
    """A store (at `path`) with one finished EI run of `config` whose step-0 checkpoint is evaluated
    on one problem with `texts` as its samples. Returns (store, run_id)."""
    from engine.store import Store

    store = Store(path)
    run_id = store.create_run("ei", {"base": "b", "rounds": 1, **config}, total=1, status="finished")
    checkpoint_id = store.add_checkpoint(run_id, 0, str(Path(path).parent / "step-0"))
    store.add_samples([{"run_id": run_id, "checkpoint_id": checkpoint_id, "step": 0, "kind": "eval",
                        "task": config.get("task", "multistep"), "split": "test", "problem_id": problem_id,
                        "sample_idx": i, "text": text, "answer": text.rsplit("#### ", 1)[-1], "correct": 1}
                       for i, text in enumerate(texts)])
    store.update_checkpoint_metrics(checkpoint_id, {"maj@1": 1.0, "pass@1": 1.0})
    return store, run_id
