"""Tool schemas from type hints and docstrings, and argument checks against them."""

from typing import Literal

import pytest

from lmforge.agent.tools import ToolError, tool


def book_flight(city: str, seats: int, window: bool = False, budget: float | None = None,
                cabin: Literal["economy", "business"] = "economy", stops: list[str] | None = None) -> dict:
    """Book a flight to a city.

    A second paragraph that is not part of the description.

    Args:
        city: where to fly, e.g. "Kelmar"
        seats: how many seats,
            at most 9
        window: a window seat
    """
    return {"city": city, "seats": seats, "window": window}


def test_the_schema_comes_from_hints_defaults_and_the_args_section():
    spec = tool(book_flight).spec["function"]
    assert spec["name"] == "book_flight" and spec["description"] == "Book a flight to a city."
    assert spec["parameters"] == {
        "type": "object", "additionalProperties": False, "required": ["city", "seats"],
        "properties": {
            "city": {"type": "string", "description": 'where to fly, e.g. "Kelmar"'},
            "seats": {"type": "integer", "description": "how many seats, at most 9"},
            "window": {"type": "boolean", "description": "a window seat", "default": False},
            "budget": {"anyOf": [{"type": "number"}, {"type": "null"}], "default": None},
            "cabin": {"enum": ["economy", "business"], "default": "economy"},
            "stops": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}], "default": None},
        }}


def test_calls_run_and_return_json_text():
    assert tool(book_flight)({"city": "Kelmar", "seats": 2, "budget": 99}) == \
        '{"city": "Kelmar", "seats": 2, "window": false}'


@pytest.mark.parametrize("arguments, problem", [
    ({"city": "Kelmar"}, r"missing argument\(s\) \['seats'\]"),
    ({"city": "Kelmar", "seats": "2"}, "'seats' must be an integer, got '2'"),
    ({"city": "Kelmar", "seats": True}, "'seats' must be an integer"),
    ({"city": "Kelmar", "seats": 1, "cabin": "first"}, r"'cabin' must be one of \['economy', 'business'\]"),
    ({"city": "Kelmar", "seats": 1, "stops": [1]}, "'stops' must be an array or a null"),
    ({"city": "Kelmar", "seats": 1, "pilot": "me"}, r"unknown argument\(s\) \['pilot'\]"),
    (["Kelmar"], "must be a JSON object"),
])
def test_bad_arguments_are_tool_errors(arguments, problem):
    with pytest.raises(ToolError, match=problem):
        tool(book_flight)(arguments)


def test_a_parameter_without_a_hint_is_refused():
    def untyped(x):
        """Nothing."""

    with pytest.raises(TypeError, match="'x' has no type hint"):
        tool(untyped)
