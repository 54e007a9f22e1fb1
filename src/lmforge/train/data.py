"""Turn a recipe's data files into training rows, through the shared template, truncation and packing functions."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from lmforge.data import DataError, detect_schema, expand_paths, load_records
from lmforge.sequences import Row, chunk, has_targets, pack, truncate, unpacked
from lmforge.templates import Encoded, encode_chat

log = logging.getLogger("lmforge.train")

SUBSET_SEED = 0


@dataclass
class Prepared:
    rows: list[Row]
    files: list[Path]
    stats: dict


def encode_text(tokenizer, text: str) -> Encoded:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return Encoded(ids, list(ids))


def prepare(paths: list[str], stage: str, data_cfg, tokenizer, template: str, packing: bool,
            fraction: float = 1.0) -> Prepared:
    """Rows from the files; `fraction` keeps that share of the examples (data.fraction, for training data)."""
    files = expand_paths(paths)
    examples, skipped = [], 0
    for path in files:
        schema = data_cfg.format if data_cfg.format != "auto" else detect_schema(path, _default_format(stage))
        loaded = load_records([path], schema, data_cfg.on_error)
        skipped += loaded.skipped
        examples += [_encode(record, tokenizer, template, data_cfg.system) for record in loaded.records]
    kept, dropped = _fit(subset(examples, fraction), stage, data_cfg)
    if not kept:
        raise DataError(str(files[0]), f"no trainable examples left after truncation to {data_cfg.max_length} tokens")
    rows = pack(kept, data_cfg.max_length) if packing else [unpacked(example) for example in kept]
    if skipped or dropped:
        log.warning("data: skipped %d malformed records; dropped %d examples (too long under truncation=drop, "
                    "or nothing left to train on)", skipped, dropped)
    stats = {"examples": len(kept), "rows": len(rows), "tokens": sum(len(row) for row in rows),
             "skipped_records": skipped, "dropped_examples": dropped}
    return Prepared(rows, files, stats)


def subset(examples: list, fraction: float) -> list:
    """The first share of one fixed shuffle, in the original order: a smaller fraction is part of every larger one."""
    if fraction >= 1:
        return examples
    order = list(range(len(examples)))
    random.Random(SUBSET_SEED).shuffle(order)
    keep = sorted(order[: max(1, math.ceil(fraction * len(examples)))])
    return [examples[i] for i in keep]


def _default_format(stage: str) -> str:
    return "text" if stage == "pretrain" else "messages"


def _encode(record: dict, tokenizer, template: str, system: str | None) -> Encoded:
    if "text" in record:
        return encode_text(tokenizer, record["text"])
    messages = record["messages"]
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    return encode_chat(tokenizer, messages, template)


def _fit(examples: list[Encoded], stage: str, data_cfg) -> tuple[list[Encoded], int]:
    """Pretraining documents are split into max_length chunks; chat examples follow the truncation policy."""
    if stage == "pretrain":
        pieces = [piece for example in examples for piece in chunk(example, data_cfg.max_length)]
        return [piece for piece in pieces if len(piece.input_ids) > 1], 0
    fitted = [truncate(example, data_cfg.max_length, data_cfg.truncation) for example in examples]
    kept = [example for example in fitted if example is not None and has_targets(example)]
    return kept, len(examples) - len(kept)
