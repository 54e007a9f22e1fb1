"""Prompt assembly shared by every task: few-shot examples, chat-template rendering and chain-of-thought."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

from lmforge.eval.task import Doc, Task

log = logging.getLogger("lmforge.eval")


@dataclass
class Prompt:
    """A doc's full prompt and its shared part (description and solved examples), which docs of a subject share."""

    prefix: str
    text: str


def build_prompts(task: Task, docs: list[Doc], k: int, cot: bool = False) -> list[Prompt]:
    """description + solved examples + the question, joined exactly as lm-eval joins them.

    The examples are the first k of the doc's subject in the dev split (lm-eval's `first_n` sampler), or in the
    evaluated docs when the task has no dev split; the doc itself never shows up.
    """
    pools: dict[str, list[Doc]] = defaultdict(list)
    for shot in task.fewshot_docs or task.docs:
        pools[shot.subject].append(shot)
    prompts, short = [], set()
    for doc in docs:
        shots = [shot for shot in pools[doc.subject][: k + 1] if shot.id != doc.id][:k]
        if len(shots) < k:
            short.add(doc.subject or task.name)
        prefix = task.description(doc) + "".join(s.shot(task.target_delimiter) + task.fewshot_delimiter for s in shots)
        text = prefix + doc.query
        if cot and task.cot_trigger:
            text += task.target_delimiter + task.cot_trigger
        prompts.append(Prompt(prefix, text))
    if short:
        log.warning("%s: fewer than %d examples to show for %s", task.name, k, ", ".join(sorted(short)))
    return prompts


def as_chat(tokenizer, prompt: str) -> str:
    """The prompt as one user turn of the model's own chat template, ready for the assistant's reply."""
    from lmforge.templates import render

    if not tokenizer.chat_template:
        raise ValueError("chat mode needs a tokenizer with a chat template")
    return render(tokenizer, [{"role": "user", "content": prompt}], tokenizer.chat_template, add_generation_prompt=True)
