"""A retrieval index in one folder, no server: `index.sqlite` holds the chunks, their keyword terms in an SQLite
FTS5 table (BM25 ranking, in the standard library) and their embedding vectors; `manifest.json` names the embedder
and the fingerprint of its files, so a query embedded by another model is refused instead of silently matching
nonsense.

Updates are incremental: a file whose bytes did not change keeps its chunks and vectors, a changed file's chunks
are replaced, and a file no longer among the sources loses its chunks. Each file is read and embedded outside any
transaction and then written in a short one of its own, so readers are never locked out for long and an update
that stops half-way keeps what it finished. The settings live in the database too (`manifest.json` is their copy
for people), so a half-written index can never take vectors of another embedder.

BM25 needs words, and Chinese is written without spaces: CJK text is indexed as single characters and character
pairs, the usual tokenisation-free approach, while other scripts are indexed by lower-cased words.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmforge.rag.ingest import Chunk, chunk_document, read_documents, source_files
from lmforge.runs import atomic_write_text, sha256_file

log = logging.getLogger("lmforge.rag")

MANIFEST, DATABASE = "manifest.json", "index.sqlite"
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
WORD = re.compile(r"[^\W_]+")
PREFIX_TOKENS = 32  # of the title and heading path embedded in front of a chunk
MARGIN = 8  # tokens for the embedder's special tokens and the joints between prefix and text
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, doc_id TEXT NOT NULL,
    title TEXT NOT NULL, headings TEXT NOT NULL, location TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks (path);
CREATE VIRTUAL TABLE IF NOT EXISTS terms USING fts5 (body);
"""


def index_terms(text: str) -> list[str]:
    """Lower-cased words, and CJK runs as characters plus character pairs."""
    terms = []
    for part in CJK.split(text.lower()):
        terms += WORD.findall(part)
    for run in CJK.findall(text):
        terms += list(run) + [run[i : i + 2] for i in range(len(run) - 1)]
    return terms


@dataclass
class Hit:
    id: int
    score: float
    doc_id: str
    title: str
    headings: list[str]
    location: str
    text: str
    source: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def build_index(sources: list[str], folder: str | Path, embedder, chunk_tokens: int, overlap: int,
                embedder_name: str | None = None) -> dict:
    """Create or update the index in `folder` from the source files and folders (the whole list, every time:
    files not in it are dropped); returns what changed. `embedder_name` is what the manifest calls the embedder
    (`minilm`, or its folder)."""
    folder = Path(folder)
    settings = {"embedder": embedder_name or embedder.path, "fingerprint": embedder.fingerprint,
                "dimensions": embedder.dimensions, "chunk_tokens": chunk_tokens, "overlap": overlap}
    if chunk_tokens + PREFIX_TOKENS + MARGIN > embedder.max_tokens:
        raise ValueError(f"chunks of {chunk_tokens} tokens, with the title in front, do not fit the embedder's "
                         f"{embedder.max_tokens}-token window: use at most "
                         f"{embedder.max_tokens - PREFIX_TOKENS - MARGIN} (--chunk-tokens)")
    files = source_files(sources)
    folder.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(folder / DATABASE)
    try:
        with connection:
            connection.executescript(SCHEMA)
            _claim(connection, folder, settings)
        _write_manifest(folder, settings)  # final already: an update stopped half-way leaves a usable index
        stats = _update(connection, files, embedder, chunk_tokens, overlap)
        stats["chunks"] = connection.execute("SELECT count(*) FROM chunks").fetchone()[0]
    except sqlite3.Error as err:
        raise ValueError(f"{folder / DATABASE}: {err}") from err
    finally:
        connection.close()
    return stats


def _write_manifest(folder: Path, settings: dict) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(settings, indent=2) + "\n")


def _claim(connection, folder: Path, settings: dict) -> None:
    """Record the settings in a new index, or check that an existing one was built with the same."""
    row = connection.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
    if row is None:
        connection.execute("INSERT INTO meta (key, value) VALUES ('settings', ?)", (json.dumps(settings),))
        return
    built = json.loads(row[0])
    changed = [key for key in ("fingerprint", "chunk_tokens", "overlap") if built.get(key) != settings[key]]
    if changed:
        raise ValueError(f"{folder} was built with other settings ({', '.join(changed)}: embedder "
                         f"{built.get('embedder')}, {built.get('chunk_tokens')}-token chunks, overlap "
                         f"{built.get('overlap')}); index into a new folder, or delete this one to rebuild it")


def _update(connection, files: list[tuple[Path, str]], embedder, chunk_tokens: int, overlap: int) -> dict:
    known = {path: (name, digest) for path, name, digest in connection.execute("SELECT path, name, hash FROM files")}
    current: dict[str, tuple[Path, str]] = {}
    for path, name in files:
        current.setdefault(str(path), (path, name))  # a file reached twice keeps its first name
    stats = {"added": 0, "changed": 0, "removed": 0, "unchanged": 0, "empty": 0, "chunks_added": 0,
             "chunks_removed": 0}
    with connection:
        for path in set(known) - set(current):
            stats["chunks_removed"] += _forget(connection, path)
            stats["removed"] += 1
    for key, (path, name) in current.items():
        digest = sha256_file(path)
        if known.get(key) == (name, digest):
            stats["unchanged"] += 1
            continue
        chunks = [chunk for document in read_documents(path, name)
                  for chunk in chunk_document(document, embedder.tokenizer, chunk_tokens, overlap)]
        vectors = embedder.vectors([_embedded_text(chunk, embedder.tokenizer) for chunk in chunks],
                                   progress=True) if chunks else []
        with connection:
            stats["chunks_removed"] += _forget(connection, key)
            _insert(connection, key, chunks, vectors)
            connection.execute("INSERT INTO files (path, name, hash) VALUES (?, ?, ?)", (key, name, digest))
        stats["changed" if key in known else "added"] += 1
        stats["chunks_added"] += len(chunks)
        if not chunks:
            log.warning("%s: no text to index (a scanned PDF, or an empty file?)", path)
            stats["empty"] += 1
    return stats


