"""`lmforge tokenizer train`: a byte-level BPE with the special tokens the chat templates need."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Iterator

from pydantic import Field

from lmforge.config import Section

log = logging.getLogger("lmforge.tokenizer")

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = [
    EOS,
    PAD,
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]


class TokenizerConfig(Section):
    data: list[str] = Field(description="text files or folders to learn merges from (any lmforge data format)")
    name: str = Field("tokenizer", description="run name; the tokenizer goes to <output_dir>/<name>/")
    output_dir: str = Field("runs", description="folder holding run folders")
    vocab_size: int = Field(4096, ge=300, description="vocabulary size, special tokens included")
    min_frequency: int = Field(2, ge=1, description="least count for a merge")
    template: str = Field("chatml", description="built-in chat template stored with the tokenizer")


def record_texts(record: dict) -> Iterator[str]:
    """Every piece of text in a normalised record, whatever its schema."""
    if "text" in record:
        yield record["text"]
    for key in ("messages", "prompt", "chosen", "rejected"):
        for message in record.get(key, []):
            if message.get("content"):
                yield message["content"]


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """A `PreTrainedTokenizerFast` whose decode(encode(x)) == x for any UTF-8 text; numbers split into digits."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),  # one token per digit, as Llama and Qwen do: arithmetic
        pre_tokenizers.ByteLevel(add_prefix_space=False),  # works digit by digit, not on a table of whole numbers
    ])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TOOL_TAGS),
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.add_tokens(TOOL_TAGS)
    return tokenizer


def train_tokenizer(cfg: TokenizerConfig, overwrite: bool = False) -> Path:
    from lmforge.data import expand_paths
    from lmforge.runs import Run, atomic_write_text, model_card
    from lmforge.templates import resolve_template

    with Run(cfg.output_dir, cfg.name, overwrite).start(cfg) as run:
        files = expand_paths(cfg.data)
        texts = [text for record in _records(files) for text in record_texts(record)]
        tokenizer = train_bpe(texts, cfg.vocab_size, cfg.min_frequency)
        tokenizer.chat_template = resolve_template(tokenizer, cfg.template)
        tokenizer.save_pretrained(run.dir)
        metrics = {"vocab_size": len(tokenizer), "texts": len(texts)}
        run.log_metrics(metrics)
        atomic_write_text(run.dir / "README.md", model_card("tokenizer", "none (byte-level BPE)", files, metrics, cfg.template))
        log.info("trained a %d-token byte-level BPE on %d texts", len(tokenizer), len(texts))
        return run.finish()


def _records(files: list[Path]) -> Iterator[dict]:
    from lmforge.data import detect_schema, load_records

    for path in files:
        yield from load_records([path], detect_schema(path, default="text")).records
