"""The built-in tools: `calculator` (simpleeval, never `eval`), `search` (a RAG index) and `python` (the sandbox)."""

from __future__ import annotations

import math

from lmforge.agent.sandbox import Limits, run_python
from lmforge.agent.tools import Tool, ToolError, tool

MAX_DIGITS = 1000  # longer integers are refused: simpleeval caps each power, not products of powers
MAX_BITS = int(MAX_DIGITS * 3.33)
_MATH = {name: getattr(math, name) for name in ("sqrt", "log", "log10", "exp", "sin", "cos", "tan", "floor", "ceil")}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculator(expression: str) -> str:  # the docstring is the spec a model reads: short for small models
    """Evaluate an arithmetic expression, e.g. (17 + 25) * 3.

    Args:
        expression: numbers with + - * / ** and parentheses
    """
    import ast

    from simpleeval import DEFAULT_OPERATORS, SimpleEval

    operators = {**DEFAULT_OPERATORS, ast.Mult: _multiply, ast.Pow: _power, ast.LShift: _shift}
    evaluator = SimpleEval(operators=operators, functions={**_MATH, "abs": abs, "round": round, "min": min,
                                                           "max": max}, names=_CONSTANTS)
    try:
        value = evaluator.eval(expression)
    except Exception as err:  # simpleeval's own errors, ZeroDivisionError, OverflowError, SyntaxError, ...
        raise ToolError(f"calculator: cannot evaluate {expression!r}: {type(err).__name__}: {err}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ToolError(f"calculator: {expression!r} is not a number")
    return format_number(value)


def _multiply(left, right):
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_BITS:
        raise OverflowError(f"the result would pass {MAX_DIGITS} digits")
    return left * right


def _power(left, right):
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 and \
            right * (abs(left).bit_length() - 1) > MAX_BITS:
        raise OverflowError(f"the result would pass {MAX_DIGITS} digits")
    return left**right


def _shift(left, right):
    if isinstance(right, int) and right > MAX_BITS:
        raise OverflowError(f"the result would pass {MAX_DIGITS} digits")
    return left << right


def format_number(value: int | float) -> str:
    """Integers exactly; floats to 12 significant digits, whole floats without `.0`."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value) if isinstance(value, int) else f"{value:.12g}"


def python_tool(limits: Limits | None = None) -> Tool:
    limits = limits or Limits()

    def python(code: str) -> str:
        """Run Python code in a sandbox (standard library only, no network, no files outside its own temporary
        folder, limited CPU time and memory) and return what it prints.

        Args:
            code: a Python program; print() what you want to see
        """
        result = run_python(code, limits)
        if not result.ok:
            raise ToolError(f"python: {result.error}")
        return result.stdout

    return tool(python)


def search_tool(retriever, k: int = 3) -> Tool:
    def search(query: str) -> str:
        """Search the document index and return the best passages, each with its source.

        Args:
            query: what to look for, in words
        """
        hits, _ = retriever.retrieve(query, k)
        return "\n\n".join(f"[{n}] {hit.title}: {hit.text}" for n, hit in enumerate(hits, 1)) or "no results"

    return tool(search)


BUILTINS = ("calculator", "search", "python")


def builtin_tools(names: list[str], retriever=None, limits: Limits | None = None) -> list[Tool]:
    unknown = sorted(set(names) - set(BUILTINS))
    if unknown:
        raise ValueError(f"unknown tool(s) {unknown}; built-in tools: {', '.join(BUILTINS)}")
    made = {"calculator": lambda: tool(calculator), "python": lambda: python_tool(limits),
            "search": lambda: search_tool(_needs(retriever))}
    return [made[name]() for name in names]


def _needs(retriever):
    if retriever is None:
        raise ValueError("the search tool needs an index (--index)")
    return retriever
