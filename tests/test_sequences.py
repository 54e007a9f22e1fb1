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
        second = sorted(examples[:2], key=lambda e: len(e.input_ids), reverse=True)[1]
        alone = model(input_ids=torch.tensor([second.input_ids])).logits[0]
    assert torch.allclose(packed_logits[-len(second.input_ids) :], alone, atol=1e-5)


def test_pack_respects_max_length_and_keeps_every_token(examples):
    rows = pack(examples, max_length=48)
    assert all(len(row) <= 48 for row in rows)
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
