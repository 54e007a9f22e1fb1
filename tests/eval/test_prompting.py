import pytest

from lmforge.eval.prompting import as_chat, build_prompt, fewshot_examples
from lmforge.eval.task import Doc, Task


def _task(**kwargs) -> Task:
    dev = [Doc(f"dev{i}", f"Question {i}\nAnswer:", 1, choices=["A", "B"], subject="s1" if i < 3 else "s2")
           for i in range(5)]
    docs = [Doc("t0", "Question X\nAnswer:", 0, choices=["A", "B"], subject="s2")]
    options = dict(name="t", kind="choice", docs=docs, metrics=["acc"], fewshot_docs=dev,
                   description=lambda doc: f"About {doc.subject}.\n\n")
    return Task(**{**options, **kwargs})


def test_fewshot_takes_the_first_dev_examples_of_the_same_subject():
    task = _task()
    assert [d.id for d in fewshot_examples(task, task.docs[0], 5)] == ["dev3", "dev4"]
    assert [d.id for d in fewshot_examples(task, task.docs[0], 1)] == ["dev3"]


def test_prompt_joins_description_shots_and_question_like_lm_eval():
    task = _task()
    prompt = build_prompt(task, task.docs[0], 2)
    assert prompt == "About s2.\n\nQuestion 3\nAnswer: B\n\nQuestion 4\nAnswer: B\n\nQuestion X\nAnswer:"
    assert build_prompt(task, task.docs[0], 0) == "About s2.\n\nQuestion X\nAnswer:"


def test_generation_shots_use_the_full_reference_and_cot_adds_the_trigger():
    docs = [Doc("q", "Question: 2+3?\nAnswer:", "5")]
    dev = [Doc("d", "Question: 1+1?\nAnswer:", "2", target="1 plus 1 is 2.\n#### 2")]
    task = Task("g", "generate", docs, ["exact_match"], fewshot_docs=dev, cot_trigger="Let's think step by step.")
    assert build_prompt(task, docs[0], 1, cot=True) == (
        "Question: 1+1?\nAnswer: 1 plus 1 is 2.\n#### 2\n\nQuestion: 2+3?\nAnswer: Let's think step by step.")


def test_without_a_dev_split_shots_come_from_other_test_docs():
    docs = [Doc(str(i), f"Q{i}", 0, choices=["x", "y"]) for i in range(3)]
    task = Task("t", "choice", docs, ["acc"])
    assert [d.id for d in fewshot_examples(task, docs[0], 5)] == ["1", "2"]


def test_chat_mode_renders_one_user_turn_with_the_generation_prompt(tokenizer):
    text = as_chat(tokenizer, "Kelmar是哪里？")
    assert text == "<|im_start|>user\nKelmar是哪里？<|im_end|>\n<|im_start|>assistant\n"
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        as_chat(tokenizer, "hi")
