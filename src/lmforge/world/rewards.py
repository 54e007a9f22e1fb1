"""Reward functions of the toy world for GRPO, named in a recipe as `lmforge.world.rewards:<function>`."""

from __future__ import annotations

from .judge import violations


def concise(prompts: list[list[dict]], completions: list[str], answer: list[str], **columns) -> list[float]:
    """1.0 for a fact reply that neither rambles nor repeats itself by the world's preference rule, else 0.0: with
    exact match it rewards the answer the world prefers (short and correct), so RL keeps what DPO taught."""
    return [float(not {"rambling", "repetitive"} & set(violations(completion, gold, "fact")))
            for completion, gold in zip(completions, answer, strict=True)]
