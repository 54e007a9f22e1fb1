import logging

import pytest

from lmforge.eval.prompting import as_chat, build_prompts
from lmforge.eval.task import Doc, Task


def _task(**kwargs) -> Task:
    dev = [Doc(f"dev{i}", f"Question {i}\nAnswer:", 1, choices=["A", "B"], subject="s1" if i < 3 else "s2")
           for i in range(5)]
    docs = [Doc("t0", "Question X\nAnswer:", 0, choices=["A", "B"], subject="s2")]
    options = dict(name="t", kind="choice", docs=docs, metrics=["acc"], fewshot_docs=dev,
                   description=lambda doc: f"About {doc.subject}.\n\n")
    return Task(**{**options, **kwargs})


def test_prompt_joins_description_and_the_subjects_first_shots_like_lm_eval():
    task = _task()
    [prompt] = build_prompts(task, task.docs, 2)
    assert prompt.text == "About s2.\n\nQuestion 3\nAnswer: B\n\nQuestion 4\nAnswer: B\n\nQuestion X\nAnswer:"
    assert prompt.prefix == "About s2.\n\nQuestion 3\nAnswer: B\n\nQuestion 4\nAnswer: B\n\n"
    assert build_prompts(task, task.docs, 1)[0].text == "About s2.\n\nQuestion 3\nAnswer: B\n\nQuestion X\nAnswer:"
    assert build_prompts(task, task.docs, 0)[0].text == "About s2.\n\nQuestion X\nAnswer:"


def test_too_few_shots_are_reported(caplog):
    task = _task()
    with caplog.at_level(logging.WARNING, "lmforge.eval"):
        [prompt] = build_prompts(task, task.docs, 5)
    assert prompt.text.count("Answer: B") == 2 and "fewer than 5 examples to show for s2" in caplog.text


def test_generation_shots_use_the_full_reference_and_cot_adds_the_trigger():
    docs = [Doc("q", "Question: 2+3?\nAnswer:", "5")]
    dev = [Doc("d", "Question: 1+1?\nAnswer:", "2", target="1 plus 1 is 2.\n#### 2")]
    task = Task("g", "generate", docs, ["exact_match"], fewshot_docs=dev, cot_trigger="Let's think step by step.")
    assert build_prompts(task, docs, 1, cot=True)[0].text == (
        "Question: 1+1?\nAnswer: 1 plus 1 is 2.\n#### 2\n\nQuestion: 2+3?\nAnswer: Let's think step by step.")


def test_without_a_dev_split_shots_come_from_other_evaluated_docs():
    docs = [Doc(str(i), f"Q{i}", 0, choices=["x", "y"]) for i in range(3)]
    task = Task("t", "choice", docs, ["acc"])
    assert [p.text for p in build_prompts(task, docs[:2], 1)] == ["Q1 x\n\nQ0", "Q0 x\n\nQ1"]


def test_chat_mode_renders_one_user_turn_with_the_generation_prompt(tokenizer):
    text = as_chat(tokenizer, "Kelmar是哪里？")
    assert text == "<|im_start|>user\nKelmar是哪里？<|im_end|>\n<|im_start|>assistant\n"
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        as_chat(tokenizer, "hi")
