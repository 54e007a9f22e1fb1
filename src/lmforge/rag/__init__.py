"""Retrieval-augmented generation: `lmforge rag index` turns documents into an embedded index (chunks with their
heading paths, BM25 terms and vectors), `lmforge rag query` searches it by keywords, embeddings or both, and
`lmforge rag eval` scores the search against gold documents."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from lmforge.config import Section


class EmbeddingSection(Section):
    """Where and in what precision the embedder runs (its vectors are stored in float32 either way)."""

    device: str = Field("auto", description="auto, cpu, cuda, ...")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="embedder compute dtype: auto is bf16 on GPUs and CPUs that multiply bf16 natively "
        "(about 1.6x faster on such a CPU, vectors within 1e-4 cosine of float32's), else float32")


class RagIndexConfig(EmbeddingSection):
    source: list[str] = Field(description="files or folders to index (txt, md, html, pdf, jsonl)")
    index: str = Field(description="index folder: created, or updated in place (only changed files re-indexed)")
    embedder: str = Field("minilm", description="sentence-transformers model folder, or `minilm` (offline "
                          "all-MiniLM-L6-v2)")
    chunk_tokens: int = Field(200, ge=16, description="chunk length in the embedder's tokens")
    overlap: int = Field(40, ge=0, description="tokens each chunk repeats from the one before")

    @model_validator(mode="after")
    def _overlap_below_size(self):
        if self.overlap >= self.chunk_tokens:
            raise ValueError(f"overlap ({self.overlap}) must be less than chunk_tokens ({self.chunk_tokens})")
        return self


class RagQueryConfig(EmbeddingSection):
    index: str = Field(description="index folder built by `lmforge rag index`")
    query: list[str] = Field(description="question(s); each gets its own hits")
    k: int = Field(5, ge=1, description="hits per question")
    mode: Literal["hybrid", "bm25", "dense"] = Field(
        "hybrid", description="hybrid (BM25 and embeddings fused by reciprocal rank), bm25 or dense")
    embedder: str | None = Field(None, description="embedder folder (default: the one the index was built with; "
                                 "another model is refused)")


class RagEvalConfig(EmbeddingSection):
    index: str = Field(description="index folder built by `lmforge rag index`")
    questions: str = Field(description="jsonl of {question, doc_id} (or doc_ids: a list of gold documents)")
    k: int = Field(5, ge=1, description="cut-off for recall@k, MRR@k and nDCG@k")
    modes: list[Literal["hybrid", "bm25", "dense"]] = Field(
        ["hybrid", "bm25", "dense"], description="search modes to score side by side")
    embedder: str | None = Field(None, description="embedder folder (default: the one the index was built with)")


def run_index(cfg: RagIndexConfig) -> dict:
    from lmforge.embedders import MINILM, SentenceEmbedder, resolve_embedder
    from lmforge.rag.index import build_index

    embedder = SentenceEmbedder(resolve_embedder(cfg.embedder), cfg.device, cfg.dtype)
    name = cfg.embedder if cfg.embedder == MINILM else embedder.path  # a folder by its absolute path
    return build_index(cfg.source, Path(cfg.index), embedder, cfg.chunk_tokens, cfg.overlap, name)


def run_query(cfg: RagQueryConfig) -> list[list[dict]]:
    from lmforge.rag.index import Index, search

    index = Index(cfg.index)
    embedder = None if cfg.mode == "bm25" else _embedder(index, cfg)
    return [[hit.as_dict() for hit in search(index, embedder, query, cfg.k, cfg.mode)] for query in cfg.query]


def run_eval(cfg: RagEvalConfig) -> dict[str, dict]:
    from lmforge.rag.evaluate import evaluate_retrieval, read_questions
    from lmforge.rag.index import Index

    index = Index(cfg.index)
    embedder = None if set(cfg.modes) == {"bm25"} else _embedder(index, cfg)
    return evaluate_retrieval(index, embedder, read_questions(cfg.questions), cfg.k, list(dict.fromkeys(cfg.modes)))


def _embedder(index, cfg: RagQueryConfig | RagEvalConfig):
    """The embedder named on the command line, else the one the index manifest names."""
    from lmforge.embedders import SentenceEmbedder, resolve_embedder

    return SentenceEmbedder(resolve_embedder(cfg.embedder or index.manifest["embedder"]), cfg.device, cfg.dtype)
