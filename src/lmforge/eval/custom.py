"""Custom tasks: a YAML file describes a user's own data, prompt, choices or generation, and metrics."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from lmforge.config import Section, build, read_yaml
from lmforge.data import DataError
from lmforge.eval.task import Doc, Task
from lmforge.prompts import (LoadedProgram, gold_text, is_prompt_program, program_from_dict, read_records, user_text,
                             valid_pattern)


class GenerationSpec(Section):
    until: list[str] = Field(["\n\n"], description="stop sequences")
    max_new_tokens: int = Field(64, ge=1, description="longest generation in tokens")
    answer_pattern: str | None = Field(
        None, description="regex whose first group (last match) is the answer; None keeps the stripped output"
    )

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        return valid_pattern(pattern)


class CustomTask(Section):
    name: str = Field(description="task name in results")
    data: str = Field(description="evaluation data file (jsonl/json/csv/parquet), relative to the YAML file")
    fewshot_data: str | None = Field(None, description="file of solved in-context examples")
    where: dict[str, str | int | float | bool] = Field({}, description="keep only records whose fields equal these")
    subject: str = Field("", description="template for a per-record group, reported separately (e.g. '{category}')")
    prompt: str = Field(description="question template with {field} placeholders, e.g. 'Q: {question}\\nA:'")
    target: str = Field("{answer}", description="gold answer template; for choice tasks an index, letter or text")
    choices: list[str] | str | None = Field(
        None, description="fixed labels (a list), or the record field that holds each record's choices"
    )
    generate: GenerationSpec | None = Field(None, description="generate instead of scoring choices")
    metrics: list[str] = Field(["acc"], description="acc, acc_norm, acc_bytes, exact_match, f1, rouge_l, ...")
    description: str = Field("", description="text before the examples")
    num_fewshot: int = Field(0, ge=0, description="default number of in-context examples")
    target_delimiter: str = Field(" ", description="between a question and its answer")
    fewshot_delimiter: str = Field("\n\n", description="between solved examples")
    cot_trigger: str = Field("", description="chain-of-thought phrase added in --cot mode")
    chat: bool = Field(False, description="render prompts through the model's chat template")

    @model_validator(mode="after")
    def _one_kind_with_its_metrics(self) -> "CustomTask":
        from lmforge.metrics import CHOICE_METRICS, GENERATE_METRICS

        if (self.choices is None) == (self.generate is None):
            raise ValueError("give exactly one of 'choices' (scored choices) or 'generate'")
        kind, valid = ("generate", GENERATE_METRICS) if self.generate else ("choice", CHOICE_METRICS - {"mc2"})
        unknown = sorted(set(self.metrics) - valid)
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown} for a {kind} task; choose from {sorted(valid)}")
        return self


def load_custom_task(path: str | Path) -> Task:
    """A custom task YAML, or a prompt program (a `template` and its `data`) run as a generation task."""
    path = Path(path)
    data = read_yaml(path)
    if is_prompt_program(data):
        return _program_task(program_from_dict(data, path.parent, str(path)), path)
    spec = build(CustomTask, data, str(path))
    data = path.parent / spec.data
    task = Task(
        name=spec.name,
        kind="generate" if spec.generate else "choice",
        docs=_docs(spec, data),
        metrics=spec.metrics,
        fewshot_docs=_docs(spec, path.parent / spec.fewshot_data) if spec.fewshot_data else [],
        num_fewshot=spec.num_fewshot,
        description=lambda doc: spec.description,
        target_delimiter=spec.target_delimiter,
        fewshot_delimiter=spec.fewshot_delimiter,
        cot_trigger=spec.cot_trigger,
        chat=spec.chat,
        source=str(data),
    )
    if spec.generate:
        task.until, task.max_new_tokens = spec.generate.until, spec.generate.max_new_tokens
        task.extract = _extractor(spec.generate.answer_pattern)
    return task


def _docs(spec: CustomTask, path: Path) -> list[Doc]:
    records = [({key: value for key, value in record.items() if key != "_source"}, record["_source"])
               for record in read_records(path)]
    docs = [_doc(spec, record, source) for record, source in records
            if all(record.get(key) == value for key, value in spec.where.items())]
    if not docs:
        raise ValueError(f"{path}: no records" + (f" match where={spec.where}" if spec.where else ""))
    return docs


def _fill(template: str, record: dict, source: str) -> str:
    try:
        return template.format(**record)
    except KeyError as err:
        raise DataError(source, f"the template needs field {err}, the record has {sorted(record)}") from None
    except (IndexError, ValueError) as err:
        raise DataError(source, f"bad template {template!r} ({err}); write literal braces as {{{{ }}}}") from None


def _doc(spec: CustomTask, record: dict, source: str) -> Doc:
    query, subject, target = (_fill(template, record, source) for template in (spec.prompt, spec.subject, spec.target))
    doc_id = str(record.get("id", Path(source).name))
    if spec.choices is None:
        return Doc(id=doc_id, query=query, gold=target, target=target, subject=subject)
    choices = spec.choices if isinstance(spec.choices, list) else record.get(spec.choices)
    if not isinstance(choices, list) or not choices:
        raise DataError(source, f"field '{spec.choices}' must hold a non-empty list of choices")
    choices = [str(c) for c in choices]
    return Doc(id=doc_id, query=query, gold=_gold_index(target, choices, source), choices=choices, subject=subject)


def _gold_index(target: str, choices: list[str], source: str) -> int:
    """An answer given as an index, a letter (A = first choice) or the choice text itself."""
    if target in choices:
        return choices.index(target)
    if target.isdigit() and int(target) < len(choices):
        return int(target)
    if len(target) == 1 and target.isalpha() and ord(target.upper()) - ord("A") < len(choices):
        return ord(target.upper()) - ord("A")
    raise DataError(source, f"answer '{target}' is not a choice, a choice index or a letter; choices: {choices}")


def _extractor(pattern: str | None):
    if pattern is None:
        return None
    compiled = re.compile(pattern)

    def extract(text: str) -> str | None:
        matches = list(compiled.finditer(text))
        return matches[-1].group(1 if compiled.groups else 0).strip() if matches else None

    return extract


def _program_task(program: LoadedProgram, path: Path) -> Task:
    """A prompt program as an lm-eval-style generation task: the system text leads, solved examples are the
    program's first k, and the answer is extracted by the program's rule. (`lmforge prompt run` sends examples as
    separate chat turns instead, and votes over samples.)"""
    from lmforge.prompts import extract

    spec = program.spec
    if spec.data is None:
        raise ValueError(f"{path}: a prompt program used as an eval task needs `data`")
    docs = [_program_doc(program, record) for record in read_records(path.parent / spec.data)]
    task = Task(name=spec.name, kind="generate", docs=docs, metrics=spec.metrics,
                fewshot_docs=[_program_doc(program, example) for example in program.examples],
                num_fewshot=spec.fewshot.k if spec.fewshot else 0,
                description=lambda doc: f"{spec.system}\n\n" if spec.system else "",
                target_delimiter="\n", cot_trigger=spec.cot or "", chat=True, source=str(path.parent / spec.data))
    task.until, task.max_new_tokens = spec.stop, spec.max_new_tokens
    numeric = _numeric_golds(docs)  # the task's answers decide the extraction, as each record's does in prompt run
    task.extract = lambda text: extract(program, text, numeric)
    return task


def _numeric_golds(docs: list[Doc]) -> str:
    """A stand-in gold for `prompts.extract`: a number when every gold answer is one (the final number is then
    read from a reply), else text (the reply itself)."""
    from lmforge.answers import final_number

    return "0" if all(final_number(str(doc.gold)) == str(doc.gold).replace(",", "") for doc in docs) else ""


def _program_doc(program: LoadedProgram, record: dict) -> Doc:
    where = record.get("_source", "example")
    gold = gold_text(program, record, where)
    return Doc(id=str(record.get("id", where)), query=user_text(program, record, where, cot=False), gold=gold,
               target=gold)


def custom_task_as_program(path: str | Path) -> LoadedProgram:
    """A generation custom task as a prompt program: `{field}` placeholders become Jinja variables, the
    description the system text, the solved examples the first-k few-shot pool."""
    path = Path(path)
    spec = build(CustomTask, read_yaml(path), str(path))
    if spec.generate is None:
        raise ValueError(f"{path}: a choices task scores log-likelihoods; a prompt program generates, so only "
                         "`generate` tasks can run as one")
    if spec.where or spec.subject:
        raise ValueError(f"{path}: `where` and `subject` have no prompt-program equivalent; filter the data file")
    fewshot = {"examples": spec.fewshot_data, "k": spec.num_fewshot} if spec.fewshot_data else None
    program = {"name": spec.name, "template": _jinja(spec.prompt), "answer": _jinja(spec.target),
               "system": spec.description or None, "fewshot": fewshot, "cot": spec.cot_trigger or None,
               "answer_pattern": spec.generate.answer_pattern, "stop": spec.generate.until,
               "max_new_tokens": spec.generate.max_new_tokens, "metrics": spec.metrics, "data": spec.data}
    return program_from_dict(program, path.parent, str(path))


def _jinja(template: str) -> str:
    """A str.format template as the Jinja template that renders the same text."""
    import string

    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(f"{{% raw %}}{literal}{{% endraw %}}" if "{" in literal or "}" in literal else literal)
        if field is not None:
            parts.append(f"{{{{ {field} }}}}")
    return "".join(parts)
