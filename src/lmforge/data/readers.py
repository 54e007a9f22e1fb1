"""Read training data files into raw records that remember where they came from.

Every record carries a ``source`` ("path:line", "path[#index]" or "path[row N]")
so that any later complaint about it can point the user at the exact spot.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet", ".txt")


class DataError(ValueError):
    """A problem with the data itself, carrying where the bad record is."""

    def __init__(self, source: str, message: str):
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


@dataclass
class RawRecord:
    """One record as read from disk, before any schema is applied.

    ``value`` is a dict (JSON object, CSV row, parquet row) or a str (text
    paragraph); other JSON values are passed through for ``normalize`` to reject.
    ``error`` is set when the record could not even be parsed (a broken JSON
    line): the reader keeps going so that skip mode can drop just that line,
    and ``normalize`` raises it as a ``DataError``.
    """

    source: str
    value: Any
    error: str | None = None


def expand_paths(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """Turn files and folders into the list of data files to read, in a stable order."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return [file for path in paths for file in _expand_one(Path(path))]


def _expand_one(path: Path) -> list[Path]:
    if path.is_dir():
        return _data_files_in(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file or folder: {path}")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise _unsupported(path)
    return [path]


def _data_files_in(folder: Path) -> list[Path]:
    """Supported files under ``folder``, sorted; hidden entries (caches, checkpoints) are ignored."""
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in SUPPORTED_EXTENSIONS
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise DataError(str(folder), f"folder holds no data files ({', '.join(SUPPORTED_EXTENSIONS)})")
    return files


def _unsupported(path: Path) -> DataError:
    return DataError(
        str(path),
        f"unsupported file type {path.suffix or '(no extension)'!r} "
        f"(expected one of {', '.join(SUPPORTED_EXTENSIONS)})",
    )


def read_raw(path: Path) -> Iterator[RawRecord]:
    """Yield the records of one file.

    Problems confined to one record (a broken JSONL line, a CSV row with the
    wrong number of cells) come back as records with ``error`` set; problems
    that make the whole file unreadable (not UTF-8, a broken JSON document,
    a damaged parquet file) raise ``DataError``.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise _unsupported(path)
    return reader(path)


def _decode(data: bytes, path: Path, first_line: int) -> str:
    """Decode UTF-8 (dropping a leading byte-order mark), naming the line of any bad byte."""
    encoding = "utf-8-sig" if first_line == 1 else "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = first_line + data[: err.start].count(b"\n")
        raise DataError(
            f"{path}:{line}", f"not valid UTF-8 (byte {data[err.start]:#04x}); save the file as UTF-8"
        ) from None


def _decoded_lines(path: Path) -> Iterator[str]:
    """Stream a file's lines, line endings kept, decoding each one on its own for exact error lines."""
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            yield _decode(line, path, number)


def _read_jsonl(path: Path) -> Iterator[RawRecord]:
    for number, line in enumerate(_decoded_lines(path), start=1):
        if line.strip():
            yield _parse_json_line(line, f"{path}:{number}")


def _parse_json_line(line: str, source: str) -> RawRecord:
    try:
        return RawRecord(source, json.loads(line))
    except json.JSONDecodeError as err:
        return RawRecord(source, line, error=_json_problem(err))


def _json_problem(err: json.JSONDecodeError) -> str:
    return f"invalid JSON: {err.msg} (column {err.colno})"


def _read_json(path: Path) -> Iterator[RawRecord]:
    """Read a JSON array; a ``.json`` file that is really JSON Lines is read as such."""
    text = read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as err:
        if _is_json_lines(text, err):
            yield from _read_jsonl(path)
            return
        raise DataError(f"{path}:{err.lineno}", _json_problem(err)) from None
    for index, value in enumerate(_json_records(document, path)):
        yield RawRecord(f"{path}[#{index}]", value)


def _is_json_lines(text: str, err: json.JSONDecodeError) -> bool:
    """True when a document failed only because more objects follow the first one."""
    return err.msg == "Extra data" and text.lstrip().startswith("{")


def _json_records(document: Any, path: Path) -> list:
    """The record list of a JSON document: the array itself, or the one list inside an object."""
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        lists = [value for value in document.values() if isinstance(value, list)]
        if len(lists) == 1:
            return lists[0]
    raise DataError(
        str(path),
        'expected a JSON array of records or an object holding one list, such as {"data": [...]}',
    )


def read_text(path: Path) -> str:
    """A whole file as UTF-8 text, naming the line of any bad byte."""
    return _decode(path.read_bytes(), path, 1)


def _read_csv(path: Path) -> Iterator[RawRecord]:
    rows = csv_rows(path)
    _, header = next(rows, (1, None))
    if header is None:
        return
    for line, cells in rows:
        if cells:
            yield _csv_record(f"{path}:{line}", header, cells)


def csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, cells) per CSV row; a quoted cell may span several lines."""
    reader = csv.reader(_decoded_lines(path))
    first_line = 1
    try:
        for cells in reader:
            yield first_line, cells
            first_line = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}", f"invalid CSV: {err}") from None


def _csv_record(source: str, header: list[str], cells: list[str]) -> RawRecord:
    if len(cells) != len(header):
        return RawRecord(
            source, cells, error=f"row has {len(cells)} cells but the header has {len(header)}"
        )
    return RawRecord(source, dict(zip(header, cells)))


def _read_txt(path: Path) -> Iterator[RawRecord]:
    """Each paragraph (lines between blank lines) is one record, sourced at its first line."""
    numbered = enumerate(_decoded_lines(path), start=1)
    for has_text, group in itertools.groupby(numbered, key=lambda item: bool(item[1].strip())):
        if has_text:
            lines = list(group)
            paragraph = "\n".join(line.rstrip("\r\n") for _, line in lines)
            yield RawRecord(f"{path}:{lines[0][0]}", paragraph)


def _read_parquet(path: Path) -> Iterator[RawRecord]:
    # Imported here: pyarrow is heavy and only this format needs it.
    import pyarrow
    import pyarrow.parquet

    try:
        parquet_file = pyarrow.parquet.ParquetFile(path)
    except pyarrow.ArrowException as err:
        raise DataError(str(path), f"cannot read parquet: {err}") from None
    rows = itertools.chain.from_iterable(batch.to_pylist() for batch in parquet_file.iter_batches())
    for index, value in enumerate(rows):
        yield RawRecord(f"{path}[row {index}]", value)


_READERS = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".txt": _read_txt,
}
