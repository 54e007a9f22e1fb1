"""A RAG model id over the OpenAI API (`lmforge serve --rag docs=INDEX:lora`), through the real openai client."""

import json

import httpx
import pytest

from lmforge.clients import Decoding, LocalChat
from lmforge.rag import load_rag_program, open_retriever, rag_conversation, read_reply, with_references
from lmforge.serve.grounded import parse_rag_spec

QUESTION = "Who is the mayor of Traa?"


def test_a_grounded_reply_is_the_offline_rag_answer_with_its_citations(client, rag_index_dir, nano_model_dir,
                                                                        lora_dir):
    reply = client.chat.completions.create(model="docs", messages=[{"role": "user", "content": QUESTION}],
                                           temperature=0, max_tokens=12)
    retriever = open_retriever(rag_index_dir, "cpu")
    hits, best = retriever.retrieve(QUESTION, 5)
    local = LocalChat(str(nano_model_dir), "cpu")
    from lmforge.models import merge_adapter

    local.model = merge_adapter(local.model, str(lora_dir))  # `docs` answers through the lora adapter
    [[text]] = local.complete([rag_conversation(load_rag_program(None), QUESTION, hits)], Decoding(12))
    expected = read_reply(QUESTION, hits, text, best)
    message = reply.choices[0].message
    assert reply.model == "docs" and message.content == with_references(expected)
    assert message.model_extra["citations"] == expected.citations


def test_an_unsupported_question_is_refused_without_generating(client, api_url):
    reply = client.chat.completions.create(model="docs", temperature=0, max_tokens=12,
                                           messages=[{"role": "user", "content": "What is the boiling point of tin?"}])
    assert reply.choices[0].message.content == "I don't know." and reply.usage.completion_tokens == 0
    stream = client.chat.completions.create(model="docs", stream=True, max_tokens=12,
                                            messages=[{"role": "user", "content": "What is the boiling point of tin?"}])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "I don't know."
    bad = httpx.post(f"{api_url}/v1/chat/completions", json={"model": "docs", "messages": [
        {"role": "assistant", "content": "hi"}]})
    assert bad.status_code == 400 and "last message" in json.loads(bad.text)["error"]["message"]


def test_rag_specs():
    assert parse_rag_spec("docs=runs/ix", ["nano", "lora"]) == ("docs", "runs/ix", "nano")
    assert parse_rag_spec("docs=runs/ix:lora", ["nano", "lora"]) == ("docs", "runs/ix", "lora")
    with pytest.raises(ValueError, match="not a served model id"):
        parse_rag_spec("docs=runs/ix:other", ["nano", "lora"])
    with pytest.raises(ValueError, match="NAME=INDEX"):
        parse_rag_spec("runs/ix", ["nano"])
