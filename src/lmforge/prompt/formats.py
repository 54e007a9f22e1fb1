"""Prompt formats that mean the same thing: field labels re-cased, label separators and line spacing swapped.

Small models move by many points when only the formatting of a prompt changes (Sclar et al., 2023, "Quantifying
Language Models' Sensitivity to Spurious Features in Prompt Design"). `lmforge prompt run --formats N` reruns a task
under N such formats and reports the spread; this module makes them. A format rewrites the template's own lines
(its labels and the newlines between them), before any record is rendered into it, so data is never touched.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

CASINGS = {"as written": str, "lower": str.lower, "upper": str.upper, "title": str.title}
SEPARATORS = [": ", " - ", ":\n", " | "]
SPACINGS = {"newline": "\n", "blank line": "\n\n", "space": " "}
_LABELLED = re.compile(r"^(\w[\w ]{0,24}?)\s*[:：]\s*(.*)$", re.DOTALL)  # "Question: ...", "问题：..."


@dataclass(frozen=True)
class Format:
    """One way to lay out a prompt; `None` everywhere is the template exactly as written."""

    casing: str | None = None
    separator: str | None = None
    spacing: str | None = None

    @property
    def label(self) -> str:
        if self.casing is None:
            return "as written"
        return f"{self.casing} labels, {self.separator!r} after them, {self.spacing} between lines"

    def apply(self, text: str) -> str:
        if self.casing is None:
            return text
        lines = [self._line(line) for line in re.split(r"\n+", text.strip())]
        return SPACINGS[self.spacing].join(lines)

    def _line(self, line: str) -> str:
        match = _LABELLED.match(line)
        if not match:
            return line
        label, rest = match.groups()
        separator = self.separator if rest else self.separator.rstrip()
        return CASINGS[self.casing](label) + separator + rest


def format_variants(n: int, seed: int = 0) -> list[Format]:
    """The template as written, then n - 1 other formats drawn without repeats from the grid (seeded)."""
    grid = [Format(c, s, p) for c, s, p in itertools.product(CASINGS, SEPARATORS, SPACINGS)
            if (c, s, p) != ("as written", ": ", "newline")]
    if n - 1 > len(grid):
        raise ValueError(f"--formats at most {len(grid) + 1}: the grid has {len(grid)} formats besides the original")
    return [Format(), *random.Random(seed).sample(grid, n - 1)]
