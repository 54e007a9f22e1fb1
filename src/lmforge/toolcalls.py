"""Tool calls inside model text: Hermes/Qwen2.5 `<tool_call>{json}</tool_call>` blocks, the format lmforge's chat
templates train on, parsed into OpenAI tool calls. In the core because the server and agents over a local model
both read replies through it.
"""

from __future__ import annotations

import json
import re
import secrets

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(f"{re.escape(OPEN)}(.*?)(?:{re.escape(CLOSE)}|\\Z)", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str | None, list[dict]]:
    """The text outside the tool-call blocks (None if blank) and the calls, in order. A block whose JSON is not a
    call (invalid, or without a name) stays in the text as written. A last block left open (generation stopped
    before `</tool_call>`) still counts if its JSON is complete."""
    outside, calls, position = [], [], 0
    for match in _BLOCK.finditer(text):
        call = call_from_block(match.group(1))
        if call is not None:
            outside.append(text[position : match.start()])
            calls.append(call)
            position = match.end()
    outside.append(text[position:])
    content = "".join(outside)
    return (content if content.strip() else None), calls


def call_from_block(body: str) -> dict | None:
    """An OpenAI tool call from a block's `{"name": ..., "arguments": {...}}`, or None if it is not one."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or not payload["name"]:
        return None
    arguments = payload.get("arguments", {})
    if not isinstance(arguments, dict):
        return None
    compact = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
    return {"id": f"call_{secrets.token_hex(12)}", "type": "function",
            "function": {"name": payload["name"], "arguments": compact}}
