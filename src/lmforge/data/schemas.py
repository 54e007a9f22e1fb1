"""Normalise raw records into the four schemas the trainers consume.

Every schema except "text" ends up as OpenAI-style chat messages, so one
message validator serves "messages" and "preference" alike.
"""

from __future__ import annotations

import json
from typing import Any

from lmforge.data.readers import DataError, RawRecord

ROLES = ("system", "user", "assistant", "tool")

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
    "function": "tool",
    "function_call": "assistant",
}

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


class _Invalid(ValueError):
    """Raised by the helpers below; ``normalize`` adds the record's source."""


def normalize(raw: RawRecord, schema: str) -> dict:
    """Return ``raw`` in the shape of ``schema``, or raise ``DataError`` saying what is wrong."""
    normaliser = _NORMALISERS.get(schema)
    if normaliser is None:
        raise ValueError(f"unknown schema {schema!r} (expected one of {', '.join(SCHEMAS)})")
    if raw.error is not None:
        raise DataError(raw.source, raw.error)
    try:
        return normaliser(raw.value)
    except _Invalid as err:
        raise DataError(raw.source, str(err)) from None


def _normalize_text(value: Any) -> dict:
    record = {"text": value} if isinstance(value, str) else _require_object(value)
    return {"text": _required_str(record, "text")}


def _normalize_alpaca(value: Any) -> dict:
    record = _require_object(value)
    instruction = _required_str(record, "instruction")
    output = _required_str(record, "output")
    extra_input = _optional_str(record, "input")
    system = _optional_str(record, "system")
    prompt = f"{instruction}\n\n{extra_input}" if extra_input else instruction
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return {"messages": messages}


def _normalize_messages(value: Any) -> dict:
    """Accept OpenAI ``messages`` or ShareGPT ``conversations``; other top-level keys pass through."""
    record = _require_object(value)
    key = _conversation_key(record)
    messages = _with_system(_chat_messages(record[key], key), _optional_str(record, "system"))
    _check_ends_with_assistant(messages)
    _check_tools(record.get("tools"))
    extras = {name: extra for name, extra in record.items() if name not in (key, "system")}
    return {"messages": messages, **extras}


def _normalize_preference(value: Any) -> dict:
    """Accept an explicit prompt, or TRL's implicit form that repeats it in both answers."""
    record = _require_object(value)
    chosen = _turns(record, "chosen", "assistant")
    rejected = _turns(record, "rejected", "assistant")
    if record.get("prompt") is None:
        prompt, chosen, rejected = _split_implicit_prompt(record, chosen, rejected)
    else:
        prompt = _turns(record, "prompt", "user")
    _check_prompt(prompt)
    _check_completion(chosen, "chosen")
    _check_completion(rejected, "rejected")
    if chosen == rejected:
        raise _Invalid("'chosen' and 'rejected' are identical")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _normalize_unpaired(value: Any) -> dict:
    """One answer to a prompt: KTO's unpaired form with a good (true) or bad (false) label, or an answer to
    score (no label needed)."""
    record = _require_object(value)
    prompt = _turns(record, "prompt", "user")
    completion = _turns(record, "completion", "assistant")
    _check_prompt(prompt)
    _check_completion(completion, "completion")
    label = record.get("label")
    if label is not None and not isinstance(label, bool):
        raise _Invalid(f"'label' must be true (a good answer) or false (a bad one), got {_describe(label)}")
    return {"prompt": prompt, "completion": completion, "label": label}


def _normalize_prompt(value: Any) -> dict:
    """A prompt for online RL; the other keys (a gold answer, say) pass through to the reward functions."""
    record = _require_object(value)
    prompt = _turns(record, "prompt", "user")
    _check_prompt(prompt)
    return {**record, "prompt": prompt}


