"""The world's preference rule as a judge, to score aligned (DPO/GRPO) models without a reward model.

It mirrors `preference_records`: the preferred reply is concise and correct; a rejected one is "wrong" (a wrong
value), "rambling" (the answer buried in filler) or "repetitive" (a phrase looped). Replies are compared after
`normalize_answer`; Chinese replies (any CJK token) get tighter length budgets, as Chinese needs fewer characters.
"""

from __future__ import annotations

import re

from lmforge.answers import normalize_answer, repetition_rate, same_answer, script_shares

from .phrasing import FILLERS

RULES = ("wrong", "rambling", "repetitive")
KINDS = ("arithmetic", "fact")
WRONG_WEIGHT = 2  # a correct rambling answer beats a wrong concise one
# Arithmetic: room for a worked solution; the world's longest (two steps and the final sentence) has 60 / 41.
ARITHMETIC_MAX_CHARS = {"en": 120, "zh": 60}
# Facts: room beyond the answer itself for one short sentence ("The answer is X.", "X was born in Y."), not two.
FACT_SPARE_CHARS = {"en": 40, "zh": 20}
MAX_REPETITION = 0.25  # share of word trigrams that repeat an earlier one
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # the answer_pattern of the world_arithmetic task
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=。)\s*")  # "3.5" stays one number
_SENTENCE_EDGES = " .!?。"
# Latin letters and digits: an answer glued to Chinese ("是kelmar。") is still a whole word, one inside "19540" is not.
_WORD_CHAR = "[0-9a-z\u00df-\u00f6\u00f8-\u024f]"
_FILLERS = tuple(normalize_answer(sentence) for lang_fillers in FILLERS.values() for sentence in lang_fillers)


def violations(reply: str, gold: str, kind: str) -> list[str]:
    """The rules `reply` breaks, in RULES order.

    wrong: arithmetic - the last number of the reply is not the gold number (no number, or an empty reply, is
      wrong); fact - the gold answer is not in the reply as a whole word ("1954" is not in "19540").
    rambling: the reply holds one of the world's filler sentences, or is longer than a concise answer needs:
      arithmetic over ARITHMETIC_MAX_CHARS, a fact over len(gold) + FACT_SPARE_CHARS (normalised characters).
    repetitive: repetition_rate(reply, 3) > MAX_REPETITION, or one sentence said twice.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    text = normalize_answer(reply)
    broken = {"wrong": _is_wrong(text, gold, kind), "rambling": _is_rambling(text, gold, kind),
              "repetitive": _is_repetitive(text)}
    return [rule for rule in RULES if broken[rule]]


def _is_wrong(text: str, gold: str, kind: str) -> bool:
    if kind == "arithmetic":
        numbers = _NUMBER.findall(text)
        return not numbers or not same_answer(numbers[-1], gold)
    whole_word = rf"(?<!{_WORD_CHAR}){re.escape(normalize_answer(gold))}(?!{_WORD_CHAR})"
    return not re.search(whole_word, text)


def _is_rambling(text: str, gold: str, kind: str) -> bool:
    if any(filler in text for filler in _FILLERS):
        return True
    lang = "zh" if script_shares(text).get("cjk") else "en"
    if kind == "arithmetic":
        return len(text) > ARITHMETIC_MAX_CHARS[lang]
    return len(text) > len(normalize_answer(gold)) + FACT_SPARE_CHARS[lang]


def _is_repetitive(text: str) -> bool:
    sentences = [s.strip(_SENTENCE_EDGES) for s in _SENTENCE_END.split(text)]
    sentences = [s for s in sentences if s]
    return repetition_rate(text, 3) > MAX_REPETITION or len(set(sentences)) < len(sentences)


def penalty(reply: str, gold: str, kind: str) -> int:
    """The world's cost of a reply: WRONG_WEIGHT per wrong answer plus one per other broken rule; lower is better."""
    broken = violations(reply, gold, kind)
    return len(broken) + (WRONG_WEIGHT - 1) * ("wrong" in broken)


def judge_pair(reply_a: str, reply_b: str, gold: str, kind: str) -> float:
    """1.0 when the world prefers `reply_a`, 0.0 when it prefers `reply_b`, 0.5 when their penalties tie."""
    a, b = penalty(reply_a, gold, kind), penalty(reply_b, gold, kind)
    return 0.5 if a == b else float(a < b)


def _sample_kind(sample: dict) -> str:
    """Arithmetic for the world_arithmetic task's samples (ids "arith-..."), a fact question otherwise."""
    return "arithmetic" if str(sample["id"]).startswith("arith") or sample.get("subject") == "arithmetic" else "fact"


def win_rate(samples_a: list[dict], samples_b: list[dict]) -> dict:
    """Run A against run B on the samples both answered (paired by "id", judged against A's gold).

    win_rate counts a tie as half a win; decided_win_rate leaves ties out (None when every pair ties).
    """
    by_id = {sample["id"]: sample for sample in samples_b}
    scores = [judge_pair(a["output"], by_id[a["id"]]["output"], a["gold"], _sample_kind(a))
              for a in samples_a if a["id"] in by_id]
    if not scores:
        raise ValueError("the two runs share no sample ids")
    wins, losses = scores.count(1.0), scores.count(0.0)
    ties = len(scores) - wins - losses
    return {"pairs": len(scores), "wins": wins, "ties": ties, "losses": losses,
            "win_rate": (wins + ties / 2) / len(scores),
            "decided_win_rate": wins / (wins + losses) if wins + losses else None}


def reply_style(samples: list[dict]) -> dict:
    """How long and loopy a run's replies are, and the share of replies breaking each rule of the world."""
    if not samples:
        raise ValueError("no samples to describe")
    broken = [violations(s["output"], s["gold"], _sample_kind(s)) for s in samples]
    return {"mean_chars": sum(len(s["output"]) for s in samples) / len(samples),
            "repetition_rate": sum(repetition_rate(s["output"], 3) for s in samples) / len(samples),
            "rule_breaks": {rule: sum(rule in b for b in broken) / len(samples) for rule in RULES}}
