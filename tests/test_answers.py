"""Answer extraction and comparison, shared by eval metrics, GRPO rewards and the world's judge."""

import json

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


OUTPUTS = ["6 * 7 = 42\n#### 42", "#### 41 wait, recount. #### 42", "She has 58 - 23 = 35, then 42. The answer is 42.",
           "先算 6 × 7 = 42，再算 42 + 23 = 65。答案是 65。", "so 10-4", "The total is $1,234.", "42.0 it is",
           "I do not know"]


@pytest.mark.parametrize("gold", ["42", "41", "65", "-4", "1234", "1,234"])
def test_the_grpo_reward_scores_what_the_gsm8k_metric_scores(tmp_path, gold):
    from lmforge.eval.benchmarks import load_benchmark
    from lmforge.metrics import generation_sample_metrics

    record = {"question": "q", "answer": f"working\n#### {gold}"}
    (tmp_path / "test.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    task = load_benchmark("gsm8k", tmp_path / "test.jsonl")
    metric = [generation_sample_metrics(["exact_match"], task.extract(output), task.docs[0].gold, output)
              ["exact_match"] for output in OUTPUTS]
    assert exact_match([], OUTPUTS, answer=[gold] * len(OUTPUTS)) == metric
    assert 0 < sum(metric) < len(OUTPUTS)  # some outputs match, some do not


def test_fact_answers_are_the_text_after_the_last_marker():
    assert extract_answer("Kelmar", "Kelmar") == "Kelmar"
    assert extract_answer("thinking... #### Oruna", "Kelmar") == " Oruna"
