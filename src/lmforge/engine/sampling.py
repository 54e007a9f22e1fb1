"""Choosing each sequence's next token from a batch of logits, every row with its own settings.

Greedy rows take the argmax of the raw logits, which is what HF `generate` does, so temperature 0 matches it token
for token. Sampled rows draw from their own seeded generator, so a seed gives the same text whatever else shares
the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    grammar: str | None = None  # a llguidance grammar the reply must follow (JSON mode, forced tool calls)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def penalised(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)


@dataclass
class RowState:
    """What sampling needs to remember about one sequence between steps."""

    params: SamplingParams
    prompt_ids: list[int]
    generator: torch.Generator | None = None
    counts: dict[int, int] = field(default_factory=dict)
    matcher: object = None
    lookup: object = None  # the sequence's prompt-lookup Drafter, once it drafts

    def record(self, token: int) -> None:
        self.counts[token] = self.counts.get(token, 0) + 1


@dataclass
class Picked:
    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)


def new_generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def pick_tokens(logits: torch.Tensor, rows: list[RowState]) -> list[Picked]:
    """One token per row of `logits` (batch x vocab, any float dtype)."""
    logits = logits.float()
    raw = logits
    if any(row.params.penalised for row in rows):
        logits = logits.clone()
        for index, row in enumerate(rows):
            if row.params.penalised:
                _penalise(logits[index], row)
    if any(row.matcher is not None for row in rows):
        logits = _constrain(logits if logits is not raw else logits.clone(), rows)
    tokens = logits.argmax(dim=-1)
    sampled = [index for index, row in enumerate(rows) if not row.params.greedy]
    if sampled:
        tokens[sampled] = _sample(logits[sampled], [rows[index] for index in sampled])
    picked = [Picked(int(token)) for token in tokens.tolist()]
    wanted = [index for index, row in enumerate(rows) if row.params.logprobs]
    if wanted:
        _attach_logprobs(raw[wanted], [picked[index] for index in wanted], [rows[index] for index in wanted])
    return picked


def _penalise(row_logits: torch.Tensor, row: RowState) -> None:
    """OpenAI's presence/frequency penalties over the reply so far; HF's repetition penalty over prompt and reply."""
    params = row.params
    device = row_logits.device
    if row.counts and (params.presence_penalty or params.frequency_penalty):
        ids = torch.tensor(list(row.counts), device=device)
        counts = torch.tensor(list(row.counts.values()), dtype=row_logits.dtype, device=device)
        row_logits[ids] -= params.frequency_penalty * counts + params.presence_penalty
    if params.repetition_penalty != 1.0:
        ids = torch.tensor(sorted(set(row.prompt_ids) | set(row.counts)), dtype=torch.long, device=device)
        seen = row_logits[ids]
        row_logits[ids] = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)


def _constrain(logits: torch.Tensor, rows: list[RowState]) -> torch.Tensor:
    """Tokens the grammar forbids get -inf. llguidance fills a bitmask (32 tokens per int32); it is unpacked here
    with plain tensor ops (llguidance's own helper is a torch.compile kernel: seconds to build, and a C++ compiler
    needed at run time)."""
    import llguidance.torch as guidance

    constrained = [index for index, row in enumerate(rows) if row.matcher is not None]
    words = guidance.allocate_token_bitmask(len(constrained), logits.shape[-1])
    for slot, index in enumerate(constrained):
        guidance.fill_next_token_bitmask(rows[index].matcher, words, slot)
    words = words.to(logits.device)
    bits = (words.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32, device=logits.device)) & 1
    allowed = bits.flatten(1)[:, : logits.shape[-1]].bool()
    logits[constrained] = logits[constrained].masked_fill(~allowed, float("-inf"))
    return logits


def _sample(logits: torch.Tensor, rows: list[RowState]) -> torch.Tensor:
    device = logits.device
    temperature = torch.tensor([row.params.temperature for row in rows], device=device).unsqueeze(1)
    logits = logits / temperature
    top_k = [row.params.top_k for row in rows]
    top_p = torch.tensor([row.params.top_p for row in rows], device=device).unsqueeze(1)
    if any(top_k) or bool((top_p < 1).any()):
        logits = _top_k_top_p(logits, top_k, top_p)
    cumulative = torch.softmax(logits, dim=-1).cumsum(dim=-1)
    draws = torch.cat([torch.rand(1, generator=row.generator) for row in rows]).to(device).unsqueeze(1)
    tokens = torch.searchsorted(cumulative, draws * cumulative[:, -1:], right=True).squeeze(1)
    return tokens.clamp_(max=logits.shape[-1] - 1)


def _top_k_top_p(logits: torch.Tensor, top_k: list[int], top_p: torch.Tensor) -> torch.Tensor:
    ordered, order = logits.sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    ranks = torch.arange(vocab, device=logits.device).unsqueeze(0)
    keep_k = ranks < torch.tensor([k if k > 0 else vocab for k in top_k], device=logits.device).unsqueeze(1)
    probs = torch.softmax(ordered, dim=-1)
    keep_p = (probs.cumsum(dim=-1) - probs) < top_p  # the token that crosses top_p stays
    ordered = ordered.masked_fill(~(keep_k & keep_p), float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)


def _attach_logprobs(raw: torch.Tensor, picked: list[Picked], rows: list[RowState]) -> None:
    """Log-probabilities under the model's own distribution (before sampling settings), as OpenAI reports them."""
    logprobs = torch.log_softmax(raw, dim=-1)
    width = max(row.params.top_logprobs for row in rows)
    top_values, top_ids = logprobs.topk(width, dim=-1) if width else (None, None)
    for index, (pick, row) in enumerate(zip(picked, rows)):
        pick.logprob = float(logprobs[index, pick.token])
        if row.params.top_logprobs:
            count = row.params.top_logprobs
            pick.top = list(zip(top_ids[index, :count].tolist(), top_values[index, :count].tolist()))
