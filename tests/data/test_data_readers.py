import json
import logging

import pytest

from lmforge.data import DataError, RawRecord, expand_paths, load_records, normalize, read_raw


def write_jsonl(path, rows):
    lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_data_error_names_source_and_message():
    err = DataError("data/train.jsonl:17", "missing key 'text'")
    assert str(err) == "data/train.jsonl:17: missing key 'text'"
    assert (err.source, err.message) == ("data/train.jsonl:17", "missing key 'text'")
    assert isinstance(err, ValueError)


def test_jsonl_skips_blank_lines_and_counts_lines_from_one(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one"}\n\n   \n{"text": "two"}\n', encoding="utf-8")
    records = list(read_raw(path))
    assert records == [
        RawRecord(f"{path}:1", {"text": "one"}),
        RawRecord(f"{path}:4", {"text": "two"}),
    ]


def test_jsonl_bad_line_becomes_an_error_record_and_reading_goes_on(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"text": "one"}\n{"text": "two"}\n{"text": oops}\n{"text": "four"}\n', encoding="utf-8"
    )
    records = list(read_raw(path))
    assert [record.source for record in records] == [f"{path}:{n}" for n in (1, 2, 3, 4)]
    assert records[2].error.startswith("invalid JSON")
    assert records[3].value == {"text": "four"}
    with pytest.raises(DataError, match=r"a\.jsonl:3: invalid JSON"):
        normalize(records[2], "text")


def test_json_array_sources_use_the_index(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"text": "x"}, {"text": "y"}]), encoding="utf-8")
    assert [(r.source, r.value) for r in read_raw(path)] == [
        (f"{path}[#0]", {"text": "x"}),
        (f"{path}[#1]", {"text": "y"}),
    ]


def test_json_object_holding_one_list(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"version": 2, "data": [{"text": "x"}]}), encoding="utf-8")
    assert [r.value for r in read_raw(path)] == [{"text": "x"}]


def test_json_file_that_is_really_json_lines(tmp_path):
    path = write_jsonl(tmp_path / "a.json", [{"text": "x"}, {"text": "y"}])
    assert [(r.source, r.value) for r in read_raw(path)] == [
        (f"{path}:1", {"text": "x"}),
        (f"{path}:2", {"text": "y"}),
    ]


def test_broken_json_document_names_the_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"text": "x"},\n  {"text": }\n]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.json:3: invalid JSON"):
        list(read_raw(path))


def test_json_document_without_a_record_list(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"a": [1], "b": [2]}', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON array"):
        list(read_raw(path))


