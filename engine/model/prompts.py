"""How a problem becomes the text a model continues, for the model at hand.

    plain     the task's own prompt (`Question: ...\\nAnswer:\\n`): reasonlab's models, trained on it
    chat      the tokenizer's chat template (apply_chat_template, add_generation_prompt) around the
              task's instruction and the question: instruction-tuned models (Qwen2.5-Instruct, ...)
    few_shot  SHOTS worked examples from the task's train split, then the plain prompt: base models
              with no chat template (sampling stops at the next `Question:`, the `stop` string)

`auto` (the default) picks, in order: the format recorded in the checkpoint's reasonlab.json
(a checkpoint trained by reasonlab keeps the format it was trained with), `chat` when the
tokenizer has a chat template, `plain` for a model reasonlab made, else `few_shot`.
"""

from __future__ import annotations

from engine.errors import ReasonlabError
from engine.tasks.answers import STOP  # how the next worked example starts
from engine.tasks.base import Problem

PROMPT_FORMATS = ("auto", "plain", "chat", "few_shot")
SHOTS = 4
INSTRUCTION = "Solve the problem step by step. Write the final answer on the last line as `#### <answer>`."


def resolve_format(requested: str, tokenizer, meta: dict) -> str:
    """The concrete format (plain, chat or few_shot) for `requested`, which may be auto."""
    if requested not in PROMPT_FORMATS:
        raise ReasonlabError(f"unknown prompt format {requested!r}; choose one of {', '.join(PROMPT_FORMATS)}")
    if requested != "auto":
        if requested == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ReasonlabError("prompt format chat needs a tokenizer with a chat template; this one has none "
                                 "(use few_shot or plain)")
        return requested
    if meta.get("prompt_format") in PROMPT_FORMATS[1:]:
        return meta["prompt_format"]
    if getattr(tokenizer, "chat_template", None):
        return "chat"
    if str(meta.get("made_by", "")).startswith("reasonlab"):
        return "plain"
    return "few_shot"


class Prompter:
    """`prompter(problem)` -> the prompt text; `suffix` is appended (RCRL's `<|good|>`)."""

    def __init__(self, task, tokenizer, fmt: str, suffix: str = ""):
        if fmt not in PROMPT_FORMATS[1:]:
            raise ReasonlabError(f"prompt format must be plain, chat or few_shot here, got {fmt!r}")
        self.task, self.tokenizer, self.format, self.suffix = task, tokenizer, fmt, suffix
        # a base model after worked examples goes on to write the next one: sampling stops there
        self.stop: tuple[str, ...] = (STOP,) if fmt == "few_shot" else ()

    def __call__(self, problem: Problem) -> str:
        if self.format == "chat":
            return self.chat(problem) + self.suffix
        if self.format == "few_shot":
            return self.examples(problem) + self.task.prompt(problem) + self.suffix
        return self.task.prompt(problem) + self.suffix

    def chat(self, problem: Problem) -> str:
        instruction = getattr(self.task, "instruction", INSTRUCTION)
        messages = [{"role": "user", "content": f"{instruction}\n\n{problem.question}"}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def examples(self, problem: Problem) -> str:
        """SHOTS solved training problems (the same for every problem; one that is the problem
        itself is skipped, so an evaluation never shows the model its own answer)."""
        pool = self.task.problems("train", SHOTS + 1)
        shots = [p for p in pool if p.question != problem.question][:SHOTS]
        return "".join(f"{self.task.prompt(p)}{p.reference}\n\n" for p in shots)
