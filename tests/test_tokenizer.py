from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from lmforge.tokenizer import SPECIAL_TOKENS, TokenizerConfig, train_tokenizer

utf8_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(text=utf8_text | st.sampled_from(["Kelmar是一座城市。🙂👩‍🚀", "\r\n\t  x", "<|im_end|> done"]))
def test_decode_of_encode_is_identity(frozen_tokenizer, text):
    ids = frozen_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert frozen_tokenizer.decode(ids) == text


def test_special_tokens_are_single_tokens(tokenizer):
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1


def test_train_command_saves_a_standard_tokenizer_with_template(tmp_path, text_file, chat_file):
    cfg = TokenizerConfig(data=[str(text_file), str(chat_file)], output_dir=str(tmp_path), vocab_size=320)
    out = train_tokenizer(cfg)
    loaded = AutoTokenizer.from_pretrained(out)
    assert 300 <= len(loaded) <= 320  # special tokens and tool tags included
    assert loaded.eos_token == "<|endoftext|>"
    rendered = loaded.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert (out / "config.yaml").exists() and not (tmp_path / "tokenizer.partial").exists()
    assert str(text_file) in (out / "README.md").read_text()


def test_numbers_split_into_digits_so_arithmetic_is_not_a_lookup_table(frozen_tokenizer):
    tokens = frozen_tokenizer.tokenize("12 + 30 = 42。答案是 42。")
    digits = [token.lstrip("Ġ") for token in tokens if any(char.isdigit() for char in token)]
    assert digits == ["1", "2", "3", "0", "4", "2", "4", "2"]
    assert frozen_tokenizer.decode(frozen_tokenizer("1843年")["input_ids"]) == "1843年"