def test_csv_rows_become_string_dicts_with_file_line_numbers(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text(
        'instruction,input,output\nSay hi,,Hi\n"Two\nlines",x,y\n\nlast,,z\n', encoding="utf-8"
    )
    records = list(read_raw(path))
    assert [(r.source, r.value) for r in records] == [
        (f"{path}:2", {"instruction": "Say hi", "input": "", "output": "Hi"}),
        (f"{path}:3", {"instruction": "Two\nlines", "input": "x", "output": "y"}),
        (f"{path}:6", {"instruction": "last", "input": "", "output": "z"}),
    ]


def test_csv_row_with_wrong_cell_count_and_byte_order_mark(tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes("\ufefftext,label\nfine,1\ntoo,many,cells\n".encode("utf-8"))
    first, second = read_raw(path)
    assert first.value == {"text": "fine", "label": "1"}
    assert second.error == "row has 3 cells but the header has 2"
    assert second.source == f"{path}:3"


def test_parquet_rows_become_dicts(tmp_path):
    import pyarrow
    import pyarrow.parquet

    path = tmp_path / "a.parquet"
    table = pyarrow.table({"text": ["x", "你好"], "n": [1, 2]})
    pyarrow.parquet.write_table(table, path)
    assert [(r.source, r.value) for r in read_raw(path)] == [
        (f"{path}[row 0]", {"text": "x", "n": 1}),
        (f"{path}[row 1]", {"text": "你好", "n": 2}),
    ]


def test_damaged_parquet_file(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"a\.parquet: cannot read parquet"):
        list(read_raw(path))


def test_txt_paragraphs_are_records_sourced_at_their_first_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\nfirst para\nstill first\n\n\nsecond\r\n", encoding="utf-8")
    assert [(r.source, r.value) for r in read_raw(path)] == [
        (f"{path}:2", "first para\nstill first"),
        (f"{path}:6", "second"),
    ]


def test_chinese_text_round_trips_untouched(tmp_path):
    rows = [{"instruction": "把这句话翻译成英文", "output": "Translate this sentence."}]
    path = write_jsonl(tmp_path / "zh.jsonl", rows)
    text_path = tmp_path / "zh.txt"
    text_path.write_text("床前明月光，\n疑是地上霜。\n", encoding="utf-8")
    alpaca = load_records(path, "alpaca").records[0]
    assert alpaca["messages"][0]["content"] == "把这句话翻译成英文"
    assert load_records(text_path, "text").records == [{"text": "床前明月光，\n疑是地上霜。"}]


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin\.jsonl:2: not valid UTF-8"):
        list(read_raw(path))


def test_expand_paths_walks_folders_recursively_in_sorted_order(tmp_path):
    names = ("b/z.jsonl", "b/a.csv", "a.txt", "c/d/e.parquet", "notes.md", ".cache/x.json", "b/.hidden.json")
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("", encoding="utf-8")
    single = tmp_path / "b" / "z.jsonl"
    assert expand_paths([single, tmp_path]) == [
        single,
        tmp_path / "a.txt",
        tmp_path / "b" / "a.csv",
        tmp_path / "b" / "z.jsonl",
        tmp_path / "c" / "d" / "e.parquet",
    ]
    assert expand_paths(str(single)) == [single]


def test_expand_paths_errors(tmp_path):
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"notes\.md: unsupported file type '\.md'"):
        expand_paths(tmp_path / "notes.md")
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        expand_paths([tmp_path / "missing.jsonl"])
    with pytest.raises(DataError, match="folder holds no data files"):
        expand_paths(tmp_path / "empty")


def test_load_records_raises_the_first_error_with_its_line(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "ok"}, {"text": "ok"}, {"txt": "bad"}])
    with pytest.raises(DataError, match=r"a\.jsonl:3: missing key 'text' \(keys present: txt\)"):
        load_records(path, "text")


def test_load_records_skip_mode_counts_and_warns(tmp_path, caplog):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one"}\n{broken\n{"txt": "x"}\n{"text": "four"}\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="lmforge.data"):
        loaded = load_records([path], "text", on_error="skip")
    assert loaded.records == [{"text": "one"}, {"text": "four"}]
    assert loaded.skipped == 2
    assert loaded.files == [path]
    assert loaded.errors[0].startswith(f"{path}:2: invalid JSON")
    assert loaded.errors[1].startswith(f"{path}:3: missing key 'text'")
    assert "skipped 2 bad record(s) of 4" in caplog.text
    assert f"{path}:2" in caplog.text


def test_load_records_keeps_at_most_twenty_errors(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": ""}] * 25 + [{"text": "ok"}])
    loaded = load_records(path, "text", on_error="skip")
    assert (loaded.skipped, len(loaded.errors), len(loaded.records)) == (25, 20, 1)


def test_load_records_with_nothing_valid(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"txt": "x"}])
    with pytest.raises(DataError, match=r"a\.jsonl: no records \(1 skipped; first error: .*:1: missing"):
        load_records(path, "text", on_error="skip")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty\.jsonl: no records$"):
        load_records(empty, "text")


def test_load_records_rejects_unknown_choices(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": "x"}])
    with pytest.raises(ValueError, match="unknown schema 'chat' .*text, alpaca, messages, preference"):
        load_records(path, "chat")
    with pytest.raises(ValueError, match="unknown on_error 'ignore' .*raise, skip"):
        load_records(path, "text", on_error="ignore")
