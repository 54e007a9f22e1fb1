"""BFCL-style scoring on hand-written cases."""

import json

import pytest

from lmforge.agent.evaluate import call_matches, calls_match, evaluate_suite, read_suite, same_value, summary
from lmforge.clients import Decoding

WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather in a city.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, "required": ["city"]}}}


@pytest.mark.parametrize("value, accepted, same", [
    ("New York", "new york", True), ("New-York!", "newyork", False), ("San Francisco, CA", "sanfrancisco ca", True),
    (3, 3.0, True), (3.5, 3, False), ("3", 3, False), (True, 1, False), ([1, "A"], [1.0, "a"], True),
    ({"a": 1}, {"a": 1, "b": 2}, False),
])
def test_values_compare_like_bfcl(value, accepted, same):
    assert same_value(value, accepted) is same


def test_one_call_against_its_ground_truth():
    truth = {"weather": {"city": ["Kelmar", "kelmar city"], "unit": ["c", ""]}}  # unit is optional
    assert call_matches({"name": "weather", "arguments": {"city": "KELMAR"}}, truth)
    assert call_matches({"name": "weather", "arguments": {"city": "Kelmar", "unit": "c"}}, truth)
    assert not call_matches({"name": "weather", "arguments": {"city": "Kelmar", "unit": "f"}}, truth)
    assert not call_matches({"name": "weather", "arguments": {"unit": "c"}}, truth)  # required city missing
    assert not call_matches({"name": "weather", "arguments": {"city": "Kelmar", "day": 1}}, truth)  # unknown
    assert not call_matches({"name": "forecast", "arguments": {"city": "Kelmar"}}, truth)
    assert not call_matches({"name": "weather", "arguments": None}, truth)  # arguments that did not parse


def test_parallel_calls_match_in_any_order_and_all_of_them():
    truth = [{"weather": {"city": ["Kelmar"]}}, {"weather": {"city": ["Traa"]}}]
    kelmar, traa = ({"name": "weather", "arguments": {"city": c}} for c in ("Kelmar", "Traa"))
    assert calls_match([traa, kelmar], truth) and not calls_match([traa], truth)
    assert not calls_match([traa, traa], truth) and calls_match([], [])


class Replier:
    name = "replier"

    def __init__(self, by_question):
        self.by_question, self.histories = by_question, []

    def respond(self, conversations, tools, decoding):
        self.histories += [c[:] for c in conversations]
        return [self.by_question[c[-1]["content"]] for c in conversations]


def message(*calls, content=None):
    return {"role": "assistant", "content": content, "tool_calls": [
        {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, (n, a) in enumerate(calls)]}


def test_a_suite_of_every_category(tmp_path):
    cases = [
        {"id": "s", "category": "single", "question": "Weather in Kelmar?", "tools": [WEATHER],
         "ground_truth": [{"weather": {"city": ["Kelmar"], "unit": ["", "c"]}}]},
        {"id": "m", "category": "multiple", "question": "What is 6 * 7?", "tools": [WEATHER, "calculator"],
         "ground_truth": [{"calculator": {"expression": ["6 * 7", "6*7"]}}]},
        {"id": "p", "category": "parallel", "question": "Weather in Kelmar and Traa?", "tools": [WEATHER],
         "ground_truth": [{"weather": {"city": ["Kelmar"]}}, {"weather": {"city": ["Traa"]}}]},
        {"id": "i", "category": "irrelevant", "question": "Tell me a joke.", "tools": [WEATHER], "ground_truth": []},
        {"id": "t", "category": "multi_turn", "tools": ["calculator"], "turns": [
            {"question": "What is 2 + 3?", "ground_truth": [{"calculator": {"expression": ["2 + 3"]}}],
             "results": ["5"]},
            {"question": "And times 4?", "ground_truth": [{"calculator": {"expression": ["5 * 4", "(2 + 3) * 4"]}}],
             "results": ["20"]}]},
    ]
    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    model = Replier({"Weather in Kelmar?": message(("weather", {"city": "kelmar"})),
                     "What is 6 * 7?": message(("weather", {"city": "6 * 7"})),  # the wrong function
                     "Weather in Kelmar and Traa?": message(("weather", {"city": "Traa"}),
                                                            ("weather", {"city": "Kelmar"})),
                     "Tell me a joke.": {"role": "assistant", "content": "No tool for that."},
                     "What is 2 + 3?": message(("calculator", {"expression": "2+3"})),
                     "And times 4?": message(("calculator", {"expression": "5*4"}))})
    from lmforge.agent.builtins import builtin_tools

    tools = {t.name: t for t in builtin_tools(["calculator"])}
    samples = evaluate_suite(model, read_suite(suite), lambda specs: [tools[s] if isinstance(s, str) else s
                                                                      for s in specs], Decoding())
    assert [s["metrics"]["accuracy"] for s in samples] == [1.0, 0.0, 1.0, 1.0, 1.0]
    second_turn = model.histories[-1]  # the ground-truth call and its result come before the second question
    assert [m["role"] for m in second_turn] == ["user", "assistant", "tool", "user"]
    assert second_turn[2]["content"] == "5"
    rows = summary(samples, iters=100)
    assert rows["overall"]["accuracy"] == 0.8 and rows["multiple"] == {"accuracy": 0.0, "interval": [0.0, 0.0], "n": 1}


def test_a_bad_case_names_its_line(tmp_path):
    suite = tmp_path / "suite.jsonl"
    suite.write_text('{"category": "single", "question": "q", "tools": ["calculator"], "ground_truth": []}\n'
                     '{"category": "sideways", "question": "q", "tools": ["calculator"], "ground_truth": []}\n')
    with pytest.raises(ValueError, match="suite.jsonl:2: category must be one of"):
        read_suite(suite)


def test_nested_dicts_ints_and_many_parallel_calls():
    truth = {"book": {"trip": [{"city": ["Kelmar"], "nights": [2]}], "budget": [100.0]}}
    assert call_matches({"name": "book", "arguments": {"trip": {"city": "kelmar", "nights": 2}, "budget": 100}}, truth)
    assert not call_matches({"name": "book", "arguments": {"trip": {"city": "Kelmar", "nights": 2.0},
                                                           "budget": 100}}, truth)  # a float for an int
    many = [{"f": {"i": [i]}} for i in range(12)]
    calls = [{"name": "f", "arguments": {"i": i}} for i in reversed(range(12))]
    assert calls_match(calls, many) and not calls_match(calls[:-1] + [calls[0]], many)


@pytest.mark.parametrize("truth, problem", [
    ([{"a": {"x": ["1"]}, "b": {}}], "each ground_truth entry"), ([{"a": {"x": "1"}}], "must be a non-empty list"),
    ([{"a": {"x": []}}], "must be a non-empty list")])
def test_malformed_ground_truth_is_named(tmp_path, truth, problem):
    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"category": "single", "question": "q", "tools": ["calculator"],
                                 "ground_truth": truth}) + "\n")
    with pytest.raises(ValueError, match=problem):
        read_suite(suite)
