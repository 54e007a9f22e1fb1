"""The running batch's KV cache: left-padded rows in one transformers `DynamicCache`, which rows join (after their
own prefill) and leave between decode steps; and the finished prompts' caches kept for reuse by later prompts."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, batch x heads x tokens x dim


def new_cache(layers: Layers | None = None):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()


def cache_layers(cache) -> Layers:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _set_layers(cache, layers: Layers) -> None:
    for layer, (keys, values) in zip(cache.layers, layers):
        layer.keys, layer.values = keys, values


@dataclass
class BatchKV:
    """The decode batch: its cache and the attention mask (1 = a real token; padding sits on the left)."""

    cache: object
    mask: torch.Tensor

    @property
    def width(self) -> int:
        return self.mask.shape[1]

    @classmethod
    def start(cls, rows: list[Layers]) -> "BatchKV":
        mask, layers = _merge(None, rows)
        return cls(new_cache(layers), mask)

    def join(self, rows: list[Layers]) -> None:
        """Append prefilled rows (each batch 1, all tokens real), left-padding whichever side is shorter."""
        self.mask, layers = _merge((self.mask, cache_layers(self.cache)), rows)
        _set_layers(self.cache, layers)

    def keep(self, rows: list[int]) -> None:
        """Drop every other row, then the padding columns no row needs any more."""
        index = torch.tensor(rows, dtype=torch.long)
        self.mask = self.mask[index]
        start = int(self.mask.any(dim=0).long().argmax()) if rows else self.width
        self.mask = self.mask[:, start:]
        _set_layers(self.cache, [(keys[index, :, start:], values[index, :, start:])
                                 for keys, values in cache_layers(self.cache)])

    def grow(self) -> torch.Tensor:
        """The mask for a decode step: one more real column for the token each row is fed."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        return self.mask

    def row(self, index: int) -> Layers:
        """One row's real tokens, copied out (for the prefix cache)."""
        length = int(self.mask[index].sum())
        return [(keys[index : index + 1, :, self.width - length :].clone(),
                 values[index : index + 1, :, self.width - length :].clone())
                for keys, values in cache_layers(self.cache)]


def _merge(batch: tuple[torch.Tensor, Layers] | None, rows: list[Layers]) -> tuple[torch.Tensor, Layers]:
    parts = ([batch] if batch else []) + [(torch.ones(1, row[0][0].shape[2], dtype=torch.long), row) for row in rows]
    width = max(mask.shape[1] for mask, _ in parts)
    mask = torch.cat([_left_pad_mask(part_mask, width) for part_mask, _ in parts])
    layers = [
        (torch.cat([_left_pad(layers[index][0], width) for _, layers in parts]),
         torch.cat([_left_pad(layers[index][1], width) for _, layers in parts]))
        for index in range(len(parts[0][1]))
    ]
    return mask, layers


def _left_pad(tensor: torch.Tensor | None, width: int) -> torch.Tensor:
    if tensor.shape[2] == width:
        return tensor
    pad = tensor.new_zeros(tensor.shape[0], tensor.shape[1], width - tensor.shape[2], tensor.shape[3])
    return torch.cat([pad, tensor], dim=2)


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([mask.new_zeros(mask.shape[0], width - mask.shape[1]), mask], dim=1)


class PrefixCache:
    """KV caches of finished sequences, keyed by their tokens; a new prompt starts from the longest shared prefix
    instead of recomputing it (a system prompt, or the earlier turns of a conversation). Least recently used
    entries go first once `budget` tokens are held."""

    MIN_REUSE = 16  # shorter shared prefixes are cheaper to recompute than to copy

    def __init__(self, budget: int):
        self.budget = budget
        self.entries: OrderedDict[tuple, tuple[list[int], Layers]] = OrderedDict()
        self.held = 0
        self.hits = 0
        self.reused_tokens = 0

    def store(self, key: str | None, tokens: list[int], layers: Layers) -> None:
        if self.budget < len(tokens) or len(tokens) < self.MIN_REUSE:
            return
        entry_key = (key, tuple(tokens))
        if entry_key in self.entries:
            self.entries.move_to_end(entry_key)
            return
        self.entries[entry_key] = (tokens, layers)
        self.held += len(tokens)
        while self.held > self.budget:
            _, (old_tokens, _) = self.entries.popitem(last=False)
            self.held -= len(old_tokens)

    def lookup(self, key: str | None, prompt: list[int]) -> tuple[int, Layers | None]:
        """The longest cached prefix of `prompt` (leaving at least its last token to compute) and its KV."""
        best, best_key = 0, None
        for entry_key, (tokens, _) in self.entries.items():
            if entry_key[0] == key:
                shared = _shared_prefix(tokens, prompt)
                if shared > best:
                    best, best_key = shared, entry_key
        best = min(best, len(prompt) - 1)
        if best < self.MIN_REUSE:
            return 0, None
        self.entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return best, [(keys[:, :, :best], values[:, :, :best]) for keys, values in self.entries[best_key][1]]


def _shared_prefix(a: list[int], b: list[int]) -> int:
    import numpy as np

    length = min(len(a), len(b))
    differs = np.flatnonzero(np.asarray(a[:length]) != np.asarray(b[:length]))
    return int(differs[0]) if differs.size else length
