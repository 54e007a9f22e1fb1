"""Prompt programs: a YAML file with a Jinja template, system text, few-shot examples and their selector, a
chain-of-thought trigger with answer extraction, and self-consistency voting.

In the core because `lmforge prompt`, eval custom tasks and RAG answers all render prompts through it. Templates
run in Jinja's immutable sandbox with strict undefined variables: a record cannot reach Python internals through
`{{ x.__class__ }}`, and a misspelt variable is an error naming the record, not an empty string.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lmforge.answers import extract_answer, normalize_answer
from lmforge.config import Section, build, read_yaml

IDK = "I don't know."
# The built-in RAG answer prompt: `lmforge rag`, `serve --rag` and the toy world's reading lessons render it alike.
RAG_PROGRAM = {
    "name": "rag",
    "system": "Answer the question from the numbered sources only, and cite the source you used like [1]. "
              f"If the sources do not say, reply \"{IDK}\"",
    "template": "Sources:\n{% for hit in sources %}[{{ loop.index }}] "
                "{{ hit.headings | join(' > ') if hit.headings else hit.title }}\n{{ hit.text }}\n{% endfor %}"
                "\nQuestion: {{ question }}",
    "max_new_tokens": 64,
}
COT_ANSWER = re.compile(r"answer is[:：]?\s*(.+?)\s*[.。]?\s*$", re.IGNORECASE | re.MULTILINE)


def valid_pattern(pattern: str | None) -> str | None:
    """An answer-extraction regex, refused at load time if it does not compile."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as err:
            raise ValueError(f"answer_pattern is not a valid regular expression: {err}") from None
    return pattern


class PromptError(ValueError):
    """A template that does not render for a record; the message names the record."""


class FewShot(Section):
    examples: str | list[dict] = Field(description="solved examples: a data file (relative to the prompt file) or a "
                                       "list of records with the template's variables and the answer")
    k: int = Field(3, ge=0, description="examples shown before each question")
    selector: Literal["first", "random", "similar"] = Field(
        "first", description="first k; k at random per question (seeded); or the k nearest to the question by "
        "embedding, the nearest last, next to the question")
    embedder: str = Field("minilm", description="sentence-transformers folder or `minilm`, for selector=similar")
    seed: int = Field(0, description="seed of the random selector")


class PromptProgram(Section):
    name: str = Field("prompt", description="name in results")
    template: str = Field(description="Jinja template of the user turn, e.g. 'Question: {{ question }}\\nAnswer:'")
    answer: str = Field("{{ answer }}", description="Jinja template of the gold reply (scoring and few-shot examples)")
    system: str | None = Field(None, description="system text (Jinja, same variables)")
    variables: dict[str, Any] = Field({}, description="default values; a record's own fields take precedence")
    fewshot: FewShot | None = Field(None, description="in-context examples and how to pick them")
    cot: str | None = Field(None, description="chain-of-thought trigger appended to the user turn, e.g. "
                            "\"Let's think step by step.\"")
    answer_pattern: str | None = Field(
        None, description="regex whose first group (last match) is the answer; default: after 'answer is' with "
        "cot, else the final number for numeric gold, else the whole reply")
    samples: int = Field(1, ge=1, description="self-consistency: replies per question, answered by majority vote")
    temperature: float = Field(0.0, ge=0, description="sampling temperature (0 = greedy; self-consistency needs > 0)")
    max_new_tokens: int = Field(64, ge=1, description="longest reply in tokens")
    stop: list[str] = Field([], description="stop strings")
    metrics: list[str] = Field(["exact_match"], description="eval metrics: exact_match, f1, rouge_l, ...")
    data: str | None = Field(None, description="default data file (relative to the prompt file); lets "
                             "`lmforge eval --tasks` run the program as a task")

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        return valid_pattern(pattern)

    @model_validator(mode="after")
    def _votes_need_sampling(self) -> "PromptProgram":
        if self.samples > 1 and self.temperature == 0:
            raise ValueError(f"samples: {self.samples} at temperature 0 gives {self.samples} identical replies; set "
                             "a temperature (e.g. 0.7) for self-consistency")
        return self

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        from lmforge.metrics import GENERATE_METRICS

        unknown = sorted(set(names) - GENERATE_METRICS)
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(GENERATE_METRICS)}")
        return names


@dataclass
class LoadedProgram:
    """A program with its examples read and its folder known (relative paths resolve against it)."""

    spec: PromptProgram
    folder: Path
    examples: list[dict]

    def context(self, record: dict) -> dict:
        """A record's template variables: the program's defaults under the record's own fields."""
        return {**self.spec.variables, **record}


def is_prompt_program(data: dict) -> bool:
    """A prompt program file has a `template`; an eval custom task has a `prompt` instead."""
    return isinstance(data, dict) and "template" in data


def load_program(path: str | Path) -> LoadedProgram:
    path = Path(path)
    return program_from_dict(read_yaml(path), path.parent, str(path))


def program_from_dict(data: dict, folder: Path, where: str) -> LoadedProgram:
    spec = build(PromptProgram, data, where)
    examples: list[dict] = []
    if spec.fewshot is not None:
        examples = (read_records(folder / spec.fewshot.examples) if isinstance(spec.fewshot.examples, str)
                    else list(spec.fewshot.examples))
    program = LoadedProgram(spec, folder, examples)
    for number, example in enumerate(examples, 1):
        render_text(spec.template, program.context(example), f"{where}: example {number}")
    return program


