import re

import pytest

from conftest import write_jsonl
from lmforge.config import ConfigError
from lmforge.data import DataError
from lmforge.eval.custom import load_custom_task

REVIEWS = [
    {"id": "r1", "text": "Great phone, 好用", "label": "positive", "shop": "a"},
    {"id": "r2", "text": "Broke in a day", "label": "negative", "shop": "b"},
    {"id": "r3", "text": "It works", "label": "positive", "shop": "a"},
]


def _yaml(folder, text: str):
    path = folder / "task.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_classification_task_with_fixed_labels_subjects_and_filter(tmp_path):
    write_jsonl(tmp_path / "reviews.jsonl", REVIEWS)
    task = load_custom_task(_yaml(tmp_path, """
name: sentiment
data: reviews.jsonl
where: {shop: a}
subject: "shop-{shop}"
prompt: "Review: {text}\\nSentiment:"
target: "{label}"
choices: [negative, positive]
metrics: [acc, f1_macro]
"""))
    assert (task.name, task.kind, task.metrics) == ("sentiment", "choice", ["acc", "f1_macro"])
    assert [(d.id, d.query, d.gold, d.subject) for d in task.docs] == [
        ("r1", "Review: Great phone, 好用\nSentiment:", 1, "shop-a"), ("r3", "Review: It works\nSentiment:", 1, "shop-a")]


def test_choices_from_a_field_with_letter_answers_and_fewshot(tmp_path):
    rows = [{"question": f"q{i}", "options": ["x", "y", "z"], "answer": "C"} for i in range(2)]
    write_jsonl(tmp_path / "test.jsonl", rows)
    write_jsonl(tmp_path / "dev.jsonl", rows[:1])
    task = load_custom_task(_yaml(tmp_path, "name: t\ndata: test.jsonl\nfewshot_data: dev.jsonl\nprompt: 'Q: {question} A:'\n"
                                            "choices: options\nnum_fewshot: 1\n"))
    assert [d.gold for d in task.docs] == [2, 2] and task.docs[0].choices == ["x", "y", "z"]
    assert task.fewshot_docs[0].shot(" ") == "Q: q0 A: z" and task.num_fewshot == 1


def test_generation_task_extracts_the_answer_by_pattern(tmp_path):
    write_jsonl(tmp_path / "math.jsonl", [{"q": "2+2?", "a": "4"}])
    task = load_custom_task(_yaml(tmp_path, """
name: math
data: math.jsonl
prompt: "{q}"
target: "{a}"
chat: true
generate: {until: ["\\n\\n"], max_new_tokens: 20, answer_pattern: "answer is (-?\\\\d+)"}
metrics: [exact_match, rouge_l]
"""))
    assert task.kind == "generate" and task.chat and task.until == ["\n\n"] and task.max_new_tokens == 20
    assert task.extract("So the answer is 3, no, the answer is 4.") == "4"
    assert task.extract("no number here") is None
    assert task.docs[0].gold == "4" and task.docs[0].target == "4"


@pytest.mark.parametrize("body, problem", [
    ("prompt: '{missing}'\nchoices: [a, b]\n", r"data.jsonl:1: the template needs field 'missing'"),
    ("prompt: '{q}'\ntarget: '{a}'\nchoices: [a, b]\n", r"data.jsonl:2: answer 'c' is not a choice"),
    ("prompt: '{q}'\ntarget: '{a}'\n", "exactly one of 'choices'"),
    ("prompt: '{q}'\nchoices: [a]\nmetrics: [accuracy]\n", r"unknown metric\(s\) \['accuracy'\] for a choice task"),
    ("prompt: '{q}'\nchoices: [a]\nmetrics: [acc, rouge_l]\n", r"unknown metric\(s\) \['rouge_l'\] for a choice task"),
    ("prompt: '{q}'\ngenerate: {}\nmetrics: [acc_norm]\n", r"\['acc_norm'\] for a generate task"),
    ("prompt: '{q}'\ngenerate: {answer_pattern: '(\\d'}\n", "answer_pattern is not a valid regular expression"),
    ("prompt: '{q} {0}'\nchoices: [a]\n", r"data.jsonl:1: bad template"),
    ("prompt: '{q}'\nchoices: [a]\nwhere: {q: nothing}\n", "no records match"),
    ("prompt: '{q}'\nchoise: [a]\n", "did you mean 'choices'"),
])
def test_bad_task_files_name_the_file_and_line(tmp_path, body, problem):
    write_jsonl(tmp_path / "data.jsonl", [{"q": "one", "a": "a"}, {"q": "two", "a": "c"}])
    with pytest.raises((DataError, ValueError, ConfigError), match=problem):
        load_custom_task(_yaml(tmp_path, "name: t\ndata: data.jsonl\n" + body))


def test_broken_json_line_is_reported_with_its_line(tmp_path):
    (tmp_path / "data.jsonl").write_text('{"q": "one"}\n{"q": \n', encoding="utf-8")
    with pytest.raises(DataError, match=re.escape("data.jsonl:2")):
        load_custom_task(_yaml(tmp_path, "name: t\ndata: data.jsonl\nprompt: '{q}'\nchoices: [a, b]\ntarget: a\n"))
