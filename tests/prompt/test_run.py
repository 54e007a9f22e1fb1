"""`lmforge prompt run` end to end against a scripted chat model: scoring, voting, the format spread, the run folder."""

import json

import pytest
import yaml

from lmforge.clients import Decoding
from lmforge.prompt import PromptRunConfig, run_prompt
from lmforge.runs import RunExistsError
from conftest import write_jsonl

QUESTIONS = [{"question": f"What is {a} + {b}?", "answer": str(a + b)} for a, b in [(2, 3), (10, 4), (7, 7), (1, 8)]]
QUESTIONS.append({"question": "Note: at 10:30, see https://x.org\nWhat is 5 + 5?", "answer": "10"})  # formats keep it


class ScriptedModel:
    """Right only when the prompt's labels are written as in the template ('Question:'), wrong otherwise; with
    several samples the first one is always wrong, so only the vote gets it right."""

    name = "scripted"

    def __init__(self):
        self.calls = []

    def complete(self, conversations, decoding: Decoding, n=1):
        self.calls.append((conversations, decoding, n))
        return [self._replies(messages[-1]["content"], n) for messages in conversations]

    def _replies(self, prompt, n):
        question = next(q for q in QUESTIONS if q["question"] in prompt)
        right = f"Adding up. The answer is {question['answer']}." if "Question: " in prompt else "The answer is 0."
        return [right] if n == 1 else ["The answer is -1.", right, right][:n]


@pytest.fixture()
def scripted(monkeypatch):
    model = ScriptedModel()
    monkeypatch.setattr("lmforge.clients.chat_model", lambda *args: model)
    return model


def write_program(tmp_path, **fields):
    write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    program = {"name": "sums", "template": "Question: {{ question }}\nAnswer:", "cot": "Think step by step.",
               "data": "questions.jsonl", **fields}
    (tmp_path / "sums.yaml").write_text(yaml.safe_dump(program), encoding="utf-8")
    return str(tmp_path / "sums.yaml")


def test_a_run_scores_each_format_and_reports_the_spread(tmp_path, scripted):
    config = PromptRunConfig(program=write_program(tmp_path), model="unused", formats=4, output_dir=str(tmp_path))
    results = json.loads((run_prompt(config) / "results.json").read_text(encoding="utf-8"))
    values = [row["metrics"]["exact_match"]["value"] for row in results["formats"]]
    assert values[0] == 1.0 and results["formats"][0]["format"] == "as written"
    assert results["spread"]["exact_match"]["min"] < results["spread"]["exact_match"]["max"] == 1.0
    sample = results["formats"][0]["samples"][0]
    assert sample["messages"][-1]["content"].endswith("Think step by step.")
    assert sample["prediction"] == "5" and sample["gold"] == "5"
    low, high = results["formats"][0]["metrics"]["exact_match"]["interval"]
    assert low <= 1.0 <= high
    with pytest.raises(RunExistsError):
        run_prompt(config)


def test_self_consistency_votes_over_samples(tmp_path, scripted):
    config = PromptRunConfig(program=write_program(tmp_path, samples=3, temperature=0.7), model="unused",
                             output_dir=str(tmp_path), seed=5)
    results = json.loads((run_prompt(config) / "results.json").read_text(encoding="utf-8"))
    assert results["formats"][0]["metrics"]["exact_match"]["value"] == 1.0
    _, decoding, n = scripted.calls[0]
    assert n == 3 and decoding.temperature == 0.7 and decoding.seed == 5


def test_an_eval_custom_task_runs_as_a_prompt_program(tmp_path, scripted):
    write_jsonl(tmp_path / "questions.jsonl", QUESTIONS)
    task = {"name": "sums", "data": "questions.jsonl", "prompt": "Question: {question}\nAnswer:",
            "generate": {"until": ["\n\n"], "answer_pattern": r"answer is (\d+)"}, "metrics": ["exact_match"]}
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task), encoding="utf-8")
    config = PromptRunConfig(program=str(tmp_path / "task.yaml"), model="unused", output_dir=str(tmp_path))
    results = json.loads((run_prompt(config) / "results.json").read_text(encoding="utf-8"))
    assert results["formats"][0]["metrics"]["exact_match"]["value"] == 1.0
    _, decoding, _ = scripted.calls[0]
    assert decoding.stop == ["\n\n"]


def test_a_prompt_program_runs_as_an_eval_task(tmp_path):
    from lmforge.eval.runner import load_tasks
    from lmforge.eval.prompting import build_prompts

    path = write_program(tmp_path, system="Be brief.", fewshot={"examples": QUESTIONS[:2], "k": 1},
                        answer_pattern=r"answer is (\d+)")
    [task] = load_tasks([path])
    assert [d.gold for d in task.docs] == ["5", "14", "14", "9", "10"] and task.chat and task.num_fewshot == 1
    prompt = build_prompts(task, task.docs[2:3], 1, cot=True)[0].text
    assert prompt == ("Be brief.\n\nQuestion: What is 2 + 3?\nAnswer:\n5\n\nQuestion: What is 7 + 7?\nAnswer:\n"
                      "Think step by step.")
    assert task.extract("so the answer is 14.") == "14"


def test_votes_need_a_temperature(tmp_path):
    from lmforge.config import ConfigError

    with pytest.raises(ConfigError, match="identical replies"):
        run_prompt(PromptRunConfig(program=write_program(tmp_path, samples=3), model="unused",
                                   output_dir=str(tmp_path)))


def test_a_program_without_data_asks_for_it(tmp_path, scripted):
    path = write_program(tmp_path)
    spec = yaml.safe_load(open(path))
    del spec["data"]
    (tmp_path / "sums.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ValueError, match="--data"):
        run_prompt(PromptRunConfig(program=path, model="unused", output_dir=str(tmp_path)))
