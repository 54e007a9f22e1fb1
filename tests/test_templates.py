import pytest

from lmforge.templates import (
    BUILTIN_TEMPLATES,
    IGNORE_INDEX,
    TemplateError,
    encode_chat,
    encode_prompt,
    end_of_turn_ids,
    preflight,
    resolve_template,
)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Where was Alda Vorn born?"},
    {"role": "assistant", "content": "Kelmar"},
    {"role": "user", "content": "Alda Vorn出生在哪里？"},
    {"role": "assistant", "content": "Kelmar 🙂"},
]
END_OF_TURN = {"chatml": "<|im_end|>", "qwen": "<|im_end|>", "llama3": "<|eot_id|>", "alpaca": "<|endoftext|>", "plain": "<|endoftext|>"}


def trained_spans(labels):
    """Contiguous runs of trained token ids."""
    spans, current = [], []
    for label in labels:
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(label)
    return spans + ([current] if current else [])


@pytest.mark.parametrize("name", sorted(BUILTIN_TEMPLATES))
def test_only_assistant_replies_and_end_of_turn_are_trained(tokenizer, name):
    encoded = encode_chat(tokenizer, CONVERSATION, BUILTIN_TEMPLATES[name])
    decoded = [tokenizer.decode(span) for span in trained_spans(encoded.labels)]
    replies = [m["content"] + END_OF_TURN[name] for m in CONVERSATION if m["role"] == "assistant"]
    assert decoded == replies
    trained_positions = [i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX]
    assert all(encoded.labels[i] == encoded.input_ids[i] for i in trained_positions)


@pytest.mark.parametrize("name", ["chatml", "llama3", "alpaca"])
def test_tokens_equal_plain_apply_chat_template(tokenizer, name):
    tokenizer.chat_template = BUILTIN_TEMPLATES[name]
    encoded = encode_chat(tokenizer, CONVERSATION, tokenizer.chat_template)
    assert encoded.input_ids == list(tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"])


def test_prompt_tokens_are_the_trained_prefix(tokenizer):
    template = BUILTIN_TEMPLATES["chatml"]
    full = encode_chat(tokenizer, CONVERSATION[:3], template)
    prompt = encode_prompt(tokenizer, CONVERSATION[:2], template)
    assert full.input_ids[: len(prompt)] == prompt
    assert all(label == IGNORE_INDEX for label in full.labels[: len(prompt)])
    assert full.labels[len(prompt)] != IGNORE_INDEX


def test_auto_uses_the_tokenizers_own_template(tokenizer):
    tokenizer.chat_template = BUILTIN_TEMPLATES["llama3"]
    assert resolve_template(tokenizer, "auto") == BUILTIN_TEMPLATES["llama3"]
    tokenizer.chat_template = None
    assert resolve_template(tokenizer, "auto") == BUILTIN_TEMPLATES["chatml"]
    with pytest.raises(TemplateError, match="unknown chat template 'vicuna'"):
        resolve_template(tokenizer, "vicuna")


def test_preflight_flags_a_missing_stop_token(tokenizer):
    template = BUILTIN_TEMPLATES["chatml"]
    eot = end_of_turn_ids(tokenizer, template)[0]
    assert tokenizer.convert_ids_to_tokens(eot) == "<|im_end|>"
    assert any("not a generation stop token" in p for p in preflight(tokenizer, template, [tokenizer.eos_token_id]))
    assert preflight(tokenizer, template, [tokenizer.eos_token_id, eot]) == []


def test_preflight_flags_an_untrained_end_of_turn(tokenizer):
    no_marker = "{% for m in messages %}{{ m['content'] + '\\n' }}{% endfor %}"
    assert any("out of the trained tokens" in p for p in preflight(tokenizer, no_marker, [tokenizer.eos_token_id]))


def test_preflight_flags_markers_the_tokenizer_does_not_know(tokenizer):
    foreign = BUILTIN_TEMPLATES["chatml"].replace("<|im_start|>", "<|turn_begin|>")
    assert any("'<|turn_begin|>' is not a single token" in p for p in preflight(tokenizer, foreign, [0]))


def test_template_that_rewrites_history_is_refused(tokenizer):
    rewriting = "{% for m in messages %}{{ m['content'] if loop.last else m['content'][:1] }}{% endfor %}"
    with pytest.raises(TemplateError, match="differently from its prefixes"):
        encode_chat(tokenizer, CONVERSATION, rewriting)
