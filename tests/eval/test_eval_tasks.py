import pytest
import torch

from lmforge.data import DataError
from lmforge.eval.metrics import exact_match, extract_number, normalize_answer
from lmforge.eval.scoring import loglikelihoods
from lmforge.eval.tasks import ChoiceItem, evaluate_choices, evaluate_qa, read_mmlu_csv, read_qa_jsonl
from lmforge.models import build_from_preset


@pytest.fixture()
def model(tokenizer):
    torch.manual_seed(0)
    return build_from_preset("nano", tokenizer).eval()


def naive_score(model, context, continuation):
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0], -1)
    return sum(logprobs[len(context) - 1 + i, token].item() for i, token in enumerate(continuation))


def test_batched_scores_equal_one_by_one_scores(model, tokenizer):
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    requests = [(encode("Question: Where was Alda Vorn born?\nAnswer:"), encode(" Kelmar")),
                (encode("Kelmar是"), encode("一座城市")),
                (encode("12 + 30 ="), encode(" 42. The answer is 42."))]
    batched = loglikelihoods(model, tokenizer.pad_token_id, requests, batch_size=2)
    for (context, continuation), score in zip(requests, batched):
        assert score == pytest.approx(naive_score(model, context, continuation), abs=1e-4)


def test_choice_accuracy_groups_scores_per_item(monkeypatch, tokenizer):
    fixed = [-3.0, -1.0, -2.0, -9.0, -5.0, -4.0, -0.5, -7.0, -6.0]  # items of 4, 2 and 3 choices
    monkeypatch.setattr("lmforge.eval.tasks.loglikelihoods", lambda model, pad, requests, batch: fixed[: len(requests)])
    items = [ChoiceItem("q1", ["a", "b", "c", "d"], 1), ChoiceItem("q2", ["a", "b"], 0), ChoiceItem("q3", ["a", "b", "c"], 1)]
    result = evaluate_choices(None, tokenizer, items)
    assert [s["prediction"] for s in result["samples"]] == [1, 1, 0]
    assert result["samples"][2]["scores"] == [-0.5, -7.0, -6.0]
    assert result["acc"] == pytest.approx(1 / 3)


def test_qa_exact_match_uses_numbers_for_arithmetic(monkeypatch, tokenizer):
    replies = ["Kelmar.", "Oruna", "7 * 6 = 42. The answer is 42.", "The answer is 41."]
    monkeypatch.setattr("lmforge.generate.chat_replies", lambda model, tok, conversations, **kw: replies)
    items = [{"question": "q", "answer": "Kelmar", "kind": "fact"}, {"question": "q", "answer": "Tovin", "kind": "fact"},
             {"question": "q", "answer": "42", "kind": "arithmetic"}, {"question": "q", "answer": "42", "kind": "arithmetic"}]
    result = evaluate_qa(None, tokenizer, items)
    assert [s["correct"] for s in result["samples"]] == [True, False, True, False]
    assert result["exact_match"] == 0.5 and result["exact_match_fact"] == 0.5 and result["exact_match_arithmetic"] == 0.5


def test_empty_context_is_refused(model, tokenizer):
    with pytest.raises(ValueError, match="non-empty context"):
        loglikelihoods(model, tokenizer.pad_token_id, [([], [5, 6])])


def test_mmlu_csv_reader_and_its_errors(tmp_path):
    good = tmp_path / "x_test.csv"
    good.write_text('"Q, with comma?",a,b,c,d,C\nKelmar是？,甲,乙,丙,丁,A\n', encoding="utf-8")
    items = read_mmlu_csv(good)
    assert items[0].question == "Q, with comma?" and items[0].answer == 2 and items[1].choices[0] == "甲"
    bad = tmp_path / "bad_test.csv"
    bad.write_text("q,a,b,c,d,A\nq,a,b,c,d,E\n")
    with pytest.raises(DataError, match=r"bad_test.csv:2:"):
        read_mmlu_csv(bad)


def test_qa_reader_errors_name_the_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q"}\n')
    with pytest.raises(DataError, match=r"qa.jsonl:2: each record needs"):
        read_qa_jsonl(path)


def test_answer_normalisation_and_number_extraction():
    assert normalize_answer("  Kelmar. ") == "kelmar"
    assert normalize_answer("ＫＥＬＭＡＲ。") == "kelmar"
    assert exact_match("Kelmar.", "kelmar") and not exact_match("Kelmar city", "Kelmar")
    assert extract_number("12 * 3 = 36. 36 + 5 = 41. The answer is 41.") == "41"
    assert extract_number("首先 7 * 6 = 42。答案是 42。") == "42"
    assert extract_number("so #### 1,234") == "1234"
    assert extract_number("no digits") is None
    assert exact_match("then 36 + 5 = 41", "41", numeric=True)
