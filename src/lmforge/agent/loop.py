"""The tool-calling loop: ask the model, run the tools it calls, hand back their results, until it answers.

Guards stop a run that would not end on its own: a step cap, a wall-time cap (checked between steps; the python
tool has its own timeout), and a stop at the third identical call (same tool, same arguments), the loop small
models fall into. Every run writes a JSONL trace: the start (task, tools, settings), each model message, each
tool call with its result or error and duration, and the end with the reason. `replay` runs a trace again with
the recorded model messages and fresh tool calls, to check that the tools still answer the same.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.agent.tools import Tool, ToolError
from lmforge.clients import Decoding


@dataclass
class Guards:
    max_steps: int = 8
    max_seconds: float = 120.0
    max_repeats: int = 3


@dataclass
class AgentResult:
    answer: str | None
    reason: str  # answer, step_limit, time_limit, repeated_call
    steps: int
    messages: list[dict] = field(default_factory=list)


class Trace:
    """A JSONL trace file, each event flushed as it happens (a crashed run keeps what it did); `kept` also keeps
    the events in memory (a replay compares them)."""

    def __init__(self, path: str | Path | None, kept: list[dict] | None = None):
        self.file = open(path, "w", encoding="utf-8") if path else None
        self.kept = kept

    def write(self, event: dict) -> None:
        if self.kept is not None:
            self.kept.append(event)
        if self.file:
            self.file.write(json.dumps({"time": round(time.time(), 3), **event}, ensure_ascii=False) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def run_agent(model, tools: list[Tool], task: str, guards: Guards | None = None, decoding: Decoding | None = None,
              trace_path: str | Path | None = None, system: str | None = None) -> AgentResult:
    """One task to an answer or a guard."""
    guards, decoding = guards or Guards(), decoding or Decoding(max_tokens=256)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": task}]
    trace = Trace(trace_path)
    trace.write({"type": "start", "task": task, "system": system, "model": model.name,
                 "tools": [t.spec for t in tools], "guards": guards.__dict__, "decoding": decoding.__dict__})
    try:
        result = _loop(model, {t.name: t for t in tools}, messages, guards, decoding, trace)
        trace.write({"type": "end", "reason": result.reason, "answer": result.answer, "steps": result.steps})
    finally:
        trace.close()
    return result


def _loop(model, tools: dict[str, Tool], messages: list[dict], guards: Guards, decoding: Decoding,
          trace: Trace) -> AgentResult:
    specs = [t.spec for t in tools.values()]
    seen: Counter = Counter()
    start = time.monotonic()
    for step in range(1, guards.max_steps + 1):
        if time.monotonic() - start > guards.max_seconds:
            trace.write({"type": "guard", "step": step, "reason": "time_limit"})
            return AgentResult(None, "time_limit", step - 1, messages)
        [reply] = model.respond([messages], [specs], decoding)
        trace.write({"type": "model", "step": step, "message": reply})
        result = _advance(tools, messages, reply, seen, guards, step, trace)
        if result is not None:
            return result
    trace.write({"type": "guard", "step": guards.max_steps, "reason": "step_limit"})
    return AgentResult(None, "step_limit", guards.max_steps, messages)


def run_agents(model, tools: list[Tool], tasks: list[str], guards: Guards | None = None,
               decoding: Decoding | None = None, system: str | None = None) -> list[AgentResult]:
    """Many tasks at once, in lockstep: each step asks the model about every unfinished conversation in one batch
    (the engine decodes them together), then runs their tool calls. Same guards per task as `run_agent`, but no
    traces (use `run_agent` to trace one)."""
    guards, decoding = guards or Guards(), decoding or Decoding(max_tokens=256)
    by_name, specs = {t.name: t for t in tools}, [t.spec for t in tools]
    head = [{"role": "system", "content": system}] if system else []
    conversations = [[*head, {"role": "user", "content": task}] for task in tasks]
    results: list[AgentResult | None] = [None] * len(tasks)
    seen = [Counter() for _ in tasks]
    start, quiet = time.monotonic(), Trace(None)
    for step in range(1, guards.max_steps + 1):
        open_ = [i for i, result in enumerate(results) if result is None]
        if not open_:
            break
        if time.monotonic() - start > guards.max_seconds:
            for i in open_:
                results[i] = AgentResult(None, "time_limit", step - 1, conversations[i])
            break
        replies = model.respond([conversations[i] for i in open_], [specs] * len(open_), decoding)
        for i, reply in zip(open_, replies):
            results[i] = _advance(by_name, conversations[i], reply, seen[i], guards, step, quiet)
    return [result or AgentResult(None, "step_limit", guards.max_steps, conversations[i])
            for i, result in enumerate(results)]


def _advance(tools: dict[str, Tool], messages: list[dict], reply: dict, seen: Counter, guards: Guards, step: int,
             trace: Trace) -> AgentResult | None:
    """Append the model's reply and run its calls; the result if this ends the task, else None."""
    messages.append(reply)
    if not reply.get("tool_calls"):
        return AgentResult(reply.get("content"), "answer", step, messages)
    for call in reply["tool_calls"]:
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        seen[(name, _canonical(arguments))] += 1
        if seen[(name, _canonical(arguments))] >= guards.max_repeats:
            trace.write({"type": "guard", "step": step, "reason": "repeated_call", "name": name})
            return AgentResult(None, "repeated_call", step, messages)
        messages.append(_tool_message(call, run_tool(tools, name, arguments, step, trace)))
    return None


