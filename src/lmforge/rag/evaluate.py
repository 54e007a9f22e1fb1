"""RAG scored offline, with no judge model.

Retrieval against gold document ids: recall@k (the share of a question's gold documents among the first k hits),
MRR@k (one over the rank of the first gold hit) and nDCG@k (binary relevance by document, each gold document
counted once), for each search mode side by side.

Answers against gold answers: exact match and token F1 on answerable questions, citation precision (the share of
chunks the model cited that come from a gold document; chunks attributed after the fact to an uncited answer are
scored apart, as attribution precision), refusal accuracy (the share of unanswerable questions refused) and the
false-refusal rate on answerable ones, each with a 95% bootstrap interval.
"""

from __future__ import annotations

import math
from pathlib import Path

from lmforge.rag.ingest import jsonl_records


def read_questions(path: str | Path) -> list[dict]:
    """Records with `question` and the gold `doc_id` (or a list, `doc_ids`), and optionally the gold `answer`; an
    unanswerable question says `"answerable": false` instead of naming documents. A bad line is named."""
    questions = []
    for number, record in jsonl_records(path):
        if not isinstance(record, dict) or not isinstance(record.get("question"), str):
            raise ValueError(f"{path}:{number}: a question record needs `question`")
        answerable = record.get("answerable", True) is not False
        gold = record.get("doc_ids", record.get("doc_id"))
        gold = [gold] if isinstance(gold, (str, int)) else gold
        if answerable and (not isinstance(gold, list) or not gold):
            raise ValueError(f"{path}:{number}: an answerable question needs `doc_id` (or `doc_ids`); mark one "
                             "without an answer `\"answerable\": false`")
        answer = record.get("answer")
        questions.append({"question": record["question"], "gold": [str(doc) for doc in gold or []],
                          "answerable": answerable, "answer": None if answer is None else str(answer),
                          **{key: record[key] for key in ("kind", "lang") if key in record}})
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
    questions = [q for q in questions if q["answerable"]]
    if not questions:
        raise ValueError("no answerable questions to score retrieval on")
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


def answer_samples(questions: list[dict], answers: list) -> list[dict]:
    """Per-question scores of the answers (`rag.answer.Answer`), with what was asked and said."""
    from lmforge.answers import same_answer
    from lmforge.metrics import token_f1

    samples = []
    for question, answer in zip(questions, answers):
        metrics = ({"false_refusal": float(answer.refused)} if question["answerable"]
                   else {"refusal_accuracy": float(answer.refused)})
        if question["answerable"] and question["answer"] is not None:
            metrics["exact_match"] = float(not answer.refused and same_answer(answer.text, question["answer"]))
            metrics["f1"] = 0.0 if answer.refused else token_f1(answer.text, question["answer"])
        cited = [c for c in answer.citations if not c["attributed"]]
        attributed = [c for c in answer.citations if c["attributed"]]
        if question["answerable"] and cited:
            metrics["citation_precision"] = sum(c["doc_id"] in question["gold"] for c in cited) / len(cited)
        if question["answerable"] and attributed:  # found after the fact, so never mixed with the model's own
            metrics["attribution_precision"] = sum(c["doc_id"] in question["gold"] for c in attributed) / len(
                attributed)
        samples.append({**question, **answer.as_dict(), "metrics": metrics})
    return samples


ANSWER_METRICS = ("exact_match", "f1", "citation_precision", "attribution_precision", "refusal_accuracy",
                  "false_refusal")


def answer_summary(samples: list[dict], iters: int = 1000) -> dict[str, dict]:
    """Each answer metric's mean and 95% bootstrap interval over the questions it applies to."""
    from lmforge.metrics import aggregate, bootstrap_interval

    summary = {}
    for name in ANSWER_METRICS:
        scored = [s for s in samples if name in s["metrics"]]
        if scored:
            summary[name] = {"value": aggregate(name, scored), "interval": bootstrap_interval(name, scored, iters),
                             "n": len(scored)}
    return summary


def answers_table(summary: dict[str, dict]) -> str:
    lines = ["| metric | value | 95% interval | n |", "|---|---|---|---|"]
    lines += [f"| {name} | {row['value']:.3f} | [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}] | {row['n']} |"
              for name, row in summary.items()]
    return "\n".join(lines)