def _describe(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _keys_present(record: dict) -> str:
    return ", ".join(map(str, record)) or "none"


def _require_object(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    hint = " (plain text only fits schema 'text')" if isinstance(value, str) else ""
    raise _Invalid(f"expected a JSON object, got {_describe(value)}{hint}")


def _require_key(record: dict, key: str, where: str = "") -> Any:
    """``record[key]``; a null value counts as missing, since columnar formats fill gaps with null."""
    if record.get(key) is None:
        prefix = f"{where}: " if where else ""
        raise _Invalid(f"{prefix}missing key {key!r} (keys present: {_keys_present(record)})")
    return record[key]


def _required_str(record: dict, key: str) -> str:
    value = _require_key(record, key)
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} must be a string, got {_describe(value)}")
    if not value.strip():
        raise _Invalid(f"{key!r} is empty")
    return value


def _optional_str(record: dict, key: str) -> str:
    value = record.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} must be a string, got {_describe(value)}")
    return value


def _conversation_key(record: dict) -> str:
    for key in ("messages", "conversations"):
        if record.get(key) is not None:
            return key
    raise _Invalid(
        f"missing key 'messages' (or ShareGPT 'conversations') (keys present: {_keys_present(record)})"
    )


def _chat_messages(items: Any, key: str) -> list[dict]:
    """Validate a list of chat messages (OpenAI or ShareGPT turns) and return OpenAI-style copies."""
    if not isinstance(items, list):
        raise _Invalid(f"{key!r} must be a list of messages, got {_describe(items)}")
    if not items:
        raise _Invalid(f"{key!r} is an empty list")
    messages = [_chat_message(item, f"{key}[{index}]") for index, item in enumerate(items)]
    for index, message in enumerate(messages[1:], start=1):
        if message["role"] == "system":
            raise _Invalid(f"{key}[{index}] is a system message; system is only allowed first")
    return messages


def _chat_message(item: Any, where: str) -> dict:
    if not isinstance(item, dict):
        raise _Invalid(f"{where} must be an object, got {_describe(item)}")
    message = _from_sharegpt(item, where) if "from" in item else item
    message = {name: part for name, part in message.items() if part is not None or name == "content"}
    role = _require_key(message, "role", where)
    if role not in ROLES:
        raise _Invalid(f"{where} has unknown role {role!r} (expected one of {', '.join(ROLES)})")
    _check_content(message, where)
    _check_tool_fields(message, where)
    return message


def _from_sharegpt(turn: dict, where: str) -> dict:
    speaker = turn["from"]
    role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
    if role is None:
        raise _Invalid(
            f"{where} has unknown role {speaker!r} (expected one of {', '.join(SHAREGPT_ROLES)})"
        )
    content = _require_key(turn, "value", where)
    rest = {name: part for name, part in turn.items() if name not in ("from", "value")}
    return {"role": role, "content": content, **rest}


def _check_content(message: dict, where: str) -> None:
    """Content must be text; only an assistant turn that calls tools may leave it empty."""
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        raise _Invalid(f"{where} 'tool_calls' must be a list, got {_describe(tool_calls)}")
    calls_tools = message["role"] == "assistant" and bool(tool_calls)
    content = message.get("content")
    if calls_tools and content in (None, ""):
        return
    if "content" not in message:
        raise _Invalid(f"{where}: missing key 'content' (keys present: {_keys_present(message)})")
    if not isinstance(content, str):
        raise _Invalid(f"{where} content must be a string, got {_describe(content)}")
    if message["role"] == "assistant" and not calls_tools and not content.strip():
        raise _Invalid(f"{where} is an assistant message with empty content and no tool_calls")


def _check_tool_fields(message: dict, where: str) -> None:
    """Tool calls in the OpenAI shape, on assistant turns only; a tool result may say which call and function
    it answers."""
    if message.get("tool_calls") and message["role"] != "assistant":
        raise _Invalid(
            f"{where} is a {message['role']!r} message with tool_calls; only assistant messages call tools"
        )
    for number, call in enumerate(message.get("tool_calls") or []):
        _check_tool_call(call, f"{where} tool_calls[{number}]")
    for key in ("tool_call_id", "name"):
        if key in message and not isinstance(message[key], str):
            raise _Invalid(f"{where} {key!r} must be a string, got {_describe(message[key])}")


