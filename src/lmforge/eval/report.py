"""Reading eval results back: results.json and the label of the model a run evaluated."""

from __future__ import annotations

import json
from pathlib import Path


def read_results(run_dir: Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a finished eval run?")
    return json.loads(path.read_text(encoding="utf-8"))


def run_label(results: dict) -> str:
    """The model, plus its adapter when the run evaluated one."""
    return str(results.get("model")) + (f" + {results['adapter']}" if results.get("adapter") else "")
