"""Byte-stable file writers: UTF-8, "\\n" newlines, fixed key order, no platform defaults."""

from __future__ import annotations

import json
from pathlib import Path


def _open(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8", newline="\n")


def write_jsonl(path: Path, records: list[dict]) -> int:
    with _open(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(records)


def write_json(path: Path, data: dict) -> None:
    with _open(path) as f:
        f.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    with _open(path) as f:
        f.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
