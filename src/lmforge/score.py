"""`lmforge score --rm DIR --data FILE`: a reward model's scores for (prompt, answer) pairs, and its pairwise
accuracy on preference pairs. The same scorer is GRPO's `reward_model` reward."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import Field

from lmforge.config import Section

log = logging.getLogger("lmforge.score")


class ScoreConfig(Section):
    rm: str = Field(description="reward model folder (an rm stage run)")
    data: list[str] = Field(
        description="jsonl/json/csv/parquet files of {prompt, completion} records, or preference pairs "
        "{prompt, chosen, rejected} (then pairwise accuracy is reported too)"
    )
    output: str = Field("scores.jsonl", description="where the records go, each with its score(s) added")
    batch_size: int = Field(16, ge=1, description="answers scored per forward pass")
    max_length: int = Field(1024, ge=8, description="longest prompt + answer in tokens (the prompt's start is cut)")
    device: str = Field("auto", description="auto, cpu, cuda, ...")


class RewardScorer:
    """Scores answers to chat prompts with a reward model, through the chat template it trained with."""

    def __init__(self, path: str, device: str = "auto", batch_size: int = 16, max_length: int = 1024):
        from lmforge.models import load_reward_model

        self.model, self.tokenizer = load_reward_model(path, device)
        self.batch_size, self.max_length = batch_size, max_length

    def score(self, prompts: list[list[dict]], completions: list[str | list[dict]]) -> list[float]:
        import torch

        from lmforge.sequences import Collator, truncate, unpacked
        from lmforge.templates import encode_completion

        rows = [unpacked(truncate(encode_completion(self.tokenizer, prompt, _as_messages(answer),
                                                    self.tokenizer.chat_template), self.max_length, "left"))
                for prompt, answer in zip(prompts, completions)]
        pad, scores = Collator(self.tokenizer.pad_token_id, packed=False), []
        for start in range(0, len(rows), self.batch_size):
            batch = pad(rows[start : start + self.batch_size])
            with torch.no_grad():
                scores += self.model(input_ids=batch["input_ids"].to(self.model.device),
                                     attention_mask=batch["attention_mask"].to(self.model.device)
                                     ).logits[:, 0].float().tolist()
        return scores


def _as_messages(answer: str | list[dict]) -> list[dict]:
    return [{"role": "assistant", "content": answer}] if isinstance(answer, str) else answer


def run_score(cfg: ScoreConfig, overwrite: bool = False) -> dict:
    """Score every record into `cfg.output` (written whole or not at all); returns the summary."""
    from lmforge.data import detect_schema, expand_paths, load_records
    from lmforge.runs import atomic_write_text

    output = Path(cfg.output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists; pass --overwrite to replace it")
    files = expand_paths(cfg.data)
    records = [record for path in files
               for record in load_records([path], _schema(path, detect_schema(path, "unpaired"))).records]
    scorer = RewardScorer(cfg.rm, cfg.device, cfg.batch_size, cfg.max_length)
    summary = _score_records(scorer, records)
    atomic_write_text(output, "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    log.info("scored %d records into %s", len(records), output)
    return summary


def _schema(path: Path, detected: str) -> str:
    if detected not in ("preference", "unpaired"):
        raise ValueError(f"{path}: expected {{prompt, completion}} records or {{prompt, chosen, rejected}} pairs")
    return detected


def _score_records(scorer: RewardScorer, records: list[dict]) -> dict:
    """Adds `score` (or `chosen_score` and `rejected_score`) to each record."""
    pairs = [record for record in records if "chosen" in record]
    singles = [record for record in records if "chosen" not in record]
    for record, score in zip(singles, scorer.score([r["prompt"] for r in singles], [r["completion"] for r in singles])):
        record["score"] = score
    prompts = [r["prompt"] for r in pairs]
    chosen, rejected = scorer.score(prompts, [r["chosen"] for r in pairs]), scorer.score(prompts, [r["rejected"] for r in pairs])
    for record, good, bad in zip(pairs, chosen, rejected):
        record["chosen_score"], record["rejected_score"] = good, bad
    summary = {"records": len(records)}
    if pairs:
        summary["pairwise_accuracy"] = sum(good > bad for good, bad in zip(chosen, rejected)) / len(pairs)
    return summary
