"""Retrieval-augmented generation: `lmforge rag index` turns documents into an embedded index (chunks with their
heading paths, BM25 terms and vectors), `lmforge rag query` searches it by keywords, embeddings or both and, given
a model, answers with numbered citations, and `lmforge rag eval` scores the search against gold documents and the
answers against gold answers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from lmforge.config import Section
from lmforge.rag.answer import load_rag_program, open_retriever, rag_conversation, read_reply, with_references

__all__ = ["load_rag_program", "open_retriever", "rag_conversation", "read_reply", "with_references"]


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


class AnswerSection(EmbeddingSection):
    """The model that answers from the retrieved chunks, and when it is not asked at all."""

    model: str | None = Field(None, description="local model folder that answers from the hits (omit: search only)")
    url: str | None = Field(None, description="or an OpenAI-compatible API base URL that answers")
    served_model: str = Field("", description="model id at --url (default: the first one it lists)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key for --url")
    program: str | None = Field(None, description="prompt program for the answer: its system text, template (given "
                                "`sources` and `question`), temperature, max_new_tokens and stop apply; default: the "
                                "built-in one that asks for [n] citations")
    min_score: float = Field(0.0, description="reply \"I don't know\" without asking the model when no chunk's "
                             "cosine similarity to the question reaches this (0: always ask)")


class RagQueryConfig(AnswerSection):
    index: str = Field(description="index folder built by `lmforge rag index`")
    query: list[str] = Field(description="question(s); each gets its own hits")
    k: int = Field(5, ge=1, description="hits per question")
    mode: Literal["hybrid", "bm25", "dense"] = Field(
        "hybrid", description="hybrid (BM25 and embeddings fused by reciprocal rank), bm25 or dense")
    embedder: str | None = Field(None, description="embedder folder (default: the one the index was built with; "
                                 "another model is refused)")


class RagEvalConfig(AnswerSection):
    index: str = Field(description="index folder built by `lmforge rag index`")
    questions: str = Field(description="jsonl of {question, doc_id (or doc_ids), answer}; unanswerable questions "
                           "say \"answerable\": false")
    k: int = Field(5, ge=1, description="cut-off for recall@k, MRR@k and nDCG@k")
    modes: list[Literal["hybrid", "bm25", "dense"]] = Field(
        ["hybrid", "bm25", "dense"], description="search modes to score side by side")
    embedder: str | None = Field(None, description="embedder folder (default: the one the index was built with)")
    answer_mode: Literal["hybrid", "bm25", "dense"] = Field("hybrid", description="search mode behind the answers")
    bootstrap_iters: int = Field(1000, ge=2, description="bootstrap resamples for the answers' 95% intervals")


def run_index(cfg: RagIndexConfig) -> dict:
    from lmforge.embedders import MINILM, SentenceEmbedder, resolve_embedder
    from lmforge.rag.index import build_index

    embedder = SentenceEmbedder(resolve_embedder(cfg.embedder), cfg.device, cfg.dtype)
    name = cfg.embedder if cfg.embedder == MINILM else embedder.path  # a folder by its absolute path
    return build_index(cfg.source, Path(cfg.index), embedder, cfg.chunk_tokens, cfg.overlap, name)


def run_query(cfg: RagQueryConfig) -> list[dict]:
    """Each query's hits, and its answer when a model is given."""
    from lmforge.rag.index import Index, search

    index = Index(cfg.index)
    embedder = None if cfg.mode == "bm25" and cfg.min_score == 0 else _embedder(index, cfg)
    if cfg.model is None and cfg.url is None:
        return [{"query": query, "hits": [hit.as_dict() for hit in search(index, embedder, query, cfg.k, cfg.mode)]}
                for query in cfg.query]
    answers = _answers(index, embedder, cfg, cfg.query, cfg.mode)
    return [{"query": query, **answer.as_dict()} for query, answer in zip(cfg.query, answers)]


def run_eval(cfg: RagEvalConfig) -> dict:
    """Retrieval metrics per search mode, and answer metrics when a model is given."""
    from lmforge.rag.evaluate import answer_samples, answer_summary, evaluate_retrieval, read_questions
    from lmforge.rag.index import Index

    index = Index(cfg.index)
    questions = read_questions(cfg.questions)
    answering = cfg.model is not None or cfg.url is not None
    embedder = None if set(cfg.modes) == {"bm25"} and not answering else _embedder(index, cfg)
    results = {"retrieval": evaluate_retrieval(index, embedder, questions, cfg.k, list(dict.fromkeys(cfg.modes)))}
    if answering:
        answers = _answers(index, embedder, cfg, [q["question"] for q in questions], cfg.answer_mode)
        samples = answer_samples(questions, answers)
        results["answers"] = answer_summary(samples, cfg.bootstrap_iters)
        results["samples"] = samples
    return results


def _answers(index, embedder, cfg: AnswerSection, questions: list[str], mode: str):
    from lmforge.clients import chat_model
    from lmforge.rag.answer import answer_questions, load_rag_program

    program = load_rag_program(cfg.program)
    model = chat_model(cfg.model, cfg.url, cfg.served_model, cfg.device, cfg.api_key_env)
    return answer_questions(index, embedder, model, questions, cfg.k, mode, cfg.min_score, program)


def _embedder(index, cfg: RagQueryConfig | RagEvalConfig):
    """The embedder named on the command line, else the one the index manifest names."""
    from lmforge.embedders import SentenceEmbedder, resolve_embedder

    return SentenceEmbedder(resolve_embedder(cfg.embedder or index.manifest["embedder"]), cfg.device, cfg.dtype)
