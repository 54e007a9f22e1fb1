"""Tool calls in streamed model output (whole replies are parsed by `lmforge.toolcalls`), and llguidance grammars
that force a model to call tools.

The block format is the one the built-in chat templates train on (`lmforge.templates`), and the grammar writes
JSON with the same separators, so a forced call reads exactly like a trained one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lmforge.toolcalls import CLOSE, OPEN, call_from_block

_NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}
_TEMPLATE_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}


@dataclass
class ContentDelta:
    """Reply text to stream on as content."""

    text: str


@dataclass
class ToolCallDone:
    """A whole tool call, in the shape `parse_tool_calls` returns."""

    call: dict


class ToolStreamParser:
    """`parse_tool_calls` for a reply arriving in pieces: text streams on at once, except a tail that may be the
    start of `<tool_call>` and, until the reply says something other than whitespace, the whitespace before it
    (a reply of tool calls alone has no content, as in `parse_tool_calls`). A block is held until it closes."""

    def __init__(self) -> None:
        self._buffer = ""
        self._in_block = False
        self._blank = ""
        self._spoke = False

    def feed(self, delta: str) -> list[ContentDelta | ToolCallDone]:
        self._buffer += delta
        events: list[ContentDelta | ToolCallDone] = []
        while self._advance(events):
            pass
        return events

    def finish(self) -> list[ContentDelta | ToolCallDone]:
        """Whatever is still held, once the reply has ended: a tail that never became a tag is text, and an open
        block is a call if its JSON is complete."""
        events: list[ContentDelta | ToolCallDone] = []
        if self._in_block:
            self._end_block(self._buffer, "", events)
        else:
            self._text(self._buffer, events)
        self._buffer = ""
        return events

    def _advance(self, events: list) -> bool:
        """Handle the buffer up to the next tag; False when it needs more text."""
        if self._in_block:
            end = self._buffer.find(CLOSE)
            if end < 0:
                return False
            self._end_block(self._buffer[:end], CLOSE, events)
            self._buffer = self._buffer[end + len(CLOSE) :]
            return True
        start = self._buffer.find(OPEN)
        if start < 0:
            cut = len(self._buffer) - _partial_tag_length(self._buffer)
            self._text(self._buffer[:cut], events)
            self._buffer = self._buffer[cut:]
            return False
        self._text(self._buffer[:start], events)
        self._buffer = self._buffer[start + len(OPEN) :]
        self._in_block = True
        return True

    def _end_block(self, body: str, closing: str, events: list) -> None:
        self._in_block = False
        call = call_from_block(body)
        if call is None:
            self._text(OPEN + body + closing, events)
        else:
            events.append(ToolCallDone(call))

    def _text(self, text: str, events: list) -> None:
        if self._spoke:
            if text:
                events.append(ContentDelta(text))
            return
        self._blank += text
        if self._blank.strip():
            events.append(ContentDelta(self._blank))
            self._blank, self._spoke = "", True


def _partial_tag_length(text: str) -> int:
    """How many trailing characters of `text` could begin `<tool_call>`."""
    for length in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if text.endswith(OPEN[:length]):
            return length
    return 0


def tool_grammar(tools: list[dict] | None, tool_choice: str | dict | None) -> str | None:
    """A llguidance Lark grammar that lets the model answer only with tool calls: for `required` one or more
    blocks separated by a newline, for a named function one call of it (as OpenAI forces it); None when the model
    may answer freely (`auto`, `none`, no choice)."""
    if tool_choice in (None, "auto", "none"):
        return None
    functions = _function_parameters(tools or [])
    if tool_choice == "required":
        if not functions:
            raise ValueError("tool_choice 'required' needs at least one function in 'tools'")
        return _calls_grammar(functions, several=True)
    name = _chosen_name(tool_choice)
    if name not in functions:
        known = ", ".join(functions) or "none given"
        raise ValueError(f"tool_choice names function {name!r}, which is not among the tools ({known})")
    return _calls_grammar({name: functions[name]}, several=False)


def _function_parameters(tools: list[dict]) -> dict[str, dict]:
    """Each function's parameter schema by name; OpenAI lets a function without parameters leave them out."""
    return {
        tool["function"]["name"]: tool["function"].get("parameters") or _NO_PARAMETERS
        for tool in tools
        if tool.get("type") == "function"
    }


def _chosen_name(tool_choice) -> str:
    """The function a `{"type": "function", "function": {"name": ...}}` choice names."""
    named = isinstance(tool_choice, dict) and tool_choice.get("type") == "function"
    function = tool_choice.get("function") if named else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(
            "tool_choice must be 'auto', 'none', 'required' or "
            f"{{'type': 'function', 'function': {{'name': ...}}}}, got {tool_choice!r}"
        )
    return function["name"]


def _calls_grammar(functions: dict[str, dict], several: bool) -> str:
    """The tags are added tokens, which llguidance matches as special tokens: unquoted `<tool_call>` in Lark."""
    alternatives = " | ".join(f"call_{index}" for index in range(len(functions)))
    rules = [
        'start: call ("\\n" call)*' if several else "start: call",
        f'call: {OPEN} "\\n" ({alternatives}) "\\n" {CLOSE}',
        *(f"call_{index}: %json {json.dumps(_call_schema(name, parameters))}"
          for index, (name, parameters) in enumerate(functions.items())),
    ]
    return "\n".join(rules) + "\n"


def _call_schema(name: str, parameters: dict) -> dict:
    """`{"name": <name>, "arguments": <parameters>}` as one schema; the parameters' `$defs` move to its root, where
    their `#/$defs/...` references point."""
    arguments = {key: value for key, value in parameters.items() if key not in ("$defs", "definitions")}
    definitions = {key: value for key, value in parameters.items() if key in ("$defs", "definitions")}
    return {
        "type": "object",
        "properties": {"name": {"const": name}, "arguments": arguments},
        "required": ["name", "arguments"],
        "additionalProperties": False,
        **definitions,
        "x-guidance": _TEMPLATE_JSON,
    }
