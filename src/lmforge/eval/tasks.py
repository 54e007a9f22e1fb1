"""Task runners: multiple choice by answer-text log-likelihood, and question answering by exact match."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from lmforge.data import DataError
from lmforge.eval.metrics import exact_match
from lmforge.eval.scoring import loglikelihoods

LETTERS = "ABCD"


@dataclass
class ChoiceItem:
    question: str
    choices: list[str]
    answer: int


def read_mmlu_csv(path: str | Path) -> list[ChoiceItem]:
    """hendrycks layout: no header, question,A,B,C,D,answer-letter."""
    items = []
    with open(path, encoding="utf-8", newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise DataError(f"{path}:{line}", "expected 6 columns question,A,B,C,D,answer with answer in A-D")
            items.append(ChoiceItem(row[0], row[1:5], LETTERS.index(row[5].strip())))
    return items


CLOZE_PROMPT = "Question: {question}\nAnswer:"


def evaluate_choices(
    model, tokenizer, items: list[ChoiceItem], prompt: str = CLOZE_PROMPT, batch_size: int = 32
) -> dict:
    """Pick the choice whose text is most likely after the question (no letters: works for base models)."""
    def encode(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    requests = [
        (encode(prompt.format(question=item.question)), encode(" " + choice)) for item in items for choice in item.choices
    ]
    scores = iter(loglikelihoods(model, tokenizer.pad_token_id, requests, batch_size))
    samples = []
    for item in items:
        item_scores = [next(scores) for _ in item.choices]
        predicted = max(range(len(item_scores)), key=item_scores.__getitem__)
        samples.append({"question": item.question, "scores": item_scores, "prediction": predicted, "gold": item.answer,
                        "correct": predicted == item.answer})
    return {"acc": correct_share(samples), "n": len(samples), "samples": samples}


def read_qa_jsonl(path: str | Path) -> list[dict]:
    items = []
    for line, text in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{line}", f"invalid JSON: {err.msg}") from None
        if not isinstance(item, dict) or not {"question", "answer"} <= item.keys():
            raise DataError(f"{path}:{line}", "each record needs 'question' and 'answer'")
        items.append(item)
    return items


def evaluate_qa(model, tokenizer, items: list[dict], max_new_tokens: int = 64, batch_size: int = 32) -> dict:
    """Greedy chat replies scored by exact match; arithmetic items compare the extracted final number."""
    from lmforge.generate import chat_replies, conversation

    replies = chat_replies(
        model, tokenizer, [conversation(item["question"]) for item in items],
        max_new_tokens=max_new_tokens, batch_size=batch_size,
    )
    samples = [
        {**item, "reply": reply, "correct": exact_match(reply, item["answer"], item.get("kind") == "arithmetic")}
        for item, reply in zip(items, replies)
    ]
    result = {"exact_match": correct_share(samples), "n": len(samples), "samples": samples}
    for kind in sorted({s.get("kind", "all") for s in samples}):
        result[f"exact_match_{kind}"] = correct_share([s for s in samples if s.get("kind", "all") == kind])
    return result


def correct_share(samples: list[dict]) -> float:
    return sum(s["correct"] for s in samples) / max(1, len(samples))
