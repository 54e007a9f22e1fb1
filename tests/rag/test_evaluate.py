import math

import pytest

from lmforge.rag.evaluate import ranking_metrics, read_questions


def test_ranking_metrics_by_hand():
    # gold a and b; a second hit of a (another chunk of it) counts once
    scores = ranking_metrics(["x", "a", "a", "b", "y"], ["a", "b"], k=5)
    ideal = 1 + 1 / math.log2(3)
    assert scores == pytest.approx({"recall": 1.0, "mrr": 0.5, "ndcg": (1 / math.log2(3) + 1 / math.log2(5)) / ideal})
    assert ranking_metrics(["x", "a"], ["a"], k=1) == {"recall": 0.0, "mrr": 0.0, "ndcg": 0.0}


def test_questions_need_a_gold_document_and_bad_lines_are_named(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "q1", "doc_id": "a", "answer": 7}\n{"question": "q2", "doc_ids": ["b", "c"]}\n'
                    '{"question": "q3", "answerable": false}\n', encoding="utf-8")
    assert read_questions(path) == [{"question": "q1", "gold": ["a"], "answerable": True, "answer": "7"},
                                    {"question": "q2", "gold": ["b", "c"], "answerable": True, "answer": None},
                                    {"question": "q3", "gold": [], "answerable": False, "answer": None}]
    path.write_text('{"question": "q1", "doc_id": "a"}\n{"question": "q2"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.jsonl:2: .*doc_id"):
        read_questions(path)
    path.write_text('["not", "a", "record"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"q.jsonl:1: "):
        read_questions(path)
