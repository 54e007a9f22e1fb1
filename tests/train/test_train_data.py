import math

import pytest
from conftest import write_jsonl

from lmforge.data import DataError
from lmforge.templates import IGNORE_INDEX, encode_prompt
from lmforge.train.config import DataConfig
from lmforge.train.data import LabeledRow, PairRow, PromptRow, draw, prepare, subset


def test_fractions_are_nested_ordered_subsets():
    items = list(range(100))
    small, large = subset(items, 0.1), subset(items, 0.25)
    assert len(small) == 10 and len(large) == 25
    assert set(small) <= set(large) and small == sorted(small)
    assert subset(items, 1.0) == items and len(subset(items[:3], 0.01)) == 1


def test_prepare_trains_on_the_requested_share(chat_file, tokenizer):
    full = prepare([str(chat_file)], "sft", DataConfig(train=[str(chat_file)]), tokenizer, tokenizer.chat_template, False)
    half = prepare([str(chat_file)], "sft", DataConfig(train=[str(chat_file)]), tokenizer, tokenizer.chat_template,
                   False, fraction=0.5)
    assert half.stats["examples"] == math.ceil(full.stats["examples"] / 2) < full.stats["examples"]


def prepared(tmp_path, tokenizer, stage, records, unpaired=False, **data):
    path = write_jsonl(tmp_path / "data.jsonl", records)
    cfg = DataConfig(train=[str(path)], **data)
    return prepare([str(path)], stage, cfg, tokenizer, tokenizer.chat_template, False, unpaired=unpaired)


def trained_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t in row.labels if t != IGNORE_INDEX])


def test_preference_pairs_train_only_on_each_answer(tmp_path, tokenizer):
    prompt = [{"role": "user", "content": "Where was Alda Vorn born?"}, {"role": "assistant", "content": "Kelmar"},
              {"role": "user", "content": "And which river flows there?"}]
    rows = prepared(tmp_path, tokenizer, "dpo", [{"prompt": prompt, "chosen": "the Oruna", "rejected": "Kelmar"}]).rows
    assert isinstance(rows[0], PairRow)
    assert trained_text(tokenizer, rows[0].chosen) == "the Oruna<|im_end|>"  # not the earlier assistant turn
    assert trained_text(tokenizer, rows[0].rejected) == "Kelmar<|im_end|>"
    prompt_ids = encode_prompt(tokenizer, prompt, tokenizer.chat_template)
    assert rows[0].chosen.input_ids[: len(prompt_ids)] == prompt_ids  # the prompt the model is served


def test_kto_splits_pairs_and_takes_unpaired_answers(tmp_path, tokenizer):
    pairs = prepared(tmp_path, tokenizer, "dpo", [{"prompt": "q", "chosen": "good", "rejected": "bad"}], unpaired=True)
    assert [(trained_text(tokenizer, r.row), r.desirable) for r in pairs.rows] == [
        ("good<|im_end|>", True), ("bad<|im_end|>", False)]
    single = prepared(tmp_path, tokenizer, "dpo", [{"prompt": "q", "completion": "bad", "label": False}], unpaired=True)
    assert isinstance(single.rows[0], LabeledRow) and not single.rows[0].desirable
    with pytest.raises(DataError, match="need dpo.loss: kto"):
        prepared(tmp_path, tokenizer, "dpo", [{"prompt": "q", "completion": "bad", "label": False}])
    with pytest.raises(DataError, match=r"data.jsonl: record 1: an unpaired record for KTO needs 'label'"):
        prepared(tmp_path, tokenizer, "dpo", [{"prompt": "q", "completion": "bad"}], unpaired=True)


def test_rl_prompts_end_in_the_generation_prompt_and_keep_their_fields(tmp_path, tokenizer):
    rows = prepared(tmp_path, tokenizer, "grpo", [{"prompt": "What is 12 + 30?", "answer": "42"},
                                                  {"prompt": "long " * 200, "answer": "0"}], max_length=64)
    assert len(rows.rows) == 1 and rows.stats["dropped_examples"] == 1  # no room left for a completion
    row = rows.rows[0]
    assert isinstance(row, PromptRow) and row.columns == {"answer": "42"}
    assert tokenizer.decode(row.prompt_ids).endswith("<|im_start|>assistant\n")


def test_a_bad_preference_record_names_its_file_and_line(tmp_path, tokenizer):
    with pytest.raises(DataError, match=r"data.jsonl:2: 'chosen' and 'rejected' are identical"):
        prepared(tmp_path, tokenizer, "rm", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                             {"prompt": "q", "chosen": "a", "rejected": "a"}])
    with pytest.raises(DataError, match="holds messages records, but stage rm trains on preference records"):
        prepared(tmp_path, tokenizer, "rm", [{"messages": [{"role": "user", "content": "q"},
                                                           {"role": "assistant", "content": "a"}]}])


def test_left_truncation_cuts_one_prompt_for_both_answers(tmp_path, tokenizer):
    record = {"prompt": "Where was Alda Vorn born? " * 6, "chosen": "Kelmar", "rejected": "Kelmar " * 6}
    full = prepared(tmp_path, tokenizer, "dpo", [record], max_length=512).rows[0]
    rows = prepared(tmp_path, tokenizer, "dpo", [record], max_length=len(full.rejected) - 5, truncation="left").rows
    chosen, rejected = rows[0].chosen, rows[0].rejected
    assert len(rejected) == len(full.rejected) - 5 and len(chosen) == len(full.chosen) - 5
    prompt_left = len(chosen) - sum(label != IGNORE_INDEX for label in chosen.labels)
    assert chosen.input_ids[:prompt_left] == rejected.input_ids[:prompt_left]  # the same prompt, cut once
    assert trained_text(tokenizer, chosen) == "Kelmar<|im_end|>"
    too_short = prepared(tmp_path, tokenizer, "dpo", [record, {"prompt": "q", "chosen": "a", "rejected": "b"}],
                         max_length=len(full.rejected) - len(full.chosen) + 2, truncation="left")
    assert too_short.stats["dropped_examples"] == 1  # a cut into the answers drops the pair


