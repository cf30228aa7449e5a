"""A small byte-level BPE tokenizer for a task's text, built with HF `tokenizers`.

Digits are always single tokens, so numbers are spelled digit by digit (arithmetic a tiny model
can learn); the rest is BPE merged from the task's own prompts and solutions. Saved as a
`PreTrainedTokenizerFast`, so `AutoTokenizer.from_pretrained(dir)` loads it offline.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS, PAD = "<|endoftext|>", "<|pad|>"
# Reserved now so that later algorithms (return-conditioned RL) need no embedding resize.
RESERVED = ["<|good|>", "<|bad|>"]


def corpus(task, n: int = 4000, seed: int = 0) -> list[str]:
    """Prompts and solutions of every split, the text the tokenizer must cover."""
    rng = random.Random(seed)
    texts = []
    for split in task.splits:
        for p in task.problems(split, n if split == "train" else n // 8):
            texts.append(task.prompt(p) + task.sample_solution(p, rng))
    return texts


def build_tokenizer(texts: list[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD, *RESERVED],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=RESERVED, padding_side="left",
                                   clean_up_tokenization_spaces=False)
