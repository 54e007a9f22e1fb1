"""Answer normalisation and extraction shared by every generation metric (English and Chinese)."""

from __future__ import annotations

import re
import unicodedata

_FINAL_ANSWER = re.compile(r"(?:answer is|答案是|####)\s*[:：]?\s*(-?[\d,]*\.?\d+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_EDGE_PUNCTUATION = " \t\n.,;:!?。，；：！？\"'“”‘’()（）"


def normalize_answer(text: str) -> str:
    """Case-, width- and edge-punctuation-insensitive form used for exact match."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    return " ".join(text.strip(_EDGE_PUNCTUATION).split())


def extract_number(text: str) -> str | None:
    """The number after 'The answer is' / '答案是' / '####', else the last number in the text."""
    match = _FINAL_ANSWER.search(text)
    found = match.group(1) if match else (_NUMBER.findall(text) or [None])[-1]
    return found.replace(",", "") if found else None


def exact_match(prediction: str, answer: str, numeric: bool = False) -> bool:
    if numeric:
        return extract_number(prediction) == answer.replace(",", "")
    return normalize_answer(prediction) == normalize_answer(answer)