def run_tool(tools: dict[str, Tool], name: str, arguments: str, step: int, trace: Trace) -> str:
    """The tool's result, or `error: ...` for the model to read: a failing tool never stops the agent."""
    started = time.monotonic()
    try:
        if name not in tools:
            raise ToolError(f"no tool named {name!r}; tools: {', '.join(tools) or 'none'}")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError as err:
            raise ToolError(f"{name}: arguments are not valid JSON ({err})") from None
        content, error = tools[name](parsed), None
    except ToolError as err:
        content, error = f"error: {err}", str(err)
    except Exception as err:  # a user tool's own bug is reported to the model like any other failure
        content, error = f"error: {name} failed: {type(err).__name__}: {err}", f"{type(err).__name__}: {err}"
    trace.write({"type": "tool", "step": step, "name": name, "arguments": arguments, "result": content,
                 "error": error, "seconds": round(time.monotonic() - started, 4)})
    return content


def _tool_message(call: dict, content: str) -> dict:
    return {"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"], "content": content}


def _canonical(arguments) -> str:
    """Arguments as sorted compact JSON, so that the same call spelled differently is still the same call."""
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return str(arguments)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def read_trace(path: str | Path) -> list[dict]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    events = []
    for number, line in enumerate(lines, 1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a trace event ({err})") from None
    if not events or events[0].get("type") != "start":
        raise ValueError(f"{path}: a trace starts with a `start` event")
    return events


class RecordedModel:
    """Plays back a trace's model messages in order, instead of calling a model."""

    def __init__(self, events: list[dict]):
        self.name = events[0].get("model", "recorded")
        self.replies = [event["message"] for event in events if event["type"] == "model"]

    def respond(self, conversations, tools, decoding):
        if not self.replies:
            raise ValueError("the trace has no more model messages than were replayed")
        return [self.replies.pop(0)]


def replay(path: str | Path, tools: list[Tool]) -> dict:
    """Run a trace again (its model messages, today's tools) and list the tool results that differ."""
    events = read_trace(path)
    start = events[0]
    recorded_steps = sum(event["type"] == "model" for event in events)
    guards = Guards(**{**start["guards"], "max_seconds": float("inf"), "max_steps": recorded_steps})
    recorded = [event for event in events if event["type"] == "tool"]
    replayed: list[dict] = []
    trace = Trace(None, kept=replayed)
    messages = ([{"role": "system", "content": start["system"]}] if start.get("system") else []) + [
        {"role": "user", "content": start["task"]}]
    result = _loop(RecordedModel(events), {t.name: t for t in tools}, messages, guards, Decoding(), trace)
    new = [event for event in replayed if event["type"] == "tool"]
    differences = [{"step": old["step"], "name": old["name"], "recorded": old["result"], "now": now["result"]}
                   for old, now in zip(recorded, new) if old["result"] != now["result"]]
    ended = next((e["reason"] for e in reversed(events) if e["type"] == "end"), None)
    same_end = result.reason == ended or (ended == "time_limit" and result.reason == "step_limit")  # no clock here
    return {"steps": result.steps, "tool_calls": len(new), "differences": differences, "same_end": same_end}
