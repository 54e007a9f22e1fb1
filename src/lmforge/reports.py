"""Report files every stage writes the same way: json, a bar chart and markdown, each replaced atomically."""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.plots import plot_bars
from lmforge.runs import atomic_write_text


def write_report(out_dir: Path, stem: str, data: dict, markdown: str, bars: dict) -> Path:
    """`<stem>.json`, `<stem>.png` (`plot_bars(**bars)`) and `<stem>.md` in out_dir, each replaced atomically.

    Returns the markdown path; the markdown goes last, so a report that exists is complete.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{stem}.json", json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    plot_bars(out=out_dir / f"{stem}.png", **bars)
    atomic_write_text(out_dir / f"{stem}.md", markdown)
    return out_dir / f"{stem}.md"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
