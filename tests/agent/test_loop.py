"""The agent loop: answers through tools, its guards, its trace, and replaying the trace."""

import json
import time

import pytest

from lmforge.agent.builtins import builtin_tools
from lmforge.agent.loop import Guards, read_trace, replay, run_agent
from lmforge.agent.tools import tool


def call(name, arguments, number=0):
    return {"id": f"call_{number}", "type": "function",
            "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}}


class Scripted:
    """Replies from a list; a reply may be a function of the conversation so far."""

    name = "scripted"

    def __init__(self, replies, delay=0.0):
        self.replies, self.delay, self.seen = list(replies), delay, []

    def respond(self, conversations, tools, decoding):
        time.sleep(self.delay)
        self.seen.append((conversations[0][:], tools[0]))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        reply = reply(conversations[0]) if callable(reply) else reply
        return [{"role": "assistant", "content": None, **reply}]


def test_the_calculator_result_reaches_the_model_and_the_trace_records_it(tmp_path):
    model = Scripted([{"tool_calls": [call("calculator", {"expression": "1234 * 5678"})]},
                      lambda messages: {"content": f"It is {messages[-1]['content']}."}])
    result = run_agent(model, builtin_tools(["calculator"]), "What is 1234 * 5678?", trace_path=tmp_path / "t.jsonl")
    assert (result.answer, result.reason, result.steps) == ("It is 7006652.", "answer", 2)
    assert model.seen[0][1][0]["function"]["name"] == "calculator"  # the tool's spec went to the model
    events = read_trace(tmp_path / "t.jsonl")
    assert [e["type"] for e in events] == ["start", "model", "tool", "model", "end"]
    assert events[2]["result"] == "7006652" and events[2]["error"] is None and events[-1]["reason"] == "answer"


def test_tool_mistakes_go_back_to_the_model(tmp_path):
    model = Scripted([{"tool_calls": [call("calculatr", {"expression": "1"}, 1), call("calculator", "{bad json", 2),
                                      call("calculator", {"expression": "1/0"}, 3)]}, {"content": "sorry"}])
    result = run_agent(model, builtin_tools(["calculator"]), "x")
    errors = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert "no tool named 'calculatr'" in errors[0] and "not valid JSON" in errors[1] and "ZeroDivision" in errors[2]
    assert result.answer == "sorry" and [m["tool_call_id"] for m in result.messages if m["role"] == "tool"] == [
        "call_1", "call_2", "call_3"]


def test_the_third_identical_call_stops_the_run():
    model = Scripted([{"tool_calls": [call("calculator", {"expression": "2+2"})]},
                      {"tool_calls": [call("calculator", '{"expression":  "2+2"}')]},  # spelt differently, same call
                      {"tool_calls": [call("calculator", {"expression": "2+2"})]}, {"content": "never"}])
    result = run_agent(model, builtin_tools(["calculator"]), "x")
    assert (result.reason, result.steps, result.answer) == ("repeated_call", 3, None)
    assert sum(m["role"] == "tool" for m in result.messages) == 2


def test_step_and_time_caps():
    looping = lambda messages: {"tool_calls": [call("calculator", {"expression": str(len(messages))})]}  # noqa: E731
    assert run_agent(Scripted([looping]), builtin_tools(["calculator"]), "x", Guards(max_steps=4)).reason == \
        "step_limit"
    slow = run_agent(Scripted([looping], delay=0.2), builtin_tools(["calculator"]), "x",
                     Guards(max_steps=50, max_seconds=0.5))
    assert slow.reason == "time_limit" and slow.steps <= 4


def test_a_replay_repeats_the_tools_and_spots_a_changed_one(tmp_path):
    def lookup(city: str) -> str:
        """Find a city's mayor.

        Args:
            city: the city
        """
        return {"Traa": "Brondso Figond"}.get(city, "unknown")

    model = Scripted([{"tool_calls": [call("lookup", {"city": "Traa"})]}, {"content": "Brondso Figond"}])
    run_agent(model, [tool(lookup)], "Who is the mayor of Traa?", trace_path=tmp_path / "t.jsonl")
    assert replay(tmp_path / "t.jsonl", [tool(lookup)]) == {"steps": 2, "tool_calls": 1, "differences": [],
                                                             "same_end": True}

    def changed(city: str) -> str:
        """Find a city's mayor (after the election).

        Args:
            city: the city
        """
        return "Alda Vorn"

    report = replay(tmp_path / "t.jsonl", [tool(changed, name="lookup")])
    assert report["differences"] == [{"step": 1, "name": "lookup", "recorded": "Brondso Figond", "now": "Alda Vorn"}]


def test_a_broken_trace_is_named(tmp_path):
    (tmp_path / "t.jsonl").write_text('{"type": "start", "task": "x"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match="t.jsonl:2"):
        read_trace(tmp_path / "t.jsonl")


class Arithmetic:
    """Calls the calculator with the question's expression, then states the result; or answers 0 without tools."""

    name = "arithmetic"

    def __init__(self):
        self.batches = []

    def respond(self, conversations, tools, decoding):
        self.batches.append(len(conversations))
        replies = []
        for messages in conversations:
            if messages[-1]["role"] == "tool":
                replies.append({"role": "assistant", "content": f"The answer is {messages[-1]['content']}."})
            elif "Compute" in messages[-1]["content"]:
                expression = messages[-1]["content"].split("Compute ")[1].rstrip(".")
                replies.append({"role": "assistant", "content": None,
                                "tool_calls": [call("calculator", {"expression": expression})]})
            else:
                replies.append({"role": "assistant", "content": "The answer is 0."})
        return replies


def test_a_data_set_runs_batched_and_is_scored(tmp_path, monkeypatch):
    from conftest import write_jsonl

    from lmforge.agent import AgentRunConfig, run_agent_data

    model = Arithmetic()
    monkeypatch.setattr("lmforge.clients.chat_model", lambda *args: model)
    data = write_jsonl(tmp_path / "q.jsonl", [{"question": "Compute 12 * 3.", "answer": "36"},
                                             {"question": "Compute 7 + 8.", "answer": "15"},
                                             {"question": "How many apples?", "answer": "4"}])
    report = run_agent_data(AgentRunConfig(data=str(data), model="unused", trace=str(tmp_path / "out.jsonl")))
    assert report["n"] == 3 and report["exact_match"]["value"] == pytest.approx(2 / 3)
    assert report["used_tools"]["value"] == pytest.approx(2 / 3)
    assert model.batches == [3, 2]  # every open conversation in one batch per step
    rows = [json.loads(line) for line in open(tmp_path / "out.jsonl", encoding="utf-8")]
    assert [r["prediction"] for r in rows] == ["36", "15", "0"] and rows[0]["tool_calls"] == 1


def test_task_or_data_not_both():
    from lmforge.agent import AgentRunConfig
    from lmforge.config import ConfigError

    with pytest.raises((ValueError, ConfigError), match="exactly one of --task"):
        AgentRunConfig(task="x", data="y", model="m")


def test_a_trace_that_hit_the_time_limit_replays(tmp_path):
    looping = lambda messages: {"tool_calls": [call("calculator", {"expression": str(len(messages))})]}  # noqa: E731
    result = run_agent(Scripted([looping], delay=0.15), builtin_tools(["calculator"]), "x",
                       Guards(max_steps=50, max_seconds=0.4), trace_path=tmp_path / "t.jsonl")
    assert result.reason == "time_limit"
    assert [e["reason"] for e in read_trace(tmp_path / "t.jsonl") if e["type"] == "guard"] == ["time_limit"]
    report = replay(tmp_path / "t.jsonl", builtin_tools(["calculator"]))
    assert report["same_end"] and report["differences"] == [] and report["steps"] == result.steps
