"""Turn a recipe's data files into training rows, through the shared template, truncation and packing functions."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from lmforge.data import DataError, detect_schema, expand_paths, load_records
from lmforge.sequences import Row, chunk, has_targets, pack, truncate, unpacked
from lmforge.templates import IGNORE_INDEX, Encoded, encode_chat, encode_completion, encode_prompt

log = logging.getLogger("lmforge.train")

SUBSET_SEED = 0
REPLAY_SEED = 0  # the replayed examples are fixed by the data alone, like the subset and the packing


@dataclass
class Prepared:
    rows: list[Row]
    files: list[Path]
    stats: dict


def encode_text(tokenizer, text: str) -> Encoded:
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    return Encoded(ids, list(ids))


@dataclass
class PairRow:
    """A prompt with a preferred and a dispreferred answer, each tokenised whole with labels on the answer."""

    chosen: Row
    rejected: Row


@dataclass
class LabeledRow:
    """One answer marked good or bad (KTO)."""

    row: Row
    desirable: bool


@dataclass
class PromptRow:
    """A prompt to sample completions for (GRPO), with its record's other fields for the reward functions."""

    prompt_ids: list[int]
    messages: list[dict]
    columns: dict


def prepare(paths: list[str], stage: str, data_cfg, tokenizer, template: str, packing: bool,
            fraction: float = 1.0, unpaired: bool = False, replay: bool = False) -> Prepared:
    """Rows from the files; `fraction` keeps that share of the examples (data.fraction, for training data);
    `unpaired` turns preference pairs into good and bad examples (KTO); `replay` mixes data.replay's examples, if any,
    into the training data of pretrain and sft, before packing, so packed rows hold both."""
    files = expand_paths(paths)
    records, skipped = _load(files, stage, data_cfg.format, data_cfg.on_error, unpaired)
    records = subset(records, fraction)
    replay_stats = {}
    if stage == "grpo":
        rows, dropped = _prompt_rows(records, tokenizer, template, data_cfg)
    elif stage in ("rm", "dpo"):
        rows, dropped = _answer_rows(records, tokenizer, template, data_cfg, unpaired)
    else:
        examples = [_encode(record, tokenizer, template, data_cfg.system) for record in records]
        kept, dropped = _fit(examples, stage, data_cfg)
        if replay and data_cfg.replay:
            replayed, replay_files, replay_stats = _replay(len(kept), stage, data_cfg, tokenizer, template)
            kept, files = kept + replayed, files + replay_files
        rows = (pack(kept, data_cfg.max_length) if packing else [unpacked(example) for example in kept]) if kept else []
    if not rows:
        raise DataError(str(files[0]), f"no trainable examples left after truncation to {data_cfg.max_length} tokens")
    if skipped or dropped:
        log.warning("data: skipped %d malformed records; dropped %d examples (too long under truncation=drop, "
                    "or nothing left to train on)", skipped, dropped)
    stats = {"examples": len(records) - dropped, "rows": len(rows), "tokens": sum(_tokens(row) for row in rows),
             "skipped_records": skipped, "dropped_examples": dropped, **replay_stats}
    return Prepared(rows, files, stats)


def _replay(task_examples: int, stage: str, data_cfg, tokenizer, template: str
            ) -> tuple[list[Encoded], list[Path], dict]:
    """data.replay's examples to mix with `task_examples` examples so that they make up data.replay_share of the
    epoch, the files they come from, and their counts for the run's data stats. Text records are split into
    max_length chunks as in pretraining; chat and alpaca records go through the template and truncation policy."""
    files = expand_paths(data_cfg.replay)
    records, skipped = _load(files, stage, "auto", data_cfg.on_error, False)
    pool = [piece for record in records
            for piece in _fit([_encode(record, tokenizer, template, data_cfg.system)],
                              "pretrain" if "text" in record else stage, data_cfg)[0]]
    if not pool:
        raise DataError(str(files[0]), f"data.replay: no trainable examples left after truncation to "
                        f"{data_cfg.max_length} tokens")
    share = data_cfg.replay_share
    replayed = draw(pool, round(share / (1 - share) * task_examples))
    stats = {"replay_examples": len(replayed), "replay_tokens": sum(len(example.input_ids) for example in replayed),
             "replay_pool": len(pool), "replay_skipped_records": skipped}
    log.info("data: replaying %d of %d examples from %s", len(replayed), len(pool), data_cfg.replay)
    return replayed, files, stats


def draw(pool: list, count: int) -> list:
    """`count` items of `pool`, fixed by REPLAY_SEED: a sample without replacement, or, from a smaller pool, the whole
    pool as often as it fits and a sample for the rest, so no item comes up more than once more than another."""
    whole, rest = divmod(count, len(pool))
    return pool * whole + random.Random(REPLAY_SEED).sample(pool, rest)


def _load(files: list[Path], stage: str, schema_setting: str, on_error: str, unpaired: bool) -> tuple[list[dict], int]:
    """The records of `files`, each file in `schema_setting` or, for auto, the schema its first record shows."""
    records, skipped = [], 0
    for path in files:
        schema = schema_setting if schema_setting != "auto" else detect_schema(path, _default_format(stage))
        _check_schema_fits(path, schema, stage, unpaired)
        loaded = load_records([path], schema, on_error)
        if schema == "unpaired":
            _check_labels(path, loaded.records)
        skipped += loaded.skipped
        records += loaded.records
    return records, skipped