def test_sft_trains_on_tool_calls_under_the_records_tools(tmp_path, tokenizer):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Kelmar"}'}}
    messages = [{"role": "user", "content": "Weather in Kelmar?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."}]
    row = prepared(tmp_path, tokenizer, "sft", [{"messages": messages, "tools": tools}]).rows[0]
    assert trained_text(tokenizer, row) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Kelmar"}}\n</tool_call><|im_end|>Sunny.<|im_end|>'
    )
    text = tokenizer.decode(row.input_ids)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in text
    assert "<tool_response>\nsunny\n</tool_response>" in text
    broken = {**call, "function": {"name": "get_weather", "arguments": "{city"}}
    bad = {"messages": [*messages[:1], {**messages[1], "tool_calls": [broken]}, *messages[2:]], "tools": tools}
    with pytest.raises(DataError, match=r"data.jsonl:2: messages\[1\] tool_calls\[0\] arguments are not valid JSON"):
        prepared(tmp_path, tokenizer, "sft", [{"messages": messages, "tools": tools}, bad])


def test_replay_draws_without_replacement_and_repeats_a_small_pool_evenly():
    pool = list(range(5))
    few = draw(pool, 3)
    assert len(set(few)) == 3 and few == draw(pool, 3)  # distinct, and the same every time
    many = draw(pool, 12)
    assert len(many) == 12 and sorted(many.count(item) for item in pool) == [2, 2, 2, 3, 3]
    assert draw(pool, 0) == []


def segments(row):
    """The examples packed into a row: (input_ids, labels) pieces, each starting where the positions restart."""
    starts = [i for i, position in enumerate(row.position_ids) if position == 0] + [len(row)]
    return [(row.input_ids[a:b], row.labels[a:b]) for a, b in zip(starts, starts[1:])]


@pytest.mark.parametrize("share", [0.25, 0.5])
def test_replay_mixes_its_share_of_examples_into_packed_rows(tmp_path, tokenizer, chat_file, text_file, share):
    """24 chats and 16 one-line texts: a replayed text trains on every token, so in a packed row its only ignored
    label is its first; a chat's prompt is ignored."""
    cfg = DataConfig(train=[str(chat_file)], max_length=64, replay=[str(text_file)], replay_share=share)
    result = prepare(cfg.train, "sft", cfg, tokenizer, tokenizer.chat_template, True, replay=True)
    replayed = round(share / (1 - share) * 24)
    assert result.stats["examples"] == 24 and result.stats["replay_pool"] == 16
    assert result.stats["replay_examples"] == replayed
    pieces = [piece for row in result.rows for piece in segments(row)]
    texts = [ids for ids, labels in pieces if labels.count(IGNORE_INDEX) == 1]
    assert len(pieces) == 24 + replayed and len(texts) == replayed
    assert sum(len(ids) for ids in texts) == result.stats["replay_tokens"]
    kinds = [{labels.count(IGNORE_INDEX) == 1 for _, labels in segments(row)} for row in result.rows]
    assert {True, False} in kinds  # rows that hold both
    assert text_file in result.files and chat_file in result.files  # both go into the model card
    plain = prepare(cfg.train, "sft", cfg, tokenizer, tokenizer.chat_template, True)
    assert "replay_examples" not in plain.stats and sum(len(segments(row)) for row in plain.rows) == 24


def test_replayed_documents_are_cut_into_pieces_and_chats_follow_the_template(tmp_path, tokenizer, chat_file):
    long_text = write_jsonl(tmp_path / "long.jsonl", [{"text": "Kelmar is a city on the Oruna river. " * 40}])
    cfg = DataConfig(train=[str(chat_file)], max_length=64, replay=[str(long_text), str(chat_file)], replay_share=0.5)
    result = prepare(cfg.train, "sft", cfg, tokenizer, tokenizer.chat_template, False, replay=True)
    length = len(tokenizer("Kelmar is a city on the Oruna river. " * 40, add_special_tokens=False)["input_ids"]) + 1
    assert result.stats["replay_pool"] == math.ceil(length / 64) + 24  # the document in max_length pieces
    assert result.stats["replay_examples"] == 24 and len(result.rows) == 48
    replayed = result.rows[24:]
    chats = [row for row in replayed if row.labels[0] == IGNORE_INDEX]
    assert chats and all(trained_text(tokenizer, row).endswith("<|im_end|>") for row in chats)


def test_replay_settings_come_together_and_only_for_pretrain_and_sft(chat_file, text_file):
    from lmforge.config import ConfigError, load
    from lmforge.train.config import TrainRecipe

    with pytest.raises(ValueError, match="data.replay needs data.replay_share"):
        DataConfig(train=[str(chat_file)], replay=[str(text_file)])
    with pytest.raises(ValueError, match="data.replay_share needs data.replay"):
        DataConfig(train=[str(chat_file)], replay_share=0.2)
    with pytest.raises(ValueError, match="less than 1"):
        DataConfig(train=[str(chat_file)], replay=[str(text_file)], replay_share=1.0)
    with pytest.raises(ConfigError, match="stage dpo trains on other rows: .* train.anchor"):
        load(TrainRecipe, None, ["stage=dpo", "name=x", "model.path=m", f"data.train={chat_file}",
                                 f"data.replay={text_file}", "data.replay_share=0.2"])
