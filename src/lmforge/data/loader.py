"""Load whole data sets: find the files, read them, normalise every record."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.data.readers import DataError, expand_paths, read_raw
from lmforge.data.schemas import SCHEMAS, normalize

ON_ERROR_CHOICES = ("raise", "skip")
MAX_KEPT_ERRORS = 20

logger = logging.getLogger("lmforge.data")


@dataclass
class Loaded:
    """The normalised records, plus what was skipped and why."""

    records: list[dict]
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def load_records(
    paths: str | Path | Sequence[str | Path], schema: str, on_error: str = "raise"
) -> Loaded:
    """Read every record under ``paths`` into ``schema``.

    With ``on_error="skip"`` bad records are counted and dropped instead of
    stopping the run; errors that make a whole file unreadable still raise.
    """
    _check_choice("schema", schema, SCHEMAS)
    _check_choice("on_error", on_error, ON_ERROR_CHOICES)
    loaded = Loaded(records=[], files=expand_paths(paths))
    for path in loaded.files:
        for raw in read_raw(path):
            try:
                loaded.records.append(normalize(raw, schema))
            except DataError as err:
                if on_error == "raise":
                    raise
                _note_skipped(loaded, err)
    _report(loaded, paths)
    return loaded


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r} (expected one of {', '.join(choices)})")


def _note_skipped(loaded: Loaded, err: DataError) -> None:
    loaded.skipped += 1
    if len(loaded.errors) < MAX_KEPT_ERRORS:
        loaded.errors.append(str(err))


def _report(loaded: Loaded, paths: str | Path | Sequence[str | Path]) -> None:
    """Warn about skipped records, and refuse a data set left with none."""
    where = str(paths) if isinstance(paths, (str, Path)) else ", ".join(map(str, paths))
    first_error = f"; first error: {loaded.errors[0]}" if loaded.errors else ""
    if not loaded.records:
        skipped = f" ({loaded.skipped} skipped{first_error})" if loaded.skipped else ""
        raise DataError(where, f"no records{skipped}")
    if loaded.skipped:
        logger.warning(
            "skipped %d bad record(s) of %d%s",
            loaded.skipped,
            loaded.skipped + len(loaded.records),
            first_error,
        )


def detect_schema(path: Path, default: str) -> str:
    """The schema a file's first readable record looks like: text, alpaca, messages, preference, unpaired or
    prompt."""
    for raw in read_raw(Path(path)):
        if raw.error:
            continue
        if isinstance(raw.value, str):
            return "text"
        keys = raw.value.keys() if isinstance(raw.value, dict) else ()
        for key, schema in (("text", "text"), ("instruction", "alpaca"), ("messages", "messages"),
                            ("conversations", "messages"), ("chosen", "preference"), ("completion", "unpaired"),
                            ("prompt", "prompt")):
            if key in keys:
                return schema
        return default
    return default