def _check_labels(path: Path, records: list[dict]) -> None:
    for index, record in enumerate(records):
        if record["label"] is None:
            raise DataError(f"{path}: record {index + 1}", "an unpaired record for KTO needs 'label': true or false")


STAGE_SCHEMAS = {"pretrain": ("text", "messages", "alpaca"), "sft": ("messages", "alpaca", "text"),
                 "rm": ("preference",), "dpo": ("preference", "unpaired"), "grpo": ("prompt",)}


def _check_schema_fits(path: Path, schema: str, stage: str, unpaired: bool) -> None:
    if schema not in STAGE_SCHEMAS[stage]:
        raise DataError(str(path), f"holds {schema} records, but stage {stage} trains on "
                        f"{' or '.join(STAGE_SCHEMAS[stage])} records")
    if schema == "unpaired" and not unpaired:
        raise DataError(str(path), "holds unpaired (prompt, completion, label) records, which need dpo.loss: kto; "
                        "the other losses train on chosen/rejected pairs")


def _answer_rows(records: list[dict], tokenizer, template: str, data_cfg, unpaired: bool) -> tuple[list, int]:
    """Pairs for rm and dpo, or good/bad examples for KTO (pairs split in two)."""
    rows, dropped = [], 0
    for record in records:
        prompt = _with_system(record["prompt"], data_cfg.system)
        answers = ([(record["completion"], record["label"])] if "completion" in record
                   else [(record["chosen"], True), (record["rejected"], False)])
        encoded = _fit_answers([encode_completion(tokenizer, prompt, answer, template) for answer, _ in answers],
                               data_cfg)
        if encoded is None:
            dropped += 1
        elif unpaired:
            rows += [LabeledRow(row, label) for row, (_, label) in zip(encoded, answers)]
        else:
            rows.append(PairRow(*encoded))
    return rows, dropped


def _fit_answers(examples: list[Encoded], data_cfg) -> list[Row] | None:
    """The answers to one prompt within max_length, or None to drop them. `left` cuts the same number of prompt
    tokens from each, so both answers still follow one prompt; `right` cuts each answer's end."""
    if data_cfg.truncation == "left":
        cut = max(len(example.input_ids) for example in examples) - data_cfg.max_length
        examples = [Encoded(e.input_ids[cut:], e.labels[cut:]) if cut > 0 else e for e in examples]
    fitted = [truncate(example, data_cfg.max_length, data_cfg.truncation) for example in examples]
    if any(example is None or not has_targets(example) or example.labels[0] != IGNORE_INDEX
           for example in fitted):
        return None  # dropped, cut into its answer (left), or with no answer left to score (right)
    return [unpacked(example) for example in fitted]


def _prompt_rows(records: list[dict], tokenizer, template: str, data_cfg) -> tuple[list[PromptRow], int]:
    """Prompts that leave room for a completion within max_length; longer ones are dropped."""
    rows = []
    for record in records:
        messages = _with_system(record["prompt"], data_cfg.system)
        ids = encode_prompt(tokenizer, messages, template)
        if len(ids) < data_cfg.max_length:
            rows.append(PromptRow(ids, messages, {key: value for key, value in record.items() if key != "prompt"}))
    return rows, len(records) - len(rows)


def _tokens(row) -> int:
    if isinstance(row, PairRow):
        return len(row.chosen) + len(row.rejected)
    if isinstance(row, LabeledRow):
        return len(row.row)
    return len(row.prompt_ids) if isinstance(row, PromptRow) else len(row)


def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def subset(examples: list, fraction: float) -> list:
    """The first share of one fixed shuffle, in the original order: a smaller fraction is part of every larger one."""
    if fraction >= 1:
        return examples
    order = list(range(len(examples)))
    random.Random(SUBSET_SEED).shuffle(order)
    keep = sorted(order[: max(1, math.ceil(fraction * len(examples)))])
    return [examples[i] for i in keep]


def _default_format(stage: str) -> str:
    return {"pretrain": "text", "sft": "messages", "grpo": "prompt"}.get(stage, "preference")


def _encode(record: dict, tokenizer, template: str, system: str | None) -> Encoded:
    if "text" in record:
        return encode_text(tokenizer, record["text"])
    return encode_chat(tokenizer, _with_system(record["messages"], system), template, tools=record.get("tools"))


def _fit(examples: list[Encoded], stage: str, data_cfg) -> tuple[list[Encoded], int]:
    """Pretraining documents are split into max_length chunks; chat examples follow the truncation policy."""
    if stage == "pretrain":
        pieces = [piece for example in examples for piece in chunk(example, data_cfg.max_length)]
        return [piece for piece in pieces if len(piece.input_ids) > 1], 0
    fitted = [truncate(example, data_cfg.max_length, data_cfg.truncation) for example in examples]
    kept = [example for example in fitted if example is not None and has_targets(example)]
    return kept, len(examples) - len(kept)
