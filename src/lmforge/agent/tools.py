"""Tools: plain Python functions whose OpenAI function spec comes from their type hints and docstring.

A call's arguments are checked against the same hints before the function runs, so a model that sends a string
for an integer, forgets an argument or invents one gets a clear tool error back (and the agent goes on) rather
than a Python traceback.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Literal

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}
_ARG_LINE = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)$")


class ToolError(Exception):
    """A tool call that could not run or failed; its message goes back to the model as the tool's result."""


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object
    function: Callable[..., Any]

    @property
    def spec(self) -> dict:
        """The OpenAI `tools` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def __call__(self, arguments: dict) -> str:
        """Check the arguments against the schema, run, and return the result as text (JSON unless a string)."""
        check_arguments(self.parameters, arguments, self.name)
        result = self.function(**arguments)
        return result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)


def tool(function: Callable[..., Any], name: str | None = None) -> Tool:
    """A Tool from a function with type hints on every parameter and a docstring: its first paragraph is the
    description, and an `Args:` section (Google style) describes the parameters."""
    hints = typing.get_type_hints(function)
    doc = inspect.getdoc(function) or ""
    described = _argument_docs(doc)
    properties, required = {}, []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name not in hints:
            raise TypeError(f"{function.__name__}: parameter {parameter.name!r} has no type hint")
        schema = json_schema(hints[parameter.name])
        if parameter.name in described:
            schema["description"] = described[parameter.name]
        if parameter.default is inspect.Parameter.empty:
            required.append(parameter.name)
        else:
            schema["default"] = parameter.default
        properties[parameter.name] = schema
    description = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    return Tool(name or function.__name__, description,
                {"type": "object", "properties": properties, "required": required, "additionalProperties": False},
                function)


def json_schema(hint: Any) -> dict:
    """The JSON schema of a type hint: str, int, float, bool, list[X], dict[str, X], Literal[...], X | None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        options = [json_schema(arg) for arg in args if arg is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
    if origin is list:
        return {"type": "array", **({"items": json_schema(args[0])} if args else {})}
    if origin is dict:
        return {"type": "object", **({"additionalProperties": json_schema(args[1])} if args else {})}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"no JSON schema for the type hint {hint!r}")


def _argument_docs(doc: str) -> dict[str, str]:
    """`name: text` lines of a docstring's `Args:` section (continuation lines joined)."""
    described, current, inside = {}, None, False
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            inside = True
            continue
        if inside and not line.strip():
            break
        if inside:
            match = _ARG_LINE.match(line)
            if match and len(line) - len(line.lstrip()) <= 4:
                current = match.group(1)
                described[current] = match.group(2).strip()
            elif current:
                described[current] += " " + line.strip()
    return described


def check_arguments(schema: dict, arguments: Any, name: str) -> None:
    """Raise ToolError unless the arguments fit the tool's schema (types, required, no unknown names)."""
    if not isinstance(arguments, dict):
        raise ToolError(f"{name}: arguments must be a JSON object, got {type(arguments).__name__}")
    properties = schema.get("properties", {})
    unknown = sorted(set(arguments) - set(properties))
    if unknown and schema.get("additionalProperties", True) is False:
        raise ToolError(f"{name}: unknown argument(s) {unknown}; it takes {sorted(properties)}")
    missing = sorted(set(schema.get("required", [])) - set(arguments))
    if missing:
        raise ToolError(f"{name}: missing argument(s) {missing}")
    for key, value in arguments.items():
        if key in properties and not _fits(properties[key], value):
            raise ToolError(f"{name}: argument {key!r} must be {_describe(properties[key])}, got {value!r}")


def _fits(schema: dict, value: Any) -> bool:
    if "enum" in schema:
        return value in schema["enum"]
    if "anyOf" in schema:
        return any(_fits(option, value) for option in schema["anyOf"])
    kind = schema.get("type")
    if isinstance(kind, list):  # {"type": ["string", "null"]}
        return any(_fits({**schema, "type": one}, value) for one in kind)
    checks = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "null": lambda v: v is None, "object": lambda v: isinstance(v, dict),
              "array": lambda v: isinstance(v, list) and all(_fits(schema.get("items", {}), x) for x in v)}
    return checks[kind](value) if kind in checks else True


def _describe(schema: dict) -> str:
    if "enum" in schema:
        return f"one of {schema['enum']}"
    if "anyOf" in schema:
        return " or ".join(_describe(option) for option in schema["anyOf"])
    return f"a{'n' if schema.get('type', 'x')[0] in 'aeiou' else ''} {schema.get('type', 'value')}"
