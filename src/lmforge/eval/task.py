"""What every evaluation task is made of, whether a standard benchmark or a user's YAML task.

A task is a list of documents plus the lm-evaluation-harness prompt recipe that turns them into requests:
`description + shots joined by fewshot_delimiter + fewshot_delimiter + doc.query`, then either one
log-likelihood per choice (`target_delimiter + choice`) or a generation cut at `until`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

Kind = Literal["choice", "generate"]


@dataclass
class Doc:
    """One benchmark item after the task's own preprocessing (lm-eval's `doc_to_text` / `doc_to_choice`)."""

    id: str
    query: str
    gold: int | str
    choices: list[str] = field(default_factory=list)
    target: str = ""
    subject: str = ""
    extra: dict = field(default_factory=dict)

    def shot(self, target_delimiter: str) -> str:
        """This doc as a solved in-context example."""
        answer = self.target or (self.choices[self.gold] if self.choices else str(self.gold))
        return self.query + target_delimiter + answer


@dataclass
class Task:
    """Documents plus the prompt and scoring recipe; `metrics` name functions in lmforge.metrics."""

    name: str
    kind: Kind
    docs: list[Doc]
    metrics: list[str]
    fewshot_docs: list[Doc] = field(default_factory=list)
    num_fewshot: int = 0
    description: Callable[[Doc], str] = lambda doc: ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    until: list[str] = field(default_factory=list)
    max_new_tokens: int = 256
    extract: Callable[[str], str | None] | None = None
    cot_trigger: str = ""
    chat: bool = False
    source: str = ""
