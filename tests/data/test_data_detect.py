import pytest

from lmforge.data import detect_schema


@pytest.mark.parametrize("line,expected", [
    ('{"text": "Kelmar是一座城市。"}', "text"),
    ('{"instruction": "Add", "input": "1 2", "output": "3"}', "alpaca"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "messages"),
    ('{"conversations": [{"from": "human", "value": "hi"}]}', "messages"),
    ('{"prompt": "q", "chosen": "a", "rejected": "b"}', "preference"),
    ('{"prompt": "q", "completion": "a", "label": true}', "unpaired"),
    ('{"prompt": "q", "answer": "42"}', "prompt"),
    ('{"question": "q"}', "sft-default"),
    ('{not json', "sft-default"),
])
def test_format_is_detected_from_the_first_record(tmp_path, line, expected):
    path = tmp_path / "data.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    assert detect_schema(path, default="sft-default") == expected
