import pytest
import torch

from lmforge.models import build_from_preset
from lmforge.sequences import Collator, chunk, pack, truncate, unpacked
from lmforge.templates import BUILTIN_TEMPLATES, IGNORE_INDEX, Encoded, encode_chat
from conftest import FACTS


@pytest.fixture()
def examples(tokenizer):
    template = BUILTIN_TEMPLATES["chatml"]
    return [encode_chat(tokenizer, [{"role": "user", "content": q}, {"role": "assistant", "content": a}], template) for q, a in FACTS]


@pytest.fixture()
def model(tokenizer):
    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    model.config.use_cache = False  # as in training: packed-sequence masks are built only without a KV cache
    return model


def test_packed_loss_equals_unpacked_loss(model, tokenizer, examples):
    plain = Collator(tokenizer.pad_token_id, packed=False)([unpacked(e) for e in examples])
    rows = pack(examples, max_length=64)
    assert len(rows) < len(examples)
    packed = Collator(tokenizer.pad_token_id, packed=True)(rows)
    with torch.no_grad():
        assert model(**packed).loss.item() == pytest.approx(model(**plain).loss.item(), abs=1e-4)


def test_no_attention_across_packed_examples(model, tokenizer, examples):
    rows = pack(examples[:2], max_length=128)
    assert len(rows) == 1
    batch = Collator(tokenizer.pad_token_id, packed=True)(rows)
    with torch.no_grad():
        packed_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits[0]
        start = max(i for i, position in enumerate(rows[0].position_ids) if position == 0)
        assert start > 0
        alone = model(input_ids=torch.tensor([rows[0].input_ids[start:]])).logits[0]
    assert torch.allclose(packed_logits[start:], alone, atol=1e-5)


def test_pack_respects_max_length_and_keeps_every_token(examples):
    longest = max(len(e.input_ids) for e in examples)
    rows = pack(examples, max_length=longest + 4)
    assert all(len(row) <= longest + 4 for row in rows)
    assert sum(len(row) for row in rows) == sum(len(e.input_ids) for e in examples)
    starts = sum(position == 0 for row in rows for position in row.position_ids)
    assert starts == len(examples)
    assert all(row.labels[0] == IGNORE_INDEX for row in rows)


def test_padding_is_masked_out(tokenizer, examples):
    batch = Collator(tokenizer.pad_token_id, packed=False)([unpacked(e) for e in examples])
    padding = batch["attention_mask"] == 0
    assert padding.any()
    assert (batch["labels"][padding] == IGNORE_INDEX).all()
    assert (batch["input_ids"][padding] == tokenizer.pad_token_id).all()


def test_truncation_policies():
    example = Encoded(list(range(10)), list(range(10)))
    assert truncate(example, 4, "right").input_ids == [0, 1, 2, 3]
    assert truncate(example, 4, "left").input_ids == [6, 7, 8, 9]
    assert truncate(example, 4, "drop") is None
    assert truncate(example, 10, "drop") is example
    assert [piece.input_ids for piece in chunk(example, 4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_packed_rows_mix_example_lengths():
    """Rows are not filled by length (which would give each row examples of one length, often of one kind)."""
    examples = [Encoded(list(range(n)), list(range(n))) for n in [5, 6, 7, 8, 9, 10, 11, 12] * 8]
    rows = pack(examples, max_length=64)
    lengths = [[len(segment) for segment in _segments(row)] for row in rows]
    assert sum(len(set(row)) for row in lengths) > 2 * len(rows)
    assert sum(map(len, rows)) / (64 * len(rows)) > 0.9


def _segments(row):
    starts = [i for i, position in enumerate(row.position_ids) if position == 0] + [len(row)]
    return [row.input_ids[a:b] for a, b in zip(starts, starts[1:])]
