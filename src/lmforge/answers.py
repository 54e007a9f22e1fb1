"""Answers in text: normalising, comparing, and extracting a final number. The core below every stage that judges
replies: eval metrics, GRPO rewards and the toy world's judge all compare answers through these functions, so a
reward and the metric of the same task agree by construction.

A final number is extracted one way everywhere: lm-evaluation-harness's GSM8K rule (`final_number`), the first
`#### N` if there is one, else the last number. lmforge's GSM8K scores must match lm-eval's, so the GRPO
`exact_match` reward uses the same rule rather than its own.
"""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal

_EDGE_PUNCTUATION = " \t\n.,;:!?。，；：！？\"'“”‘’()（）"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"  # kana, Han, Hangul
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_CJK_CHAR = re.compile(f"[{_CJK}]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]+")  # accents, not × ÷
_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_FENCED = re.compile(r"\s*```[\w-]*[ \t]*\n?(.*?)```\s*", re.DOTALL)


def normalize_answer(text: str) -> str:
    """Case-, width- and edge-punctuation-insensitive form used for exact match."""
    text = unicodedata.normalize("NFKC", text).strip().lower()
    return " ".join(text.strip(_EDGE_PUNCTUATION).split())


def word_tokens(text: str) -> list[str]:
    """Normalised words, each CJK character a token of its own; punctuation is dropped."""
    return _TOKEN.findall(normalize_answer(text))


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of the word n-grams that repeat an earlier one: 0 for text that never loops, near 1 for a loop."""
    words = word_tokens(text)
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def latin_words(text: str) -> list[str]:
    """Lower-cased runs of Latin letters (accents included), the unit of a vocabulary check."""
    return [word.lower() for word in _LATIN_WORD.findall(text)]


def script_shares(text: str) -> dict[str, float]:
    """Shares of CJK and Latin among the tokens that have letters; {} when none do.

    Tokens, not letters: a CJK character carries about a word, so counting letters would call "Kelmar在哪里" Latin.
    """
    tokens = [token for token in word_tokens(text) if any(char.isalpha() for char in token)]
    if not tokens:
        return {}
    cjk = sum(bool(_CJK_CHAR.fullmatch(token)) for token in tokens)
    latin = sum(bool(_LATIN_WORD.search(token)) for token in tokens)
    return {"cjk": cjk / len(tokens), "latin": latin / len(tokens)}


def is_json(text: str) -> bool:
    """Whether the text parses as JSON, also inside a ``` / ```json fence, which chat models add unasked."""
    fenced = _FENCED.fullmatch(text)
    try:
        json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    return True


def same_answer(prediction: str | None, gold: str) -> bool:
    """Equal after `normalize_answer`; two plain numbers compare by value ("1,234" = "1234", "42.0" = "42").

    None (no answer could be extracted) never matches.
    """
    if prediction is None:
        return False
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if pred == ref:
        return True
    pred_number, ref_number = _as_number(pred), _as_number(ref)
    return pred_number is not None and pred_number == ref_number


def _as_number(text: str) -> Decimal | None:
    plain = text.replace(",", "")
    return Decimal(plain) if _PLAIN_NUMBER.fullmatch(plain) else None


# lm-eval's GSM8K answer filters and the `regexes_to_ignore` of its exact_match (applied in this order).
GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
GSM8K_COT_STRICT = re.compile(r"The answer is (\-?[0-9\.\,]+).")
GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
GSM8K_IGNORE = [re.compile(pattern) for pattern in (",", r"\$", r"(?s).*#### ", r"\.$")]


def gsm8k_normalize(text: str) -> str:
    """Apply lm-eval's GSM8K `regexes_to_ignore` (commas, `$`, everything up to `#### `, one final `.`)."""
    for pattern in GSM8K_IGNORE:
        text = pattern.sub("", text)
    return text


def final_number(text: str, strict: re.Pattern = GSM8K_STRICT) -> str | None:
    """lm-eval's strict-match answer if there is one, else its flexible-extract one (the last number), normalized."""
    found = strict.findall(text)
    if found:
        return gsm8k_normalize(found[0])
    numbers = GSM8K_FLEXIBLE.findall(text)
    return gsm8k_normalize("".join(numbers[-1])) if numbers else None  # exactly one of the two groups matched


def extract_answer(completion: str, gold: str) -> str | None:
    """The part of a completion to compare with `gold`: a numeric gold is compared with `final_number`; other
    answers (short facts) with the text after the last `####` marker, or the whole text."""
    if _PLAIN_NUMBER.fullmatch(normalize_answer(gold).replace(",", "")):
        return final_number(completion)
    return completion.rpartition("####")[2]
