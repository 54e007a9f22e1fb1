"""Documents in, chunks out: txt, md, html, pdf and jsonl files (or folders of them) read into sections that keep
their heading path and place in the source, then cut into token windows with overlap.

Chunks are cut by the embedder's own tokens, so each fits its window, and their text is the source's text between
two token offsets, not a detokenised copy; a chunk's place is the line (txt, md, jsonl), page (pdf) or text block
(html) where it starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".jsonl")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.+?)(?:\s+#+)?\s*$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass
class Section:
    """Running text under one heading path, starting at `number` of its source's `unit` (line, page, block);
    `by_newline`: each newline in the text moves to the next unit (the lines of a text file, the blocks of a page)."""

    headings: list[str]
    text: str
    unit: str
    number: int
    by_newline: bool = False


@dataclass
class Document:
    source: str  # the file's path
    doc_id: str
    title: str
    sections: list[Section] = field(default_factory=list)


@dataclass
class Chunk:
    doc_id: str
    source: str
    title: str
    headings: list[str]
    location: str
    text: str


def source_files(paths: list[str]) -> list[tuple[Path, str]]:
    """Every readable file under the given files and folders (hidden ones skipped), in a stable order, with its
    name: the path below the folder it was found in, or the file's own name."""
    files: list[tuple[Path, str]] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += [(p.resolve(), p.relative_to(path).as_posix()) for p in sorted(path.rglob("*"))
                      if p.is_file() and p.suffix.lower() in SUFFIXES
                      and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise ValueError(f"{path}: cannot read {path.suffix or 'files without a suffix'} "
                                 f"(readable: {', '.join(SUFFIXES)})")
            files.append((path.resolve(), path.name))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def read_documents(path: Path, name: str | None = None) -> list[Document]:
    """The documents of one file: one per file (its id: `name`, by default the file name), or one per record of a
    jsonl file. Any failure to read it names the file."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return _jsonl(path, name or path.name)
        reader = {".txt": _text, ".md": _markdown, ".markdown": _markdown, ".html": _html, ".htm": _html,
                  ".pdf": _pdf}[suffix]
        return [reader(path, name or path.name)]
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: {err}") from err
    except Exception as err:  # a PDF library or decoding failure: still a bad input file, named
        raise ValueError(f"{path}: cannot read it ({type(err).__name__}: {err})") from err


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8-sig")


def _text(path: Path, name: str) -> Document:
    return Document(str(path), name, path.stem, [Section([], _read_text(path), "line", 1, True)])


def _markdown(path: Path, name: str) -> Document:
    """Sections split at ATX headings (`#` to `######`, not inside fenced code), each with the path of headings
    above it; the first top-level heading is the title."""
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    lines: list[tuple[int, str]] = []
    title, fence = None, None

    def close() -> None:
        while lines and not lines[0][1].strip():
            lines.pop(0)
        text = "\n".join(line for _, line in lines).rstrip()
        if text:
            sections.append(Section([name for _, name in stack], text, "line", lines[0][0], True))
        lines.clear()

    for number, line in enumerate(_read_text(path).split("\n"), 1):
        marker = FENCE.match(line)
        if marker and fence is None:
            fence = marker.group(1)
        elif marker and marker.group(1).startswith(fence) and not line.strip().strip(fence[0]):
            fence = None  # a closing fence: the same character, at least as long, nothing after it
        heading = None if fence else ATX_HEADING.match(line)
        if heading:
            close()
            level, text = len(heading.group(1)), heading.group(2)
            stack = [(lvl, name) for lvl, name in stack if lvl < level] + [(level, text)]
            title = title or (text if level == 1 else None)
        else:
            lines.append((number, line))
    close()
    return Document(str(path), name, title or path.stem, sections)


HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
HTML_INLINE = ("a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd", "mark", "q",
               "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var")


def _html(path: Path, name: str) -> Document:
    """All visible text, in sections split at h1-h6, scripts and styles left out; inline tags join the text around
    them and every other tag separates it. The title is <title>, else the first h1. The encoding is the page's
    own (BeautifulSoup reads the bytes)."""
    from bs4 import BeautifulSoup
    from bs4.element import PreformattedString

    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    page_title = soup.title.get_text(" ", strip=True) if soup.title else None
    for hidden in soup(["head", "title", "script", "style", "noscript", "template"]):
        hidden.decompose()
    for tag in soup.find_all(HTML_INLINE):
        tag.unwrap()
    soup.smooth()
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    blocks: list[str] = []
    title, first, count, current = page_title, 0, 0, None
    for piece in soup.find_all(string=True):
        if isinstance(piece, PreformattedString) or not (text := " ".join(piece.split())):  # comments, doctype...
            continue
        count += 1
        heading = piece.find_parent(HTML_HEADINGS)
        if heading is None:
            first = first if blocks else count
            blocks.append(text)
            continue
        if heading is not current:
            if blocks:
                sections.append(Section([name for _, name in stack], "\n".join(blocks), "block", first, True))
                blocks.clear()
            level = int(heading.name[1])
            heading_text = " ".join(heading.get_text(" ").split())
            stack = [(lvl, name) for lvl, name in stack if lvl < level] + [(level, heading_text)]
            title = title or (heading_text if level == 1 else None)
            current = heading
    if blocks:
        sections.append(Section([name for _, name in stack], "\n".join(blocks), "block", first, True))
    return Document(str(path), name, title or path.stem, sections)


def _pdf(path: Path, name: str) -> Document:
    """One section per page with text (pages of scanned images have none: there is no OCR here)."""
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    title = str((reader.metadata.title if reader.metadata else None) or "").strip() or path.stem
    sections = [Section([], text.strip(), "page", number)
                for number, page in enumerate(reader.pages, 1) if (text := page.extract_text() or "").strip()]
    return Document(str(path), name, title, sections)


def _jsonl(path: Path, name: str) -> list[Document]:
    """One document per record: `text` (required), `id` and `title` (optional; the default id is the file's name
    and the line)."""
    documents = []
    for number, record in jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{number}: a document record needs a string `text` field")
        doc_id = str(record.get("id", f"{name}:{number}"))
        documents.append(Document(str(path), doc_id, str(record.get("title") or doc_id),
                                  [Section([], record["text"], "line", number)]))
    return documents


def jsonl_records(path: str | Path):
    """(line number, parsed record) for each record of a jsonl file, through the data reader every stage uses
    (UTF-8 with or without a byte-order mark, a broken line named by its number)."""
    from lmforge.data import DataError, read_raw

    for raw in read_raw(Path(path)):
        if raw.error:
            raise DataError(raw.source, raw.error)
        yield int(raw.source.rsplit(":", 1)[1]), raw.value


def chunk_document(document: Document, tokenizer, size: int, overlap: int) -> list[Chunk]:
    """Windows of `size` tokens, each starting `size - overlap` tokens after the last, within each section (a
    chunk never spans two headings)."""
    if not 0 <= overlap < size:
        raise ValueError(f"chunk overlap must be at least 0 and less than the chunk size ({overlap} vs {size})")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("chunking needs a fast (Rust) tokenizer, which maps tokens back to characters")
    chunks = []
    for section in document.sections:
        offsets = tokenizer(section.text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        for first in range(0, max(len(offsets) - overlap, 1), size - overlap) if offsets else ():
            window = offsets[first : first + size]
            start = window[0][0]
            number = section.number + (section.text.count("\n", 0, start) if section.by_newline else 0)
            chunks.append(Chunk(document.doc_id, document.source, document.title, section.headings,
                                f"{section.unit} {number}", section.text[start : window[-1][1]]))
    return chunks
