"""The world's preference rule as a judge: it must agree with the world's own preference pairs."""

from __future__ import annotations

import json
import re

import pytest

from lmforge.world import synth_world
from lmforge.world.judge import RULES, judge_pair, reply_style, violations, win_rate
from lmforge.world.tasks import REJECTION_RULES

FINAL = re.compile(r"(?:The answer is |答案是 )(\d+)[.。]$")
ARITH = "First, 3 × 8 = 24. Then, 24 - 5 = 19. The answer is 19."
ARITH_ZH = "先算 3 × 8 = 24，再算 24 - 5 = 19。答案是 19。"


def _gold_and_kind(chosen: str) -> tuple[str, str]:
    """Arithmetic pairs choose a worked solution ending in the final sentence; fact pairs the bare answer."""
    final = FINAL.search(chosen)
    return (final.group(1), "arithmetic") if final else (chosen, "fact")


@pytest.mark.parametrize(("seed", "size"), [(0, "demo"), (7, "tiny")])
def test_the_worlds_preference_pairs_are_judged_as_intended(tmp_path, seed, size):
    synth_world(seed, tmp_path, size)
    lines = (tmp_path / "preference.jsonl").read_text(encoding="utf-8").splitlines()
    seen = set()
    for pair in map(json.loads, lines):
        gold, kind = _gold_and_kind(pair["chosen"])
        assert violations(pair["chosen"], gold, kind) == [], pair
        assert pair["rule"] in violations(pair["rejected"], gold, kind), pair
        assert judge_pair(pair["chosen"], pair["rejected"], gold, kind) == 1.0, pair
        seen.add((kind, pair["rule"]))
    assert seen == {(kind, rule) for kind in ("arithmetic", "fact") for rule in RULES}
    assert set(RULES) == set(REJECTION_RULES)


@pytest.mark.parametrize(("reply", "gold", "kind", "broken"), [
    (ARITH, "19", "arithmetic", []),
    (ARITH_ZH, "19", "arithmetic", []),
    ("19", "19", "arithmetic", []),
    ("The answer is 21.", "19", "arithmetic", ["wrong"]),
    ("答案是 21。", "19", "arithmetic", ["wrong"]),
    ("I do not know.", "19", "arithmetic", ["wrong"]),
    ("", "19", "arithmetic", ["wrong"]),
    ("Dravia", "Dravia", "fact", []),
    ("dravia.", "Dravia", "fact", []),
    ("The answer is Dravia.", "Dravia", "fact", []),
    ("答案是Dravia。", "Dravia", "fact", []),
    ("画家（painter）", "painter", "fact", []),
    ("Kelmar", "Dravia", "fact", ["wrong"]),
    ("答案是Kelmar。", "Dravia", "fact", ["wrong"]),
    ("19540", "1954", "fact", ["wrong"]),
    ("", "Dravia", "fact", ["wrong"]),
    ("Let me think about this carefully before answering. Dravia", "Dravia", "fact", ["rambling"]),
    ("让我仔细想一想再回答。答案是Dravia。", "Dravia", "fact", ["rambling"]),
    ("Dravia, a lovely old city with a long and proud history of trade on the river.", "Dravia", "fact",
     ["rambling"]),
    ("答案是Dravia，这是一座历史悠久、风景优美、以河上贸易闻名的古老城市。", "Dravia", "fact", ["rambling"]),
    ("I hope this explanation is helpful to you. The answer is 19.", "19", "arithmetic", ["rambling"]),
    ("先算 3 × 8 = 24，再算 24 - 5 = 19。这道题并不难，只要一步一步地仔细计算就能得到正确的结果。答案是 19。", "19",
     "arithmetic", ["rambling"]),
    ("The answer is 19. The answer is 19.", "19", "arithmetic", ["repetitive"]),
    ("答案是 19。答案是 19。", "19", "arithmetic", ["repetitive"]),
    ("Dravia dravia dravia dravia dravia", "Dravia", "fact", ["repetitive"]),
    ("答案是Dravia。答案是Dravia。", "Dravia", "fact", ["repetitive"]),
    ("Kelmar. Kelmar. Kelmar. Kelmar. Kelmar. Kelmar. Kelmar. Kelmar.", "Dravia", "fact", list(RULES)),
])
def test_violations_by_hand(reply, gold, kind, broken):
    assert violations(reply, gold, kind) == broken


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown kind"):
        violations("19", "19", "poem")


def test_judge_pair_weighs_a_wrong_answer_above_style():
    rambling = "That is a good question, and I am glad you asked it. The answer is 19."
    assert judge_pair("The answer is 21.", rambling, "19", "arithmetic") == 0.0
    assert judge_pair(rambling, "The answer is 21.", "19", "arithmetic") == 1.0
    assert judge_pair(ARITH, rambling, "19", "arithmetic") == 1.0
    assert judge_pair(ARITH, ARITH, "19", "arithmetic") == 0.5
    assert judge_pair("Kelmar", "Kelmar", "Dravia", "fact") == 0.5
    looped_and_long = "这是一个很好的问题，谢谢你的提问。答案是Dravia。答案是Dravia。"
    assert judge_pair(looped_and_long, "答案是Kelmar。", "Dravia", "fact") == 0.5  # 1 + 1 against 2


def _sample(sample_id: str, output: str, gold: str, subject: str = "") -> dict:
    return {"id": sample_id, "output": output, "gold": gold, "subject": subject}


def test_win_rate_pairs_by_id():
    run_a = [_sample("arith-test-0001", ARITH, "19"), _sample("f0001-en-new", "Dravia", "Dravia", "fact-new-wording"),
             _sample("f0002-zh-new", "Kelmar", "painter", "fact-seen"),
             _sample("q7", "7 + 1 = 8. The answer is 8.", "7", "arithmetic"),  # right as a fact, wrong as arithmetic
             _sample("only-a", "x", "y")]
    run_b = [_sample("only-b", "x", "y"), _sample("q7", "The answer is 7.", "7", "arithmetic"),
             _sample("f0002-zh-new", "画家（painter）", "painter", "fact-seen"),
             _sample("f0001-en-new", "Dravia", "Dravia", "fact-new-wording"),
             _sample("arith-test-0001", "The answer is 20.", "19")]
    assert win_rate(run_a, run_b) == {"pairs": 4, "wins": 1, "ties": 1, "losses": 2, "win_rate": 1.5 / 4,
                                      "decided_win_rate": 1 / 3}
    assert win_rate(run_b, run_a)["win_rate"] == 2.5 / 4
    same = win_rate(run_a, run_a)
    assert (same["ties"], same["win_rate"], same["decided_win_rate"]) == (5, 0.5, None)
    with pytest.raises(ValueError, match="no sample ids"):
        win_rate(run_a[:1], run_b[:1])


def test_reply_style_numbers():
    samples = [_sample("f1", "Dravia", "Dravia"), _sample("arith-1", "The answer is 19. The answer is 19.", "19"),
               _sample("f2", "Kelmar", "Dravia"), _sample("f3", "希望这个解释对你有帮助。答案是Dravia。", "Dravia")]
    style = reply_style(samples)
    assert style["mean_chars"] == pytest.approx((6 + 35 + 6 + 22) / 4)
    assert style["repetition_rate"] == pytest.approx((0 + 1 / 3 + 0 + 0) / 4)
    assert style["rule_breaks"] == {"wrong": 0.25, "rambling": 0.25, "repetitive": 0.25}
    with pytest.raises(ValueError):
        reply_style([])
