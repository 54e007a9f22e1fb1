import math

from lmforge.train.config import DataConfig
from lmforge.train.data import prepare, subset


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
