"""Chat backends: a local folder through the engine and an OpenAI-compatible URL give the same greedy replies."""

import pytest

from lmforge.clients import Decoding, LocalChat, OpenAIChat, chat_model

CONVERSATIONS = [[{"role": "user", "content": "Where was Alda Vorn born?"}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "计算 7 * 6。"}]]


@pytest.fixture(scope="module")
def local(nano_model_dir):
    return LocalChat(str(nano_model_dir), "cpu")


def test_local_greedy_replies_equal_hf_generate(local):
    from lmforge.templates import encode_prompt

    replies = local.complete(CONVERSATIONS, Decoding(max_tokens=10))
    for messages, [reply] in zip(CONVERSATIONS, replies):
        prompt = encode_prompt(local.tokenizer, messages, local.tokenizer.chat_template)
        import torch

        out = local.model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False,
                                   pad_token_id=local.tokenizer.pad_token_id)
        assert reply == local.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)


def test_n_samples_per_conversation_are_seeded(local):
    decoding = Decoding(max_tokens=8, temperature=1.0, seed=3)
    replies = local.complete(CONVERSATIONS, decoding, n=3)
    assert [len(r) for r in replies] == [3, 3] and len(set(replies[0])) > 1
    assert replies == local.complete(CONVERSATIONS, decoding, n=3)


def test_a_url_gives_the_local_replies(api_url, local, monkeypatch):
    monkeypatch.setenv("LMFORGE_TEST_KEY", "unused")
    remote = OpenAIChat(f"{api_url}/v1", api_key_env="LMFORGE_TEST_KEY")
    decoding = Decoding(max_tokens=10)
    assert remote.complete(CONVERSATIONS, decoding) == local.complete(CONVERSATIONS, decoding)
    assert remote.name == "nano"  # the first model the server lists


def test_exactly_one_backend():
    with pytest.raises(ValueError, match="exactly one"):
        chat_model(None, None)
    with pytest.raises(ValueError, match="exactly one"):
        chat_model("a", "http://b")


def test_an_unreachable_url_is_a_clear_error():
    from lmforge.clients import APIError

    with pytest.raises(APIError, match="127.0.0.1:9/v1/models"):
        OpenAIChat("http://127.0.0.1:9/v1")


def test_local_tool_replies_render_the_tools_and_parse_calls(local, monkeypatch):
    from lmforge.templates import encode_prompt
    from lmforge.toolcalls import parse_tool_calls

    spec = {"type": "function", "function": {"name": "calculator", "parameters": {
        "type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}
    seen = {}
    original = local._generate

    def spy(conversations, tools, decoding, n):
        seen["prompt"] = encode_prompt(local.tokenizer, conversations[0], local.tokenizer.chat_template, tools=tools[0])
        return original(conversations, tools, decoding, n)

    monkeypatch.setattr(local, "_generate", spy)
    [message] = local.respond([CONVERSATIONS[0]], [[spec]], Decoding(max_tokens=10))
    assert "<tools>" in local.tokenizer.decode(seen["prompt"])  # the tool list went into the prompt
    content, calls = parse_tool_calls(local._generate([CONVERSATIONS[0]], [[spec]], Decoding(max_tokens=10), 1)[0].text)
    assert message == {"role": "assistant", "content": content, **({"tool_calls": calls} if calls else {})}
