"""Reward functions of the toy world for GRPO, named in a recipe as `lmforge.world.rewards:<function>`."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"\d+")


def numbers_used(prompts: list[list[dict]], completions: list[str], **columns) -> list[float]:
    """Share of the question's numbers that the reply's working uses: partial credit for setting a word problem
    up right, before any arithmetic is right (exact match alone is all but never earned by a model that copies
    the numbers wrong)."""
    scores = []
    for messages, completion in zip(prompts, completions):
        wanted = _NUMBER.findall(messages[-1]["content"])
        used = set(_NUMBER.findall(completion))
        scores.append(sum(number in used for number in wanted) / len(wanted) if wanted else 0.0)
    return scores