def _embedded_text(chunk: Chunk, tokenizer) -> str:
    """What is embedded: the title and heading path (cut to PREFIX_TOKENS tokens) in front of the text, so a chunk
    that never names its subject still matches a question about it."""
    prefix = " / ".join([chunk.title, *chunk.headings])
    offsets = tokenizer(prefix, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    if len(offsets) > PREFIX_TOKENS:
        prefix = prefix[: offsets[PREFIX_TOKENS - 1][1]]
    return prefix + "\n" + chunk.text


def _forget(connection, path: str) -> int:
    ids = [row[0] for row in connection.execute("SELECT id FROM chunks WHERE path = ?", (path,))]
    connection.executemany("DELETE FROM terms WHERE rowid = ?", [(i,) for i in ids])
    connection.execute("DELETE FROM chunks WHERE path = ?", (path,))
    connection.execute("DELETE FROM files WHERE path = ?", (path,))
    return len(ids)


def _insert(connection, path: str, chunks: list[Chunk], vectors) -> None:
    for chunk, vector in zip(chunks, vectors):
        cursor = connection.execute(
            "INSERT INTO chunks (path, doc_id, title, headings, location, text, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (path, chunk.doc_id, chunk.title, json.dumps(chunk.headings, ensure_ascii=False), chunk.location,
             chunk.text, np.asarray(vector, dtype=np.float32).tobytes()))
        terms = index_terms(" ".join([chunk.title, *chunk.headings, chunk.text]))
        connection.execute("INSERT INTO terms (rowid, body) VALUES (?, ?)", (cursor.lastrowid, " ".join(terms)))


class Index:
    """An index folder opened for queries; the vectors are read on the first dense search."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file() or not (self.folder / DATABASE).is_file():
            raise FileNotFoundError(f"{self.folder}: no index here (no {MANIFEST} or {DATABASE}); build one with "
                                    "lmforge rag index")
        self.manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
        uri = (self.folder / DATABASE).resolve().as_uri() + "?mode=ro"
        self.connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._ids = self._vectors = None

    def check_embedder(self, embedder) -> None:
        if embedder.fingerprint != self.manifest["fingerprint"]:
            raise ValueError(f"{self.folder} was built with the embedder {self.manifest['embedder']}; "
                             f"{embedder.path} is another model, and its vectors would not match")

    def _load_vectors(self) -> None:
        rows = self.connection.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()  # one snapshot
        self._ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        self._vectors = np.empty((len(rows), self.manifest["dimensions"]), dtype=np.float32)
        for row, (_, blob) in enumerate(rows):
            self._vectors[row] = np.frombuffer(blob, dtype=np.float32)

    def keyword(self, query: str, k: int) -> list[tuple[int, float]]:
        """BM25 over the chunks' terms (higher is better)."""
        terms = sorted(set(index_terms(query)))
        if not terms:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)
        rows = self.connection.execute(
            "SELECT rowid, bm25(terms) FROM terms WHERE terms MATCH ? ORDER BY bm25(terms) LIMIT ?", (match, k))
        return [(rowid, -score) for rowid, score in rows]

    def dense(self, vector, k: int) -> list[tuple[int, float]]:
        """Cosine similarity to every chunk vector (exact: one matrix product)."""
        if self._vectors is None:
            self._load_vectors()
        if not len(self._ids):
            return []
        scores = self._vectors @ np.asarray(vector, dtype=np.float32)
        top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(self._ids[i]), float(scores[i])) for i in top]

    def hits(self, ranked: list[tuple[int, float]]) -> list[Hit]:
        rows = {row[0]: row for row in self.connection.execute(
            f"SELECT id, doc_id, title, headings, location, text, path FROM chunks WHERE id IN "
            f"({','.join('?' * len(ranked))})", [i for i, _ in ranked])} if ranked else {}
        return [Hit(i, score, row[1], row[2], json.loads(row[3]), row[4], row[5], row[6])
                for i, score in ranked if (row := rows.get(i))]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int = 60) -> list[tuple[int, float]]:
    """Cormack et al.'s fusion: each list adds 1 / (k + rank) to an item (rank from 1); best first, ties by id."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


MODES = ("hybrid", "bm25", "dense")


def search(index: Index, embedder, query: str, k: int, mode: str = "hybrid", pool: int = 20) -> list[Hit]:
    """The k best chunks for `query`: by BM25, by embedding, or both fused by reciprocal rank, each side's best
    max(pool, 4k) taken into the fusion. Not deeper: the deeper the lists, the more chunks that are middling in
    both outrank one that a single list puts first (on benchmarks/rag_speed.py, 50 deep lost a question that BM25
    alone ranked first and 20 deep did not)."""
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose from {', '.join(MODES)}")
    if mode == "bm25":
        return index.hits(index.keyword(query, k))
    index.check_embedder(embedder)
    vector = embedder.vectors([query])[0]
    if mode == "dense":
        return index.hits(index.dense(vector, k))
    depth = max(pool, 4 * k)
    lists = [[i for i, _ in index.keyword(query, depth)], [i for i, _ in index.dense(vector, depth)]]
    return index.hits(reciprocal_rank_fusion(lists)[:k])
