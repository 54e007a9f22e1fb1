import math

import pytest

from lmforge.metrics import (
    CHOICE_METRICS,
    GENERATE_METRICS,
    METRICS,
    aggregate,
    bootstrap_stderr,
    choice_sample_metrics,
    classification_report,
    generation_sample_metrics,
    summarize,
)
from lmforge.answers import script_shares, word_tokens


def test_length_normalisation_by_characters_and_by_bytes_differ_on_chinese():
    # "是的": 2 characters, 6 UTF-8 bytes; "yes": 3 and 3. Per character "yes" wins, per byte "是的" does.
    scores, choices = [-4.0, -5.0], ["是的", "yes"]
    result = choice_sample_metrics(["acc", "acc_norm", "acc_bytes", "mc1"], scores, choices, 0, {})
    assert result == {"acc": 1.0, "acc_norm": 0.0, "acc_bytes": 1.0, "mc1": 1.0}


def test_ties_go_to_the_first_choice_like_numpy_argmax():
    assert choice_sample_metrics(["acc"], [-1.0, -1.0], ["a", "b"], 0, {})["acc"] == 1.0
    assert choice_sample_metrics(["acc"], [-1.0, -1.0], ["a", "b"], 1, {})["acc"] == 0.0


def test_mc2_is_the_normalised_probability_of_the_true_answers():
    scores, labels = [-1.0, -2.0, -0.5, -3.0], [1, 1, 0, 0]
    expected = (math.exp(-1) + math.exp(-2)) / sum(math.exp(s) for s in scores)  # = 0.43398
    assert expected == pytest.approx(0.43398, abs=1e-5)
    mc2 = choice_sample_metrics(["mc2"], scores, list("abcd"), 0, {"labels": labels})["mc2"]
    assert mc2 == pytest.approx(expected)
    shifted = choice_sample_metrics(["mc2"], [s - 1000 for s in scores], list("abcd"), 0, {"labels": labels})["mc2"]
    assert shifted == pytest.approx(expected)  # naive exp() would underflow to 0 / 0
    with pytest.raises(ValueError, match="labels"):
        choice_sample_metrics(["mc2"], scores, list("abcd"), 0, {})


def test_tokens_split_cjk_per_character():
    assert word_tokens("Kelmar是城市。") == ["kelmar", "是", "城", "市"]
    assert script_shares("Alda Vorn出生在哪里？") == {"cjk": pytest.approx(5 / 7), "latin": pytest.approx(2 / 7)}
    assert script_shares("12 + 30") == {}


@pytest.mark.parametrize(
    "prediction, gold, f1, rouge",
    [
        ("mat the cat", "the cat mat", 1.0, 2 / 3),  # same bag of words; longest common subsequence "the cat"
        ("the cat sat on the mat", "the cat is on the mat", 5 / 6, 5 / 6),
        ("北京是首都", "首都是北京", 1.0, 2 / 5),  # same characters; LCS "北京"
        ("他住在北京", "北京", 4 / 7, 4 / 7),  # P = 2/5, R = 1
        ("", "", 1.0, 1.0),
        ("Kelmar", "Tovin", 0.0, 0.0),
    ],
)
def test_token_f1_and_rouge_l_by_hand(prediction, gold, f1, rouge):
    result = generation_sample_metrics(["f1", "rouge_l"], prediction, gold, prediction)
    assert result["f1"] == pytest.approx(f1) and result["rouge_l"] == pytest.approx(rouge)


def test_exact_match_normalises_text_and_numbers():
    em = lambda prediction, gold: generation_sample_metrics(["exact_match", "acc"], prediction, gold, "")  # noqa: E731
    assert em("1,234", "1234") == {"exact_match": 1.0, "acc": 1.0}
    assert em("42.0", "42")["exact_match"] == 1.0
    assert em("ＫＥＬＭＡＲ。", "Kelmar")["exact_match"] == 1.0
    assert em("the Kelmar", "Kelmar")["exact_match"] == 0.0
    assert em(None, "Kelmar")["exact_match"] == 0.0


def test_missing_prediction_scores_zero_f1_but_rouge_reads_the_output():
    result = generation_sample_metrics(["f1", "rouge_l"], None, "the cat mat", "the cat mat")
    assert result == {"f1": 0.0, "rouge_l": 1.0}


