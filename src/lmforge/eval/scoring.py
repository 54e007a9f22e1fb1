"""Log-likelihood of continuations given contexts, batched by length."""

from __future__ import annotations

from typing import Sequence

import torch


def loglikelihoods(
    model, pad_id: int, requests: Sequence[tuple[list[int], list[int]]], batch_size: int = 32
) -> list[float]:
    """Sum of log p(continuation | context) for each (context_ids, continuation_ids) pair."""
    if any(not context or not continuation for context, continuation in requests):
        raise ValueError("every request needs a non-empty context and continuation (prepend BOS to empty contexts)")
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]) - len(requests[i][1]))
    scores = [0.0] * len(requests)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for index, score in zip(chunk, _score_batch(model, pad_id, [requests[i] for i in chunk])):
            scores[index] = score
    return scores


def _score_batch(model, pad_id: int, batch: list[tuple[list[int], list[int]]]) -> list[float]:
    sequences = [context + continuation for context, continuation in batch]
    width = max(len(s) for s in sequences)
    ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in sequences], device=model.device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=model.device)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    scores = []
    for row, (context, continuation) in enumerate(batch):
        positions = torch.arange(len(context) - 1, len(context) + len(continuation) - 1, device=model.device)
        targets = torch.tensor(continuation, device=model.device)
        scores.append(logprobs[row, positions, targets].sum().item())
    return scores
