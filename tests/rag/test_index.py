import json
import sqlite3

import pytest

from lmforge.rag.index import Index, build_index, index_terms, reciprocal_rank_fusion, search


def chunk_ids(folder) -> dict[str, list[int]]:
    rows = sqlite3.connect(folder / "index.sqlite").execute("SELECT path, id FROM chunks ORDER BY id").fetchall()
    ids: dict[str, list[int]] = {}
    for path, chunk_id in rows:
        ids.setdefault(path.rsplit("/", 1)[-1], []).append(chunk_id)
    return ids


def test_search_finds_the_document_by_keywords_embeddings_and_both(rag_docs, tmp_path, embedder):
    stats = build_index([str(rag_docs)], tmp_path / "index", embedder, chunk_tokens=64, overlap=8)
    assert stats["added"] == 3 and stats["chunks"] == 3
    index = Index(tmp_path / "index")
    for mode in ("bm25", "dense", "hybrid"):
        [top] = search(index, embedder, "Who is the mayor of Traa?", k=1, mode=mode)
        assert top.doc_id == "traa.md" and top.headings == ["Traa"] and "Brondso Figond" in top.text, mode
    [top] = search(index, embedder, "What is the motto of Kassim Works?", k=1)
    assert top.source.endswith("kassim.txt") and top.location == "line 1"
    assert len(search(index, embedder, "mayor", k=10)) == 3  # k past the number of chunks
    assert search(index, embedder, '"* OR NEAR( -:', k=2, mode="bm25") == []  # FTS5 syntax is only ever quoted
    assert [hit.doc_id for hit in search(index, embedder, 'mayor" OR "Traa', k=1, mode="bm25")] == ["traa.md"]


def test_only_changed_files_are_indexed_again(rag_docs, tmp_path, embedder):
    folder = tmp_path / "index"
    build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    before = chunk_ids(folder)
    (rag_docs / "traa.md").write_text("# Traa\nThe new mayor of Traa is Alda Vorn.\n", encoding="utf-8")
    (rag_docs / "kassim.txt").unlink()
    stats = build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    assert (stats["changed"], stats["removed"], stats["unchanged"], stats["chunks"]) == (1, 1, 1, 2)
    after = chunk_ids(folder)
    assert after["garhal.md"] == before["garhal.md"]
    assert min(after["traa.md"]) > max(max(ids) for ids in before.values())  # new chunks, never an old id again
    assert "kassim.txt" not in after
    [top] = search(Index(folder), embedder, "Who is the mayor of Traa?", k=1)
    assert "Alda Vorn" in top.text


def test_a_bad_file_is_named_and_the_files_before_it_are_kept(rag_docs, tmp_path, embedder):
    (rag_docs / "zz-broken.jsonl").write_text('{"text": "fine"}\n{oops\n', encoding="utf-8")
    folder = tmp_path / "index"
    with pytest.raises(ValueError, match=r"zz-broken.jsonl:2: invalid JSON"):
        build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    assert set(chunk_ids(folder)) == {"garhal.md", "kassim.txt", "traa.md"}  # each finished file was committed
    assert search(Index(folder), embedder, "Who is the mayor of Traa?", k=1)  # and can be searched
    (rag_docs / "zz-broken.jsonl").unlink()
    stats = build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    assert stats["unchanged"] == 3 and stats["added"] == 0


def test_a_file_reached_under_another_name_gets_its_new_id(rag_docs, tmp_path, embedder):
    (rag_docs / "sub").mkdir()
    (rag_docs / "garhal.md").rename(rag_docs / "sub" / "garhal.md")
    folder = tmp_path / "index"
    build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    stats = build_index([str(rag_docs / "sub")], folder, embedder, chunk_tokens=64, overlap=8)
    assert stats["changed"] == 1 and stats["removed"] == 2
    assert [hit.doc_id for hit in search(Index(folder), None, "Garhal", k=1, mode="bm25")] == ["garhal.md"]


def test_another_embedder_or_chunk_size_is_refused(rag_docs, tmp_path, embedder):
    folder = tmp_path / "index"
    build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    with pytest.raises(ValueError, match="chunk_tokens"):
        build_index([str(rag_docs)], folder, embedder, chunk_tokens=32, overlap=8)
    (folder / "manifest.json").unlink()  # the database still knows what it was built with
    with pytest.raises(ValueError, match="chunk_tokens"):
        build_index([str(rag_docs)], folder, embedder, chunk_tokens=32, overlap=8)
    build_index([str(rag_docs)], folder, embedder, chunk_tokens=64, overlap=8)
    with pytest.raises(ValueError, match="at most 216"):
        build_index([str(rag_docs)], tmp_path / "other", embedder, chunk_tokens=250, overlap=8)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "fingerprint": "0" * 64}), encoding="utf-8")
    with pytest.raises(ValueError, match="another model"):
        search(Index(folder), embedder, "mayor", k=1)
    assert search(Index(folder), None, "mayor", k=1, mode="bm25")  # keywords need no embedder


def test_chinese_is_indexed_by_characters_and_pairs():
    assert index_terms("Traa的市长是谁？") == ["traa", "的", "市", "长", "是", "谁", "的市", "市长", "长是", "是谁"]


def test_reciprocal_rank_fusion_by_hand():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=10)
    expected = {1: 1 / 11 + 1 / 12, 2: 1 / 12, 3: 1 / 13 + 1 / 11}
    assert [item for item, _ in fused] == [1, 3, 2]
    assert all(score == pytest.approx(expected[item]) for item, score in fused)


def test_cli_indexes_and_queries(rag_docs, tmp_path, capsys):
    from lmforge.cli import main

    assert main(["rag", "index", "--source", str(rag_docs), "--index", str(tmp_path / "ix"), "--chunk-tokens", "64"]) == 0
    assert main(["rag", "query", "--index", str(tmp_path / "ix"), "--query", "Garhal的市长是谁？", "--k", "1"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["query"] == "Garhal的市长是谁？" and line["hits"][0]["doc_id"] == "garhal.md"
    assert main(["rag", "query", "--index", str(tmp_path / "nothing"), "--query", "x"]) == 2
    assert json.loads((tmp_path / "ix" / "manifest.json").read_text(encoding="utf-8"))["embedder"] == "minilm"
    assert main(["rag", "index", "--source", str(rag_docs), "--index", str(tmp_path / "x2"), "--overlap", "300"]) == 2
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"question": "Who is the mayor of Traa?", "doc_id": "traa.md"}\n'
                         '{"question": "Which river is Garhal on?", "doc_id": "garhal.md"}\n', encoding="utf-8")
    assert main(["rag", "eval", "--index", str(tmp_path / "ix"), "--questions", str(questions), "--k", "1"]) == 0
    results = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert results["retrieval"]["hybrid"] == {"recall@1": 1.0, "mrr@1": 1.0, "ndcg@1": 1.0, "n": 2}
    assert set(results["retrieval"]) == {"hybrid", "bm25", "dense"}
