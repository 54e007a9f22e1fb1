"""The running batch's KV cache, which rows join (after their own prefill) and leave between decode steps without
copying the rest; and the finished prompts' caches kept for reuse by later prompts."""

from __future__ import annotations

from collections import OrderedDict

import torch
from transformers.cache_utils import DynamicLayer

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys and values, batch x heads x tokens x dim


def new_cache(layers: Layers | None = None):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=layers) if layers else DynamicCache()


def cache_layers(cache) -> Layers:
    return [(layer.keys, layer.values) for layer in cache.layers]


class SlotLayer(DynamicLayer):
    """One layer's keys and values for the whole batch, in preallocated slots: each step writes its new column in
    place and attention reads a view of the live window, so no step copies the cache."""

    def __init__(self, batch: "BatchKV", index: int):
        super().__init__()
        self.batch, self.index = batch, index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        batch = self.batch
        keys, values = batch.stores[self.index]
        column = slice(batch.end, batch.end + key_states.shape[2])
        keys[: batch.rows, :, column] = key_states
        values[: batch.rows, :, column] = value_states
        live = slice(batch.start, column.stop)
        self.keys, self.values = keys[: batch.rows, :, live], values[: batch.rows, :, live]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.batch.end - self.batch.start


class BatchKV:
    """The decode batch's cache: rows 0..rows-1 of per-layer slot tensors (slots x heads x capacity x dim, both
    grown on demand up to `max_rows` slots, or sized at once for an expected batch), real tokens right-aligned at
    column `end`, left padding masked out. A row joins by copying its own prefill in; a row leaves by moving the
    last row into its slot; the window [start, end) slides right as tokens are added and is moved back (or the
    capacity doubled) when it reaches the end."""

    FIRST_SLOTS = 4
    SLACK = 16  # window columns beyond twice the longest row before the rows are packed

    def __init__(self, max_rows: int, first_row: Layers, expected: tuple[int, int] | None = None):
        """`expected` (rows, tokens per row), when known, sizes the slots at once instead of growing them."""
        self.max_rows, self.rows, self.start, self.end = max_rows, 0, 0, 0
        slots, capacity = min(max_rows, self.FIRST_SLOTS), 2 * first_row[0][0].shape[2] + 64
        if expected is not None:
            slots, capacity = min(max_rows, max(expected[0], 1)), max(capacity, expected[1] + 1)
        self.stores = [(_slots(keys, slots, capacity), _slots(values, slots, capacity)) for keys, values in first_row]
        self.mask = torch.zeros(slots, capacity, dtype=torch.long, device=first_row[0][0].device)
        from transformers import DynamicCache

        self.cache = DynamicCache()
        self.cache.layers = [SlotLayer(self, index) for index in range(len(first_row))]

    @property
    def capacity(self) -> int:
        return self.mask.shape[1]

    def join(self, row: Layers) -> None:
        """Copy in a prefilled row (batch 1, all tokens real) as row number `rows`."""
        length = row[0][0].shape[2]
        if self.rows == self.mask.shape[0]:
            self._resize(min(2 * self.rows, self.max_rows), self.capacity)
        if length > self.end:
            self._move_window(length - self.end)
        slot, columns = self.rows, slice(self.end - length, self.end)
        for (keys, values), (row_keys, row_values) in zip(self.stores, row):
            keys[slot, :, columns], values[slot, :, columns] = row_keys[0], row_values[0]
        self.mask[slot] = 0
        self.mask[slot, columns] = 1
        self.rows += 1
        self.start = min(self.start, columns.start) if self.rows > 1 else columns.start

    def leave(self, index: int) -> None:
        """Drop a row: the last row moves into its slot (callers reorder their rows the same way)."""
        last = self.rows - 1
        if index != last:
            window = slice(self.start, self.end)
            for keys, values in self.stores:
                keys[index, :, window], values[index, :, window] = keys[last, :, window], values[last, :, window]
            self.mask[index] = self.mask[last]
        self.rows = last
        if self.rows:
            self.start += int(self.mask[: self.rows, self.start : self.end].any(dim=0).long().argmax())

    def step_inputs(self, width: int = 1, fed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention mask and positions for a decode step of `width` columns (counted as real until `advance` says
        otherwise). `fed` (per row) is how many of them carry a row's own tokens; the pad columns after them repeat
        the last one's position, so no position runs past the row's own."""
        while self.end + width > self.capacity:
            self._make_room()
        self.mask[: self.rows, self.end : self.end + width] = 1
        mask = self.mask[: self.rows, self.start : self.end + width]
        before = self.mask[: self.rows, self.start : self.end].sum(dim=1, keepdim=True)
        offsets = torch.arange(width, device=mask.device).unsqueeze(0)
        if fed is not None:
            offsets = torch.minimum(offsets, fed.unsqueeze(1) - 1)
        return mask, before + offsets

    def advance(self, width: int = 1, kept: torch.Tensor | None = None) -> None:
        """Move past a step's `width` columns; `kept` (per row) says how many of them hold tokens the row keeps.
        The rest (rejected draft tokens, pads) are masked out, and once such holes make up half the window the
        rows are packed again."""
        if kept is not None:
            columns = torch.arange(width, device=self.mask.device)
            self.mask[: self.rows, self.end : self.end + width] = (columns < kept.unsqueeze(1)).long()
        self.end += width
        if kept is not None:
            longest = int(self.mask[: self.rows, self.start : self.end].sum(dim=1).max())
            if self.end - self.start > 2 * longest + self.SLACK:
                self._pack()

    def _pack(self) -> None:
        """Each row's real columns moved together, right-aligned at `end` (keys carry their rotary positions and
        positions are counted from the mask, so nothing else changes)."""
        window = slice(self.start, self.end)
        longest = 0
        for index in range(self.rows):
            columns = self.mask[index, window].nonzero().squeeze(1) + self.start
            packed = slice(self.end - columns.numel(), self.end)
            for keys, values in self.stores:
                keys[index, :, packed], values[index, :, packed] = keys[index, :, columns], values[index, :, columns]
            self.mask[index, window] = 0
            self.mask[index, packed] = 1
            longest = max(longest, columns.numel())
        self.start = self.end - longest

    def row(self, index: int, count: int) -> Layers:
        """The first `count` real tokens of one row, copied out (for the prefix cache)."""
        columns = self.mask[index, self.start : self.end].nonzero().squeeze(1)[:count] + self.start
        return [(keys[index : index + 1, :, columns], values[index : index + 1, :, columns])
                for keys, values in self.stores]

    def real_tokens(self, index: int) -> int:
        return int(self.mask[index, self.start : self.end].sum())

    def _make_room(self) -> None:
        """Slide the window back to column 0, or double the capacity if the window fills it."""
        if self.start == 0:
            self._resize(self.mask.shape[0], 2 * self.capacity)
        else:
            self._move_window(-self.start)

    def _move_window(self, offset: int) -> None:
        if self.end + offset > self.capacity:
            self._resize(self.mask.shape[0], 2 * (self.end + offset))
        source, target = slice(self.start, self.end), slice(self.start + offset, self.end + offset)
        rows = slice(0, self.rows)
        for keys, values in self.stores:
            keys[rows, :, target], values[rows, :, target] = keys[rows, :, source].clone(), values[rows, :, source].clone()
        moved = self.mask[rows, source].clone()
        self.mask[rows] = 0
        self.mask[rows, target] = moved
        self.start, self.end = self.start + offset, self.end + offset

    def _resize(self, slots: int, capacity: int) -> None:
        self.stores = [(_grown(keys, slots, capacity), _grown(values, slots, capacity)) for keys, values in self.stores]
        self.mask = _grown_mask(self.mask, slots, capacity)


def _slots(like: torch.Tensor, slots: int, capacity: int) -> torch.Tensor:
    return like.new_zeros(slots, like.shape[1], capacity, like.shape[3])


def _grown(tensor: torch.Tensor, slots: int, capacity: int) -> torch.Tensor:
    """Slots x heads x capacity x dim, the old contents in the top-left corner."""
    grown = tensor.new_zeros(slots, tensor.shape[1], capacity, tensor.shape[3])
    grown[: tensor.shape[0], :, : tensor.shape[2]] = tensor
    return grown


def _grown_mask(mask: torch.Tensor, slots: int, capacity: int) -> torch.Tensor:
    grown = mask.new_zeros(slots, capacity)
    grown[: mask.shape[0], : mask.shape[1]] = mask
    return grown


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
