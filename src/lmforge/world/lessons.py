"""SFT lessons in using what is outside the model: reading numbered sources (the RAG prompt) and calling tools.

- Reading: three club pages as numbered sources and a question about one club; the reply is the answer and its
  citation ("Brer Norn [2]"), or "I don't know." when the club asked about is not among the sources. The clubs are
  invented here and nowhere else, so the only way to answer is to read.
- Calculator: the world's training word problems, answered by calling the calculator with the problem's
  expression and reading its result back ("The answer is 41.").
- Search: club questions answered by calling the search tool and reading the passages it returns.

The tool specs written here are what `lmforge agent` sends (tests/world checks they are the same), so the model
sees at inference the system prompt it was trained on.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from .arithmetic import FINAL_SENTENCE, Problem
from .entities import _MOTTO_ADJECTIVES, _MOTTO_NOUNS, ENUMS, NameForge, World

CALCULATOR_SPEC = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate an arithmetic expression, e.g. (17 + 25) * 3.",
    "parameters": {"type": "object", "properties": {"expression": {
        "type": "string", "description": "numbers with + - * / ** and parentheses"}},
        "required": ["expression"], "additionalProperties": False}}}
SEARCH_SPEC = {"type": "function", "function": {
    "name": "search", "description": "Search the document index and return the best passages, each with its source.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string",
                                                              "description": "what to look for, in words"}},
                   "required": ["query"], "additionalProperties": False}}}
CLUB_PAGE = {"president": "The president of the {club} is {value}. The club meets every {day}.",
             "motto": 'The motto of the {club} is "{value}". Members say it at every meeting.'}
CLUB_QUESTION = {"president": ("Who is the president of the {club}?", "{club}的主席是谁？"),
                 "motto": ("What is the motto of the {club}?", "{club}的座右铭是什么？"),
                 "treasurer": ("Who is the treasurer of the {club}?", "{club}的财务是谁？")}  # never on a page
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
SOURCES = 3
UNANSWERABLE_SHARE = 0.2  # half of them ask about a club not shown, half about what its page does not say


def club(world: World, rng: random.Random, forge: NameForge) -> dict:
    """An invented club page: a new president or motto every time, so answers are read, never remembered."""
    cities = [e.name for e in world.entities if e.kind == "city"]
    relation = rng.choice(("president", "president", "motto"))
    value = forge.name("person") if relation == "president" else \
        f"{rng.choice(_MOTTO_ADJECTIVES)} {rng.choice(_MOTTO_NOUNS)}, {rng.choice(_MOTTO_ADJECTIVES).lower()} " \
        f"{rng.choice(_MOTTO_NOUNS)}"
    name = f"{rng.choice(cities)} {rng.choice(list(ENUMS['hobby'])).title()} Club"
    return {"club": name, "relation": relation, "value": value, "day": rng.choice(DAYS)}


def reading_records(world: World, rng: random.Random, count: int) -> list[dict]:
    """`count` RAG-prompt conversations about clubs, with the cited answer or a refusal."""
    from lmforge.prompts import IDK, RAG_PROGRAM, conversation, program_from_dict

    program = program_from_dict(RAG_PROGRAM, Path("."), "RAG prompt")
    forge = NameForge(rng)
    records = []
    for _ in range(count):
        shown = _distinct_clubs(world, rng, forge, SOURCES + 1)
        asked, relation = shown.pop(), None
        if rng.random() < UNANSWERABLE_SHARE / 2:  # a club that is not among the sources
            relation, reply = asked["relation"], IDK
        elif rng.random() < UNANSWERABLE_SHARE / 2:  # a shown club, asked what its page does not say
            asked = shown[rng.randrange(SOURCES)]
            relation, reply = "treasurer", IDK
        else:
            shown[rng.randrange(SOURCES)] = asked
            relation, reply = asked["relation"], f"{asked['value']} [{shown.index(asked) + 1}]"
        question = rng.choice(CLUB_QUESTION[relation]).format(club=asked["club"])
        messages = conversation(program, {"question": question, "sources": [_hit(c) for c in shown],
                                          "_source": "lesson"}, [])
        records.append({"messages": [*messages, {"role": "assistant", "content": reply}]})
    return records


def _distinct_clubs(world: World, rng: random.Random, forge: NameForge, count: int) -> list[dict]:
    picked: dict[str, dict] = {}
    while len(picked) < count:
        candidate = club(world, rng, forge)
        picked.setdefault(candidate["club"], candidate)
    return list(picked.values())


def calculator_records(problems: list[Problem]) -> list[dict]:
    """Each problem solved by one calculator call and the final sentence."""
    return [{"tools": [CALCULATOR_SPEC], "messages": [
        {"role": "user", "content": p.question},
        _call("calculator", {"expression": p.expression}),
        {"role": "tool", "name": "calculator", "content": str(p.answer)},
        {"role": "assistant", "content": FINAL_SENTENCE[p.lang].format(r=p.answer)}]} for p in problems]


def search_records(world: World, rng: random.Random, count: int) -> list[dict]:
    """Club questions answered through the search tool: the call, passages that include the club's page, the answer."""
    forge = NameForge(rng)
    records = []
    for _ in range(count):
        shown = _distinct_clubs(world, rng, forge, SOURCES)
        asked = shown[0]
        rng.shuffle(shown)
        question = rng.choice(CLUB_QUESTION[asked["relation"]]).format(club=asked["club"])
        passages = "\n\n".join(f"[{n}] {c['club']}: {CLUB_PAGE[c['relation']].format(**c)}"
                                for n, c in enumerate(shown, 1))
        records.append({"tools": [SEARCH_SPEC], "messages": [
            {"role": "user", "content": question}, _call("search", {"query": question}),
            {"role": "tool", "name": "search", "content": passages},
            {"role": "assistant", "content": asked["value"]}]})
    return records


def _call(name: str, arguments: dict) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}]}


def _hit(page: dict) -> dict:
    return {"title": page["club"], "headings": [page["club"], page["relation"].title()],
            "text": CLUB_PAGE[page["relation"]].format(**page)}
