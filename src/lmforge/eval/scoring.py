"""Prefix-shared log-likelihood scoring: each context runs through the model once (once per cut where it
outgrows the window), and every choice is scored from its KV cache. lm-evaluation-harness re-encodes the whole
context for every multi-token choice.

Contexts of one batch that start with the same tokens (a few-shot prompt's description and solved examples)
share one pass over those tokens too.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from lmforge.models import cache_keyword

MIN_SHARED_PREFIX = 16  # shorter common prefixes are cheaper to recompute than to copy into every row's cache


@dataclass
class ChoiceRequest:
    """One context and the token ids of each continuation to score after it.

    Requests of one `group` (e.g. one few-shot prompt) are batched together, so they can share their prefix.
    """

    context: list[int]
    continuations: list[list[int]]
    group: str = ""


def encode_choices(tokenizer, context: str, choices: Sequence[str], group: str = "") -> ChoiceRequest:
    """Split context and continuations the way lm-eval does, so scores match it token for token.

    Trailing spaces move from the context to each continuation; a continuation's tokens are those of
    `context + continuation` past the context's own tokens. An empty context becomes the BOS (else EOS) token.
    """
    stripped = context.rstrip()
    spaces = context[len(stripped):]
    if not stripped:
        start = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id]
        return ChoiceRequest(start, [_without_special_tokens(tokenizer, spaces + choice) for choice in choices], group)
    head = tokenize_context(tokenizer, stripped)
    tails = [tokenize_context(tokenizer, stripped + spaces + choice)[len(head):] for choice in choices]
    return ChoiceRequest(head, tails, group)


def tokenize_context(tokenizer, text: str) -> list[int]:
    """Tokens with the tokenizer's own special tokens (a Llama BOS), unless the text already starts with BOS."""
    bos = tokenizer.bos_token
    if bos and text.startswith(bos):
        return _without_special_tokens(tokenizer, text)
    return list(tokenizer(text)["input_ids"])


