"""`lmforge agent eval`: tool-call accuracy scored the way the Berkeley Function-Calling Leaderboard's AST checker
scores it. A call is parsed, not compared as a string: the function name must match, every required parameter
must be present, no unknown parameter may appear, and each value must equal one of the accepted values, with
strings compared case- and punctuation-insensitively and numbers by value (an int where a float is expected
counts). Parallel calls match in any order.

A suite is JSONL, one case per line, in BFCL's `ground_truth` shape:

    {"id": "sum-1", "category": "single", "question": "What is 17 * 23?", "tools": ["calculator"],
     "ground_truth": [{"calculator": {"expression": ["17 * 23", "17*23"]}}]}

`tools` are built-in names or OpenAI function specs. An accepted-values list holding "" marks an optional
parameter. Categories: `single`, `multiple` (one right function among several), `parallel` (several calls in one
reply), `irrelevant` (no tool fits: the right answer is no call; ground_truth is []) and `multi_turn` (`turns`:
each with its `question`, `ground_truth` and the `results` the tools return, fed back before the next turn).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CATEGORIES = ("single", "multiple", "parallel", "irrelevant", "multi_turn")
_STRING_NOISE = re.compile(r"[ ,./\-_*^]")  # BFCL's standardize_string removes these, lower-cases, and ' -> "


def read_suite(path: str | Path) -> list[dict]:
    cases = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: invalid JSON ({err})") from None
        problem = _problem(case)
        if problem:
            raise ValueError(f"{path}:{number}: {problem}")
        cases.append(case)
    if not cases:
        raise ValueError(f"{path}: no cases")
    return cases


def _problem(case) -> str | None:
    if not isinstance(case, dict):
        return "each case must be a JSON object"
    if case.get("category") not in CATEGORIES:
        return f"category must be one of {', '.join(CATEGORIES)}"
    if not isinstance(case.get("tools"), list) or not case["tools"]:
        return "a case needs `tools` (built-in names or OpenAI function specs)"
    turns = case.get("turns") if case["category"] == "multi_turn" else [case]
    if not isinstance(turns, list) or not turns:
        return "a multi_turn case needs `turns`"
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("question"), str) or \
                not isinstance(turn.get("ground_truth"), list):
            return "each turn needs `question` and `ground_truth` (a list; [] when no call is right)"
        for entry in turn["ground_truth"]:
            if not isinstance(entry, dict) or len(entry) != 1 or not isinstance(next(iter(entry.values())), dict):
                return 'each ground_truth entry is {"function name": {"parameter": [accepted values...]}}'
            if not all(isinstance(values, list) and values for values in next(iter(entry.values())).values()):
                return "each parameter's accepted values must be a non-empty list (\"\" in it makes it optional)"
        if case["category"] == "multi_turn" and len(turn.get("results", [])) != len(turn["ground_truth"]):
            return "each multi_turn turn needs one `results` entry per ground-truth call"
    return None


def same_value(value, accepted) -> bool:
    """BFCL's value check: an int where a float is expected counts (not the reverse), strings compare after its
    standardisation, lists element by element, and a dict like a nested call: each key's accepted values."""
    if isinstance(accepted, bool) or isinstance(value, bool):
        return value is accepted
    if isinstance(accepted, float):
        return isinstance(value, (int, float)) and float(value) == accepted
    if isinstance(accepted, int):
        return isinstance(value, int) and value == accepted
    if isinstance(accepted, str):
        return isinstance(value, str) and _standard(value) == _standard(accepted)
    if isinstance(accepted, list):
        return isinstance(value, list) and len(value) == len(accepted) and all(map(same_value, value, accepted))
    if isinstance(accepted, dict):
        return isinstance(value, dict) and _parameters_match(value, accepted)
    return value == accepted


def _standard(text: str) -> str:
    return _STRING_NOISE.sub("", text).lower().replace("'", '"')


def call_matches(call: dict, expected: dict) -> bool:
    """One parsed call {"name", "arguments"} against one ground-truth entry {name: {param: [accepted...]}}."""
    [(name, parameters)] = expected.items()
    return call["name"] == name and isinstance(call["arguments"], dict) and _parameters_match(call["arguments"],
                                                                                               parameters)


def _parameters_match(arguments: dict, parameters: dict) -> bool:
    """No unknown argument, every required one present, each equal to one of its accepted values."""
    if set(arguments) - set(parameters):
        return False
    for parameter, accepted in parameters.items():
        accepted = accepted if isinstance(accepted, list) else [accepted]
        if parameter not in arguments:
            if "" not in accepted:
                return False
            continue
        if not any(same_value(arguments[parameter], option) for option in accepted if option != ""):
            return False
    return True


