"""From token lists to training batches: truncation, chunking, packing and padding, as pure functions."""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

import torch

from lmforge.templates import IGNORE_INDEX, Encoded

PACKING_SEED = 0  # rows are fixed by the data alone; the Trainer shuffles their order with train.seed


def truncate(example: Encoded, max_length: int, policy: str) -> Encoded | None:
    """`right` keeps the start, `left` keeps the end, `drop` discards long examples (returns None)."""
    if len(example.input_ids) <= max_length:
        return example
    if policy == "drop":
        return None
    window = slice(0, max_length) if policy == "right" else slice(-max_length, None)
    return Encoded(example.input_ids[window], example.labels[window])


def chunk(example: Encoded, max_length: int) -> list[Encoded]:
    """Split a long pretraining document into pieces that each fit one sequence."""
    return [
        Encoded(example.input_ids[i : i + max_length], example.labels[i : i + max_length])
        for i in range(0, len(example.input_ids), max_length)
    ]


def has_targets(example: Encoded) -> bool:
    return any(label != IGNORE_INDEX for label in example.labels[1:])


@dataclass
class Row:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)


def unpacked(example: Encoded) -> Row:
    return Row(example.input_ids, example.labels, list(range(len(example.input_ids))))


def pack(examples: list[Encoded], max_length: int) -> list[Row]:
    """Best-fit packing in a seeded random order: each example goes into the fullest row it fits. Sorting by length
    first (best-fit-decreasing) fills rows a little better but fills each row with examples of one length, often of
    one kind, and training on such rows converges worse. Positions restart at every example, which transformers
    turns into a block-diagonal mask, and each example's first label is ignored so no token is predicted across a
    boundary."""
    order = list(examples)
    random.Random(PACKING_SEED).shuffle(order)
    bins: list[list[Encoded]] = []
    free: list[tuple[int, int]] = []
    for example in order:
        size = len(example.input_ids)
        slot = bisect.bisect_left(free, (size, -1))
        if slot < len(free):
            room, index = free.pop(slot)
        else:
            room, index = max_length, len(bins)
            bins.append([])
        bins[index].append(example)
        bisect.insort(free, (room - size, index))
    return [_join(members) for members in bins]


def _join(members: list[Encoded]) -> Row:
    row = Row([], [], [])
    for example in members:
        row.input_ids += example.input_ids
        row.labels += [IGNORE_INDEX] + example.labels[1:]
        row.position_ids += list(range(len(example.input_ids)))
    return row


class Collator:
    """Pads a list of rows into tensors. Packed batches carry position_ids and no attention mask, so
    transformers derives per-example attention; padding becomes one more masked-out segment."""

    def __init__(self, pad_id: int, packed: bool):
        self.pad_id = pad_id
        self.packed = packed

    def __call__(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        width = max(len(row) for row in rows)
        batch = {
            "input_ids": [row.input_ids + [self.pad_id] * (width - len(row)) for row in rows],
            "labels": [row.labels + [IGNORE_INDEX] * (width - len(row)) for row in rows],
        }
        if self.packed:
            batch["position_ids"] = [row.position_ids + list(range(width - len(row))) for row in rows]
        else:
            batch["attention_mask"] = [[1] * len(row) + [0] * (width - len(row)) for row in rows]
        return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}


def left_pad(prompts: list[list[int]], pad_id: int, device) -> dict:
    """Prompts of different lengths as one batch for generation: padding on the left, so every row ends at its
    last real token."""
    width = max(len(p) for p in prompts)
    ids = [[pad_id] * (width - len(p)) + list(p) for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return {
        "input_ids": torch.tensor(ids, device=device),
        "attention_mask": torch.tensor(mask, device=device),
    }
