"""Answer extraction and comparison, shared by eval metrics, GRPO rewards and the world's judge."""

import pytest

from lmforge.answers import extract_answer, final_number
from lmforge.rewards import exact_match


@pytest.mark.parametrize("output, answer", [
    ("so 1000 - 2 = 998\n#### 1,000.", "1000"),  # strict-match, then commas and a final period go
    ("It costs $5.50 or maybe 6 dollars", "6"),  # flexible-extract: the last number
    ("The total is $1,234.", "1234"),
    ("I do not know", None),
    ("#### -7\n\nQuestion: what", "-7"),
])
def test_final_number_matches_lm_evals_gsm8k_strict_then_flexible_filters(output, answer):
    assert final_number(output) == answer


OUTPUTS = ["6 * 7 = 42\n#### 42", "#### 41 wait, recount. #### 42", "She has 58 - 23 = 35, then 33. The answer is 33.",
           "先算 6 × 7 = 42，再算 42 + 23 = 65。答案是 65。", "so 10-4", "The total is $1,234.", "I do not know"]


def test_the_grpo_reward_and_the_gsm8k_metric_extract_the_same_number():
    for output in OUTPUTS:
        gold = final_number(output) or "0"
        assert extract_answer(output, gold) == final_number(output)
        assert exact_match([], [output], answer=[gold]) == [float(final_number(output) is not None)]


def test_fact_answers_are_the_text_after_the_last_marker():
    assert extract_answer("Kelmar", "Kelmar") == "Kelmar"
    assert extract_answer("thinking... #### Oruna", "Kelmar") == " Oruna"