def calls_match(calls: list[dict], expected: list[dict]) -> bool:
    """Every expected call matched by a distinct call, in any order, and no call left over: a perfect bipartite
    matching (augmenting paths, so ten parallel calls cost 100 comparisons, not 10! orderings)."""
    if len(calls) != len(expected):
        return False
    fits = [[call_matches(call, truth) for truth in expected] for call in calls]
    owner: dict[int, int] = {}

    def place(call: int, tried: set[int]) -> bool:
        for truth in range(len(expected)):
            if fits[call][truth] and truth not in tried:
                tried.add(truth)
                if truth not in owner or place(owner[truth], tried):
                    owner[truth] = call
                    return True
        return False

    return all(place(call, set()) for call in range(len(calls)))


def parsed_calls(message: dict) -> list[dict]:
    """The message's tool calls with their arguments parsed (unparseable arguments become None: no match)."""
    calls = []
    for call in message.get("tool_calls") or []:
        arguments = call["function"]["arguments"]
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            arguments = None
        calls.append({"name": call["function"]["name"], "arguments": arguments})
    return calls


def evaluate_suite(model, cases: list[dict], resolve_tools, decoding) -> list[dict]:
    """One sample per case: the model's calls at each turn and whether all of them were right.

    Single-turn cases go to the model in one batch; each multi-turn case is played turn by turn, with the
    ground-truth calls and their recorded results appended after each turn (the model is judged on every turn
    from the right history, as BFCL does).
    """
    samples: list[dict | None] = [None] * len(cases)
    single = [i for i, case in enumerate(cases) if case["category"] != "multi_turn"]
    specs = {i: [t.spec if hasattr(t, "spec") else t for t in resolve_tools(case["tools"])]
             for i, case in enumerate(cases)}
    replies = model.respond([[{"role": "user", "content": cases[i]["question"]}] for i in single],
                            [specs[i] for i in single], decoding)
    for i, reply in zip(single, replies):
        calls = parsed_calls(reply)
        samples[i] = _sample(cases[i], [calls], [calls_match(calls, cases[i]["ground_truth"])])
    for i, case in enumerate(cases):
        if case["category"] == "multi_turn":
            samples[i] = _multi_turn(model, case, specs[i], decoding)
    return samples


def _multi_turn(model, case: dict, specs: list[dict], decoding) -> dict:
    messages, turn_calls, right = [], [], []
    for number, turn in enumerate(case["turns"]):
        messages.append({"role": "user", "content": turn["question"]})
        [reply] = model.respond([messages], [specs], decoding)
        calls = parsed_calls(reply)
        turn_calls.append(calls)
        right.append(calls_match(calls, turn["ground_truth"]))
        truth = [{"id": f"call_{number}_{k}", "type": "function",
                  "function": {"name": name, "arguments": json.dumps(_first_values(params))}}
                 for k, entry in enumerate(turn["ground_truth"]) for name, params in entry.items()]
        messages.append({"role": "assistant", "content": None, **({"tool_calls": truth} if truth else {})})
        messages += [{"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                      "content": str(result)} for call, result in zip(truth, turn.get("results", []))]
    return _sample(case, turn_calls, right)


def _first_values(parameters: dict) -> dict:
    """A call's arguments from its ground truth: each parameter's first accepted value (optional ones left out),
    nested dicts likewise."""
    arguments = {}
    for name, accepted in parameters.items():
        value = next((option for option in accepted if option != ""), None)
        if value is not None:
            arguments[name] = _first_values(value) if isinstance(value, dict) else value
    return arguments


def _sample(case: dict, calls: list[list[dict]], right: list[bool]) -> dict:
    return {"id": case.get("id"), "category": case["category"], "calls": calls, "turns_right": right,
            "metrics": {"accuracy": float(all(right))}}


def summary(samples: list[dict], iters: int = 1000) -> dict[str, dict]:
    """Accuracy with a 95% bootstrap interval per category and over all cases."""
    from lmforge.metrics import aggregate, bootstrap_interval

    groups = {category: [s for s in samples if s["category"] == category] for category in CATEGORIES}
    groups = {name: group for name, group in groups.items() if group} | {"overall": samples}
    return {name: {"accuracy": aggregate("accuracy", group), "interval": bootstrap_interval("accuracy", group, iters),
                   "n": len(group)} for name, group in groups.items()}


def summary_table(rows: dict[str, dict]) -> str:
    lines = ["| category | accuracy | 95% interval | n |", "|---|---|---|---|"]
    lines += [f"| {name} | {row['accuracy']:.3f} | [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}] | {row['n']} |"
              for name, row in rows.items()]
    return "\n".join(lines)