@pytest.mark.parametrize(
    "output, valid",
    [('{"a": 1}', 1.0), ('```json\n{"a": [1, 2]}\n```', 1.0), ("```\n[1]\n```", 1.0), ('{"a": 1', 0.0),
     ('Sure: {"a": 1}', 0.0)],
)
def test_json_valid_strips_code_fences(output, valid):
    assert generation_sample_metrics(["json_valid"], output, "", output)["json_valid"] == valid


def test_metric_names_are_checked_per_kind_and_corpus_metrics_are_left_to_aggregate():
    assert "f1_macro" in CHOICE_METRICS & GENERATE_METRICS and "mc2" not in GENERATE_METRICS
    assert METRICS == CHOICE_METRICS | GENERATE_METRICS
    assert generation_sample_metrics(["acc", "f1_macro"], "a", "a", "a") == {"acc": 1.0}
    with pytest.raises(ValueError, match="not a metric for choice tasks: f1"):
        choice_sample_metrics(["acc", "f1"], [0.0], ["a"], 0, {})


def labelled(pairs):
    return [{"id": str(i), "gold": gold, "prediction": pred, "metrics": {"acc": float(gold == pred)}}
            for i, (gold, pred) in enumerate(pairs)]


def test_classification_report_on_a_small_confusion():
    samples = labelled([("pos", "pos"), ("pos", "POS."), ("pos", "neg"), ("neg", "neg"), ("neg", "pos"),
                        ("neg", "pos"), ("neu", "maybe")])
    report = classification_report(samples)
    assert report["per_class"]["pos"] == pytest.approx({"precision": 0.5, "recall": 2 / 3, "f1": 4 / 7, "support": 3})
    assert report["per_class"]["neg"] == pytest.approx({"precision": 0.5, "recall": 1 / 3, "f1": 0.4, "support": 3})
    assert report["per_class"]["neu"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert "maybe" not in report["per_class"]  # a stray prediction is wrong, not a class of its own
    assert report["macro"] == pytest.approx({"precision": 1 / 3, "recall": 1 / 3, "f1": (4 / 7 + 0.4) / 3})
    assert aggregate("f1_macro", samples) == pytest.approx((4 / 7 + 0.4) / 3)


def test_choice_tasks_report_classes_by_choice_text():
    samples = [{"id": str(i), "choices": ["negative", "positive"], "gold": gold, "prediction": pred}
               for i, (gold, pred) in enumerate([(0, 0), (1, 1), (1, 0)])]
    report = classification_report(samples)
    assert report["per_class"]["negative"]["precision"] == 0.5 and report["per_class"]["positive"]["recall"] == 0.5


def test_bootstrap_stderr_matches_the_binomial_formula():
    samples = [{"metrics": {"acc": float(i < 120)}} for i in range(400)]
    assert aggregate("acc", samples) == 0.3
    expected = math.sqrt(0.3 * 0.7 / 400)
    assert bootstrap_stderr("acc", samples) == pytest.approx(expected, rel=0.15)
    assert bootstrap_stderr("acc", samples) == bootstrap_stderr("acc", samples)  # seeded
    assert bootstrap_stderr("acc", samples[:1]) == 0.0


def test_summarize_reports_stderr_classes_and_subjects():
    samples = labelled([("pos", "pos"), ("neg", "pos"), ("pos", "pos"), ("neg", "neg")])
    for sample, subject in zip(samples, ["a", "a", "b", "b"]):
        sample["subject"] = subject
    summary = summarize(["acc", "f1_macro"], samples, iters=200)
    assert summary["metrics"]["acc"]["value"] == 0.75 and summary["metrics"]["acc"]["stderr"] > 0
    assert summary["metrics"]["f1_macro"]["value"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert summary["details"]["per_class"]["neg"]["support"] == 2
    assert summary["subjects"]["a"]["acc"] == 0.5 and summary["subjects"]["b"] == pytest.approx(
        {"acc": 1.0, "f1_macro": 1.0, "n": 2})
    assert summarize(["acc"], samples[:1])["subjects"] == {"a": {"acc": 1.0, "n": 1}}
    assert "details" not in summarize(["acc"], samples)
    assert "subjects" not in summarize(["acc"], [{**s, "subject": ""} for s in samples])
