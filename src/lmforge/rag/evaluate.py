"""Retrieval scored against gold document ids, offline and with no judge model: recall@k (the share of a
question's gold documents among the first k hits), MRR@k (one over the rank of the first gold hit) and nDCG@k (binary relevance by document, each
gold document counted once), for each search mode side by side."""

from __future__ import annotations

import math
from pathlib import Path

from lmforge.rag.ingest import jsonl_records


def read_questions(path: str | Path) -> list[dict]:
    """Records with `question` and the gold `doc_id` (or a list, `doc_ids`); a bad line is named."""
    questions = []
    for number, record in jsonl_records(path):
        gold = record.get("doc_ids", record.get("doc_id")) if isinstance(record, dict) else None
        gold = [gold] if isinstance(gold, (str, int)) else gold
        if not isinstance(gold, list) or not gold or not isinstance(record.get("question"), str):
            raise ValueError(f"{path}:{number}: a question record needs `question` and `doc_id` (or `doc_ids`)")
        questions.append({"question": record["question"], "gold": [str(doc) for doc in gold]})
    if not questions:
        raise ValueError(f"{path}: no questions")
    return questions


def ranking_metrics(ranked: list[str], gold: list[str], k: int) -> dict[str, float]:
    """recall, reciprocal rank and nDCG of one ranked list of document ids (repeats allowed) at cut-off k."""
    wanted, found, dcg, first = set(gold), set(), 0.0, None
    for rank, doc in enumerate(ranked[:k], 1):
        if doc in wanted and doc not in found:
            found.add(doc)
            dcg += 1 / math.log2(rank + 1)
            first = first or rank
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return {"recall": len(found) / len(wanted), "mrr": 1 / first if first else 0.0, "ndcg": dcg / ideal}


def evaluate_retrieval(index, embedder, questions: list[dict], k: int, modes: list[str]) -> dict[str, dict]:
    """Mean recall@k, MRR@k and nDCG@k per search mode over the questions."""
    from lmforge.rag.index import search

    results = {}
    for mode in modes:
        scores = [ranking_metrics([hit.doc_id for hit in search(index, embedder, q["question"], k, mode)],
                                  q["gold"], k) for q in questions]
        results[mode] = {f"{name}@{k}": sum(s[name] for s in scores) / len(scores) for name in scores[0]}
        results[mode]["n"] = len(scores)
    return results


def results_table(results: dict[str, dict]) -> str:
    names = [name for name in next(iter(results.values())) if name != "n"]
    lines = ["| mode | " + " | ".join(names) + " | n |", "|---|" + "---|" * (len(names) + 1)]
    lines += [f"| {mode} | " + " | ".join(f"{row[name]:.3f}" for name in names) + f" | {row['n']} |"
              for mode, row in results.items()]
    return "\n".join(lines)