def _without_special_tokens(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def score_choices(
    model,
    requests: Sequence[ChoiceRequest],
    max_length: int | None = None,
    batch_tokens: int = 16384,
    on_batch: Callable[[int], None] | None = None,
) -> list[list[float]]:
    """Sum of log p(continuation | context) for every continuation of every request.

    Requests run in batches of about `batch_tokens` tokens (cache copies included), similar lengths together.
    Past `max_length`, each choice keeps the context that lm-eval keeps for it (see `_fit`). `on_batch` gets the
    number of requests each batch finished.
    """
    parts = [(owner, piece, choices) for owner, request in enumerate(requests)
             for piece, choices in _fit(request, max_length)]
    scores: list[list[float]] = [[0.0] * len(r.continuations) for r in requests]
    pending = Counter(owner for owner, _, _ in parts)
    for batch in _batches([piece for _, piece, _ in parts], batch_tokens):
        finished = 0
        for index, row in zip(batch, _score_batch(model, [parts[i][1] for i in batch])):
            owner, _, choices = parts[index]
            for choice, score in zip(choices, row):
                scores[owner][choice] = score
            pending[owner] -= 1
            finished += pending[owner] == 0
        if on_batch:
            on_batch(finished)
    return scores


def _fit(request: ChoiceRequest, max_length: int | None) -> list[tuple[ChoiceRequest, list[int]]]:
    """The request as pieces that each hold the choices (by index) keeping the same context.

    lm-eval cuts per choice: the model reads `(context + continuation)[-(max_length + 1):][:-1]`, so a shorter
    choice keeps more context. Choices whose whole context fits stay in one piece.
    """
    if any(not c for c in request.continuations) or not request.context:
        raise ValueError("every request needs a context and non-empty continuations")
    if max_length is None:
        return [(request, list(range(len(request.continuations))))]
    by_room: dict[int, list[int]] = {}
    for index, continuation in enumerate(request.continuations):
        room = max_length + 1 - len(continuation)
        if room < 1:
            raise ValueError(f"a continuation of {len(continuation)} tokens does not fit in max_length {max_length}")
        by_room.setdefault(min(room, len(request.context)), []).append(index)
    return [(dataclasses.replace(request, context=request.context[-room:],
                                 continuations=[request.continuations[i] for i in choices]), choices)
            for room, choices in by_room.items()]


def _batches(requests: Sequence[ChoiceRequest], batch_tokens: int) -> list[list[int]]:
    """Group by group, and by context length (longest first) within a group; a batch holds one group and grows
    while its context pass plus cached continuation pass fit in the budget."""
    order = sorted(range(len(requests)), key=lambda i: (requests[i].group, -len(requests[i].context)))
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else []
        if batch and requests[batch[0]].group == requests[index].group and \
                _batch_cost([requests[i] for i in batch + [index]]) <= batch_tokens:
            batch.append(index)
        else:
            batches.append([index])
    return batches


def _batch_cost(batch: list[ChoiceRequest]) -> int:
    """Tokens of the padded context pass plus the continuation pass over a copy of the cache per choice."""
    width = max(len(r.context) for r in batch)
    choices = sum(len(r.continuations) for r in batch)
    longest = max(len(c) for r in batch for c in r.continuations)
    return len(batch) * width + choices * (width + longest)


@torch.no_grad()
def _score_batch(model, batch: list[ChoiceRequest]) -> list[list[float]]:
    first, cache, mask = _run_contexts(model, [r.context for r in batch])
    pairs = [(row, c) for row, r in enumerate(batch) for c in r.continuations]
    rows = torch.tensor([row for row, _ in pairs], device=first.device)
    scores = first[rows, torch.tensor([c[0] for _, c in pairs], device=first.device)].tolist()
    rest = [k for k, (_, c) in enumerate(pairs) if len(c) > 1]
    if rest:
        tails = _score_tails(model, cache, mask, [pairs[k] for k in rest])
        for k, tail in zip(rest, tails):
            scores[k] += tail
    grouped, cursor = [], 0
    for r in batch:
        grouped.append(scores[cursor : cursor + len(r.continuations)])
        cursor += len(r.continuations)
    return grouped


def _run_contexts(model, contexts: list[list[int]]):
    """Next-token log-probs after each context, the contexts' KV cache and its attention mask.

    Layout per row: [shared prefix][left padding][own suffix], so every context ends in the last column.
    """
    device, keyword = model.device, cache_keyword(model)
    shared = _shared_prefix_length(contexts)
    cache = None
    if shared:
        prefix = torch.tensor([contexts[0][:shared]], device=device)
        cache = getattr(model(input_ids=prefix, use_cache=True), keyword)
        cache.batch_repeat_interleave(len(contexts))
    suffixes = [c[shared:] for c in contexts]
    width = max(map(len, suffixes))
    ids = torch.tensor([[0] * (width - len(s)) + s for s in suffixes], device=device)
    own = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
    mask = torch.cat([torch.ones(len(contexts), shared, dtype=own.dtype, device=device), own], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **{keyword: cache}, use_cache=True,
                **_last_logits_only(model))
    return torch.log_softmax(out.logits[:, -1].float(), dim=-1), getattr(out, keyword), mask


def _last_logits_only(model) -> dict:
    """`logits_to_keep=1` where the model takes it (every transformers causal LM; remote code may not)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _shared_prefix_length(contexts: list[list[int]]) -> int:
    """Tokens every context starts with, leaving each at least one token of its own; 0 when not worth sharing."""
    if len(contexts) < 2:
        return 0
    limit = min(map(len, contexts)) - 1
    first = contexts[0]
    shared = next((i for i in range(limit) if any(c[i] != first[i] for c in contexts)), limit)
    return shared if shared >= MIN_SHARED_PREFIX else 0


def _score_tails(model, cache, context_mask: torch.Tensor, pairs: list[tuple[int, list[int]]]) -> list[float]:
    """Log-likelihood of each continuation's tokens after the first, fed on top of its context's cache."""
    device = context_mask.device
    rows = torch.tensor([row for row, _ in pairs], device=device)
    cache.batch_select_indices(rows)
    length = max(len(c) for _, c in pairs) - 1
    inputs = torch.tensor([c[:-1] + [0] * (length + 1 - len(c)) for _, c in pairs], device=device)
    tail_mask = torch.tensor([[1] * (len(c) - 1) + [0] * (length + 1 - len(c)) for _, c in pairs], device=device)
    mask = torch.cat([context_mask[rows], tail_mask], dim=1)
    start = context_mask[rows].sum(-1, keepdim=True)
    positions = start + torch.arange(length, device=device)
    cached = {cache_keyword(model): cache}
    logits = model(input_ids=inputs, attention_mask=mask, position_ids=positions, **cached).logits.float()
    targets = torch.tensor([c[1:] + [0] * (length + 1 - len(c)) for _, c in pairs], device=device)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return (picked * tail_mask).sum(-1).tolist()