def read_records(path: Path) -> list[dict]:
    """Every record of a data file (jsonl/json/csv/parquet, or a folder of them), each a JSON object."""
    from lmforge.data import DataError, expand_paths, read_raw

    records = []
    for file in expand_paths(path):
        for raw in read_raw(file):
            if raw.error:
                raise DataError(raw.source, raw.error)
            if not isinstance(raw.value, dict):
                raise DataError(raw.source, "each record must be an object with named fields")
            records.append({**raw.value, "_source": raw.source})
    return records


@lru_cache(maxsize=256)
def _compiled(template: str):
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True,
                                                autoescape=False)
    return environment.from_string(template)


def render_text(template: str, variables: dict, where: str) -> str:
    """The template filled from `variables` in the sandbox; any failure names `where`."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SecurityError

    try:
        return _compiled(template).render(**variables)
    except SecurityError as err:
        raise PromptError(f"{where}: the template tried something the sandbox forbids ({err})") from None
    except TemplateError as err:
        raise PromptError(f"{where}: {err}") from None


def user_text(program: LoadedProgram, record: dict, where: str, cot: bool = True) -> str:
    text = render_text(program.spec.template, program.context(record), where)
    return f"{text}\n{program.spec.cot}" if cot and program.spec.cot else text


def gold_text(program: LoadedProgram, record: dict, where: str) -> str:
    return render_text(program.spec.answer, program.context(record), where).strip()


def select_examples(program: LoadedProgram, records: list[dict], embed=None) -> list[list[dict]]:
    """The examples each record is shown, by the program's selector; a record never sees itself.

    `embed` (texts -> unit vectors) is needed by the `similar` selector only.
    """
    fewshot = program.spec.fewshot
    if fewshot is None or fewshot.k == 0 or not program.examples:
        return [[] for _ in records]
    pool = program.examples
    if fewshot.selector == "similar":
        return _nearest(program, records, embed)
    rng = random.Random(fewshot.seed)
    chosen = []
    for record in records:
        others = [example for example in pool if not _same(example, record)]
        chosen.append(others[: fewshot.k] if fewshot.selector == "first"
                      else rng.sample(others, min(fewshot.k, len(others))))
    return chosen


def _same(example: dict, record: dict) -> bool:
    """The same record, wherever it was read from."""
    return {**example, "_source": None} == {**record, "_source": None}


def _nearest(program: LoadedProgram, records: list[dict], embed) -> list[list[dict]]:
    if embed is None:
        raise ValueError("the similar selector needs an embedder")
    k = program.spec.fewshot.k
    pool = program.examples
    pool_vectors = embed([user_text(program, e, "example", cot=False) for e in pool])
    query_vectors = embed([user_text(program, r, r.get("_source", "record"), cot=False) for r in records])
    chosen = []
    for record, similarity in zip(records, query_vectors @ pool_vectors.T):
        order = [int(i) for i in (-similarity).argsort(kind="stable") if not _same(pool[i], record)][:k]
        chosen.append([pool[i] for i in reversed(order)])  # the nearest sits last, right before the question
    return chosen


def conversation(program: LoadedProgram, record: dict, examples: list[dict]) -> list[dict]:
    """System text, each example as a user turn and its answer, then the question."""
    where = record.get("_source", "record")
    messages = []
    if program.spec.system:
        messages.append({"role": "system", "content": render_text(program.spec.system, program.context(record),
                                                                  f"{where}: system")})
    for example in examples:
        messages += [{"role": "user", "content": user_text(program, example, "example", cot=False)},
                     {"role": "assistant", "content": gold_text(program, example, "example")}]
    messages.append({"role": "user", "content": user_text(program, record, where)})
    return messages


def restyled(program: LoadedProgram, template: str) -> LoadedProgram:
    """The program with another user-turn template (a `--formats` variant of its own)."""
    return LoadedProgram(program.spec.model_copy(update={"template": template}), program.folder, program.examples)


def extract(program: LoadedProgram, reply: str, gold: str) -> str | None:
    """The answer inside a reply: the program's pattern, else after "answer is" (chain of thought), else the final
    number for a numeric gold answer, else the reply itself."""
    if program.spec.answer_pattern:
        matches = list(re.finditer(program.spec.answer_pattern, reply))
        found = (matches[-1].group(1) if matches[-1].re.groups else matches[-1].group(0)) if matches else None
        return found.strip() if found is not None else None  # an optional group may match nothing
    if program.spec.cot:
        matches = COT_ANSWER.findall(reply)
        if matches:
            return matches[-1]
    found = extract_answer(reply, gold)
    return found.strip() if found is not None else None


def majority(answers: list[str | None]) -> str | None:
    """Self-consistency's vote: the most frequent answer after normalising, ties to the earliest; None never wins
    unless nothing was extracted."""
    counted = Counter(normalize_answer(a) for a in answers if a is not None)
    if not counted:
        return None
    best = max(counted.values())
    return next(a for a in answers if a is not None and counted[normalize_answer(a)] == best)
