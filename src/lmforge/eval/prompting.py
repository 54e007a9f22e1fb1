"""Prompt assembly shared by every task: few-shot examples, chat-template rendering and chain-of-thought."""

from __future__ import annotations

from lmforge.eval.task import Doc, Task


def fewshot_examples(task: Task, doc: Doc, k: int) -> list[Doc]:
    """The first k dev examples of the doc's subject (lm-eval's `first_n`); the doc itself never shows up."""
    pool = task.fewshot_docs or task.docs
    same_subject = [d for d in pool if d.subject == doc.subject and d.id != doc.id]
    return same_subject[:k]


def prompt_prefix(task: Task, doc: Doc, k: int) -> str:
    """Description and solved examples: the part of the prompt that docs of one subject share."""
    shots = "".join(shot.shot(task.target_delimiter) + task.fewshot_delimiter for shot in fewshot_examples(task, doc, k))
    return task.description(doc) + shots


def build_prompt(task: Task, doc: Doc, k: int, cot: bool = False) -> str:
    """description + solved examples + the question, joined exactly as lm-eval joins them."""
    prompt = prompt_prefix(task, doc, k) + doc.query
    if cot and task.cot_trigger:
        prompt += task.target_delimiter + task.cot_trigger
    return prompt


def as_chat(tokenizer, prompt: str) -> str:
    """The prompt as one user turn of the model's own chat template, ready for the assistant's reply."""
    from lmforge.templates import render

    if not tokenizer.chat_template:
        raise ValueError("chat mode needs a tokenizer with a chat template")
    return render(tokenizer, [{"role": "user", "content": prompt}], tokenizer.chat_template, add_generation_prompt=True)