def _check_tool_call(call: Any, where: str) -> None:
    if not isinstance(call, dict):
        raise _Invalid(f"{where} must be an object, got {_describe(call)}")
    function = _function_of(call, where)
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        arguments = _parsed_arguments(arguments, where)
    if arguments is not None and not isinstance(arguments, dict):
        raise _Invalid(
            f"{where} arguments must be an object (or a JSON string of one), got {_describe(arguments)}"
        )


def _function_of(spec: dict, where: str) -> dict:
    """The ``function`` object of a tool call or tool spec, which must name its function."""
    function = _require_key(spec, "function", where)
    if not isinstance(function, dict):
        raise _Invalid(f"{where} 'function' must be an object, got {_describe(function)}")
    name = _require_key(function, "name", f"{where} function")
    if not isinstance(name, str) or not name.strip():
        raise _Invalid(f"{where} function 'name' must be a non-empty string, got {_describe(name)}")
    return function


def _parsed_arguments(arguments: str, where: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError as err:
        raise _Invalid(f"{where} arguments are not valid JSON ({err})") from None


def _check_tools(tools: Any) -> None:
    """``tools``: OpenAI function specs, as a chat request would list them."""
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _Invalid(f"'tools' must be a list of function specs, got {_describe(tools)}")
    for number, tool in enumerate(tools):
        where = f"tools[{number}]"
        if not isinstance(tool, dict):
            raise _Invalid(f"{where} must be an object, got {_describe(tool)}")
        if tool.get("type") != "function":
            raise _Invalid(f"{where} 'type' must be 'function', got {tool.get('type')!r}")
        parameters = _function_of(tool, where).get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise _Invalid(
                f"{where} function 'parameters' must be a JSON schema object, got {_describe(parameters)}"
            )


def _with_system(messages: list[dict], system: str) -> list[dict]:
    """Prepend a ShareGPT-style top-level system prompt, refusing a second one."""
    if not system:
        return messages
    if messages[0]["role"] == "system":
        raise _Invalid("both a top-level 'system' and a leading system message")
    return [{"role": "system", "content": system}, *messages]


def _check_ends_with_assistant(messages: list[dict]) -> None:
    roles = [message["role"] for message in messages]
    if "assistant" not in roles:
        raise _Invalid(f"no assistant message (roles: {', '.join(roles)})")
    if roles[-1] != "assistant":
        raise _Invalid(f"the last message must be from the assistant, got {roles[-1]!r}")


def _turns(record: dict, key: str, role: str) -> list[dict]:
    """A preference field as messages: a string becomes one message with ``role``."""
    value = _require_key(record, key)
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid(f"{key!r} is empty")
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return _chat_messages(value, key)
    raise _Invalid(f"{key!r} must be a string or a list of messages, got {_describe(value)}")


def _split_implicit_prompt(
    record: dict, chosen: list[dict], rejected: list[dict]
) -> tuple[list[dict], list[dict], list[dict]]:
    """Move the turns both answers start with into the prompt, leaving each answer one turn at least."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == 0:
        raise _Invalid(
            "missing key 'prompt', and 'chosen'/'rejected' share no leading prompt messages "
            f"(keys present: {_keys_present(record)})"
        )
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _check_prompt(prompt: list[dict]) -> None:
    last_role = prompt[-1]["role"]
    if last_role not in ("user", "tool"):
        raise _Invalid(f"the prompt must end with a user or tool message, got {last_role!r}")


def _check_completion(messages: list[dict], key: str) -> None:
    """An answer is what follows the prompt: assistant turns, perhaps with tool results."""
    for message in messages:
        if message["role"] not in ("assistant", "tool"):
            raise _Invalid(
                f"{key!r} holds a {message['role']!r} message after the prompt; "
                "answers may only hold assistant and tool messages"
            )
    if messages[-1]["role"] != "assistant":
        raise _Invalid(f"{key!r} must end with an assistant message, got {messages[-1]['role']!r}")


_NORMALISERS = {
    "text": _normalize_text,
    "alpaca": _normalize_alpaca,
    "messages": _normalize_messages,
    "preference": _normalize_preference,
    "unpaired": _normalize_unpaired,
    "prompt": _normalize_prompt,
}
SCHEMAS = tuple(_NORMALISERS)
