"""Reward functions for the GRPO stage: built-ins, user functions, and the weighted set a recipe lists.

A reward function follows TRL's convention, so TRL reward functions work unchanged:
`fn(prompts, completions, **columns) -> list[float | None]`, where `prompts` are the chat messages each completion
answered, `completions` the generated reply texts, and `columns` the other fields of the prompt records, as lists
aligned with the completions (`answer=[...]`). None means "cannot judge this one" and counts as 0.0 when combined.

A recipe names a reward as a built-in (`exact_match`, `format`, ...) or as a user function,
`package.module:function` or `path/to/file.py:function`, with an options dict: a built-in's options go to its
factory, a user function's are bound as keyword arguments.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from lmforge.answers import extract_answer, is_json, repetition_rate, same_answer

RewardFunction = Callable[..., list]


# ---------------------------------------------------------------- built-ins


def exact_match(prompts: list[list[dict]], completions: list[str], **columns: list) -> list[float | None]:
    """1.0 where the completion's answer equals the `answer` column (numbers by value, extracted by the same rule
    as the GSM8K metric: `answers.extract_answer`), else 0.0.

    An item whose answer is missing (None) cannot be judged and gets None.
    """
    if "answer" not in columns:
        known = ", ".join(sorted(columns)) or "none"
        raise ValueError(f"reward 'exact_match' needs an 'answer' column in the prompt records (columns: {known})")
    return [None if gold is None else float(same_answer(extract_answer(completion, str(gold)), str(gold)))
            for completion, gold in zip(completions, columns["answer"], strict=True)]


def exact_match_reward() -> RewardFunction:
    """`exact_match` itself: it takes no options, but every built-in is built by a factory."""
    return exact_match


def format_reward(pattern: str | None = None, json: bool = False) -> RewardFunction:
    """1.0 for a completion in the wanted form: one matching the regex `pattern` (`re.search`), or valid JSON."""
    if (pattern is None) == (not json):
        raise ValueError("reward 'format' needs exactly one of the options 'pattern' (a regex) or 'json: true'")
    if json:
        return lambda prompts, completions, **columns: [float(is_json(text)) for text in completions]
    regex = _compile(pattern)
    return lambda prompts, completions, **columns: [float(regex.search(text) is not None) for text in completions]


def _compile(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ValueError(f"reward 'format': invalid regex pattern {pattern!r}: {err}") from None


def length_penalty(max_chars: int = 200) -> RewardFunction:
    """0.0 up to `max_chars` characters, falling linearly to -1.0 at twice that, -1.0 beyond.

    Characters rather than words or tokens, so a Chinese reply (no spaces) is measured like an English one.
    """
    _require_positive("length_penalty", "max_chars", max_chars)

    def penalty(text: str) -> float:
        return -min(1.0, max(0, len(text) - max_chars) / max_chars)

    return lambda prompts, completions, **columns: [penalty(text) for text in completions]


def repetition_penalty(n: int = 3) -> RewardFunction:
    """Minus the share of repeated word n-grams: 0.0 for text that never loops, near -1.0 for a loop."""
    _require_positive("repetition_penalty", "n", n)
    return lambda prompts, completions, **columns: [-repetition_rate(text, n) for text in completions]


def _require_positive(reward: str, option: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"reward {reward!r}: option {option!r} must be a positive integer, got {value!r}")


def reward_model(path: str) -> RewardFunction:
    """Scores from a reward model trained by the rm stage.

    The model loads on the first call, not here, so checking a recipe does not load it (nor need it to exist yet).
    """
    scorer = None

    def score(prompts: list[list[dict]], completions: list[str], **columns: list) -> list[float]:
        nonlocal scorer
        if scorer is None:
            from lmforge.score import RewardScorer

            scorer = RewardScorer(path)
        return scorer.score(prompts, completions)

    return score


BUILTIN_REWARDS: dict[str, Callable[..., RewardFunction]] = {
    "exact_match": exact_match_reward,
    "format": format_reward,
    "length_penalty": length_penalty,
    "repetition_penalty": repetition_penalty,
    "reward_model": reward_model,
}


# ---------------------------------------------------------------- resolving a recipe's names


def resolve_reward(name: str, options: dict | None = None) -> RewardFunction:
    """The reward function a recipe names: a built-in, or a user function `module:function` / `file.py:function`."""
    options = options or {}
    if ":" in name:
        return _user_reward(name, options)
    if name not in BUILTIN_REWARDS:
        raise ValueError(_unknown_reward_message(name))
    factory = BUILTIN_REWARDS[name]
    _check_options(name, factory, options)
    return factory(**options)


def _unknown_reward_message(name: str) -> str:
    close = difflib.get_close_matches(name, list(BUILTIN_REWARDS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return (f"unknown reward {name!r}{hint} built-ins: {', '.join(BUILTIN_REWARDS)} "
            "(or a user function as 'package.module:function' or 'path/to/file.py:function')")


def _check_options(name: str, factory: Callable, options: dict) -> None:
    """Name an unknown or a missing option, where calling the factory would raise a bare TypeError."""
    parameters = inspect.signature(factory).parameters
    allowed = ", ".join(parameters) or "none"
    for option in options:
        if option not in parameters:
            raise ValueError(f"reward {name!r} has no option {option!r} (allowed: {allowed})")
    for option, parameter in parameters.items():
        if parameter.default is inspect.Parameter.empty and option not in options:
            raise ValueError(f"reward {name!r} needs the option {option!r}")


def _user_reward(name: str, options: dict) -> RewardFunction:
    target, _, function_name = name.rpartition(":")
    module = _load_file(target) if target.endswith(".py") else _import_module(target)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"reward {name!r}: {target!r} has no function {function_name!r}")
    return functools.partial(function, **options) if options else function


def _load_file(path: str) -> ModuleType:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"reward file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"lmforge_user_reward_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and postponed annotations look their module up while it runs
    spec.loader.exec_module(module)
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise ValueError(f"reward module {name!r} cannot be imported: {err}") from None


# ---------------------------------------------------------------- the weighted set


class RewardSet:
    """The recipe's rewards combined: a weighted total per completion, and each reward's mean for the logs."""

    def __init__(self, rewards: list[tuple[str, float, RewardFunction]]):
        self._rewards = rewards

    @classmethod
    def build(cls, specs: list[tuple[str, float, dict]]) -> RewardSet:
        """Resolve each (name, weight, options); names are logged by their function part, made unique."""
        names = _unique(_log_name(name) for name, _, _ in specs)
        return cls([(log_name, float(weight), resolve_reward(name, options))
                    for log_name, (name, weight, options) in zip(names, specs)])

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._rewards]

    def __call__(self, prompts: list[list[dict]], completions: list[str],
                 **columns: list) -> tuple[list[float], dict[str, float]]:
        totals = [0.0] * len(completions)
        means = {}
        for name, weight, function in self._rewards:
            values = _checked(name, function(prompts, completions, **columns), len(completions))
            totals = [total + weight * value for total, value in zip(totals, values)]
            means[f"reward/{name}"] = sum(values) / len(values) if values else 0.0
        return totals, means


def _log_name(name: str) -> str:
    """`exact_match` stays; `path/to/file.py:brevity` logs as `brevity`, without the path."""
    return name.rpartition(":")[2]


def _unique(names) -> list[str]:
    """Suffix repeats (`format`, `format_2`) so two rewards of one kind keep separate log entries."""
    unique: list[str] = []
    for name in names:
        candidate, count = name, 1
        while candidate in unique:
            count += 1
            candidate = f"{name}_{count}"
        unique.append(candidate)
    return unique


def _checked(name: str, values: Any, expected: int) -> list[float]:
    """The values as floats, None as 0.0; a reward returning the wrong number of values is a bug worth naming."""
    if not hasattr(values, "__len__"):
        raise ValueError(f"reward {name!r} returned {type(values).__name__}, expected a list of {expected} values")
    if len(values) != expected:
        raise ValueError(f"reward {name!r} returned {len(values)} values for {expected} completions")
    return [0.0 if value is None else float(value) for value in values]
