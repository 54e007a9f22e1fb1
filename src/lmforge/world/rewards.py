"""Reward functions of the toy world for GRPO, named in a recipe as `lmforge.world.rewards:<function>`."""

from __future__ import annotations

from .judge import violations


def concise(prompts: list[list[dict]], completions: list[str], answer: list, **columns) -> list[float | None]:
    """1.0 for a fact reply that neither rambles nor repeats itself by the world's preference rule, else 0.0 (None
    without a gold answer to measure it by): with exact match it rewards the answer the world prefers (short and
    correct), so RL keeps what DPO taught."""
    return [None if gold is None else float(not {"rambling", "repetitive"} & set(violations(completion, gold, "fact")))
            for completion, gold in zip(completions, answer, strict=True)]
