"""The server through the real `openai` client (and raw HTTP where the wire format itself is the point)."""

import base64
import json
import re
import struct
import time

import httpx
import openai
import pytest
import torch
from conftest import SERVED_CONTEXT as CONTEXT

from lmforge.models import load_tokenizer
from lmforge.templates import IGNORE_INDEX, encode_chat, resolve_template

USER = [{"role": "user", "content": "Where was Alda Vorn born?"}]
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "today's weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Kelmar", "Oruna"]},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 3}},
                   "required": ["city", "days"]}}}]


@pytest.fixture(scope="module")
def hf_model(nano_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(nano_model_dir), local_files_only=True).eval()


def trained_prompt(tokenizer, messages, tools=None):
    """What SFT fed the model before the assistant's first trained token, for the same conversation."""
    encoded = encode_chat(tokenizer, [*messages, {"role": "assistant", "content": "Kelmar"}],
                          resolve_template(tokenizer, "auto"), reply_from=len(messages), tools=tools)
    first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    return encoded.input_ids[:first]


def test_models_lists_base_adapter_embedding_and_rag_models(client):
    ids = [model.id for model in client.models.list().data]
    assert ids == ["nano", "lora", "minilm", "docs"]


def test_served_prompt_is_the_trained_prompt(nano_model_dir, client):
    tokenizer = load_tokenizer(nano_model_dir)
    conversation = [{"role": "system", "content": "Be brief."}, *USER,
                    {"role": "assistant", "content": "Kelmar."}, {"role": "user", "content": "计算 7 * 6。"}]
    for messages, tools in ((USER, None), (conversation, None), (USER, WEATHER)):
        reply = client.chat.completions.create(model="nano", messages=messages, tools=tools, max_tokens=1,
                                               temperature=0)
        assert reply.usage.prompt_tokens == len(trained_prompt(tokenizer, messages, tools))


def test_greedy_reply_equals_hf_generate(nano_model_dir, client, hf_model):
    tokenizer = load_tokenizer(nano_model_dir)
    prompt = trained_prompt(tokenizer, USER)
    out = hf_model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)
    reply = client.chat.completions.create(model="nano", messages=USER, max_tokens=20, temperature=0)
    assert reply.choices[0].message.content == expected
    assert reply.usage.completion_tokens == 20 and reply.choices[0].finish_reason == "length"


def test_stream_is_openai_wire_format(api_url):
    body = {"model": "nano", "messages": USER, "max_tokens": 8, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{api_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8
    streamed = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks[1:-1])
    plain = httpx.post(f"{api_url}/v1/chat/completions", json={**body, "stream": False}, timeout=60).json()
    assert streamed == plain["choices"][0]["message"]["content"]


def test_openai_client_stream_and_n(client):
    stream = client.chat.completions.create(model="lora", messages=USER, max_tokens=12, stream=True, n=2,
                                            temperature=1.0, seed=7)
    texts = {0: "", 1: ""}
    finished = set()
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1}
    again = client.chat.completions.create(model="lora", messages=USER, max_tokens=12, n=2, temperature=1.0, seed=7)
    assert [choice.message.content for choice in again.choices] == [texts[0], texts[1]]
    assert texts[0] != texts[1]


def test_adapter_changes_the_reply(client):
    replies = [client.chat.completions.create(model=name, messages=USER, max_tokens=12, temperature=0)
               .choices[0].message.content for name in ("nano", "lora")]
    assert replies[0] != replies[1]


def test_base_and_adapter_share_a_batch(api_url, client):
    import asyncio

    alone = {name: client.chat.completions.create(model=name, messages=USER, max_tokens=16, temperature=0)
             .choices[0].message.content for name in ("nano", "lora")}
    concurrent = openai.AsyncOpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0)

    async def reply(name: str) -> str:
        answer = await concurrent.chat.completions.create(model=name, messages=USER, max_tokens=16, temperature=0)
        return answer.choices[0].message.content

    async def mixed() -> list[str]:
        return await asyncio.gather(*(reply(name) for name in ["nano", "lora"] * 3))

    assert asyncio.run(mixed()) == [alone["nano"], alone["lora"]] * 3


def test_logprobs(client):
    reply = client.chat.completions.create(model="nano", messages=USER, max_tokens=5, temperature=0, logprobs=True,
                                           top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert len(content) == 5
    for token in content:
        assert len(token.top_logprobs) == 3
        assert token.logprob == pytest.approx(token.top_logprobs[0].logprob)  # greedy picks the likeliest
        assert token.top_logprobs[0].logprob >= token.top_logprobs[1].logprob


def test_json_mode_replies_parse_as_objects(client):
    for seed in range(3):
        reply = client.chat.completions.create(model="nano", messages=USER, max_tokens=60, temperature=1.0,
                                               seed=seed, response_format={"type": "json_object"})
        if reply.choices[0].finish_reason == "stop":
            assert isinstance(json.loads(reply.choices[0].message.content), dict)
        else:  # out of tokens mid-object: still a valid JSON prefix, never free text
            assert reply.choices[0].message.content.startswith("{")


def test_json_schema_mode_follows_the_schema(client):
    schema = {"type": "object", "properties": {"city": {"enum": ["Kelmar", "Oruna"]}}, "required": ["city"],
              "additionalProperties": False}
    reply = client.chat.completions.create(
        model="nano", messages=USER, max_tokens=40, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}})
    assert json.loads(reply.choices[0].message.content)["city"] in ("Kelmar", "Oruna")


def check_weather_call(call):
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    arguments = json.loads(call.function.arguments)
    assert arguments["city"] in ("Kelmar", "Oruna") and 1 <= arguments["days"] <= 3


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_tool_call(client, tool_choice):
    reply = client.chat.completions.create(model="nano", messages=USER, tools=WEATHER, tool_choice=tool_choice,
                                           max_tokens=80, temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    check_weather_call(choice.message.tool_calls[0])


def test_streamed_tool_call(client):
    stream = client.chat.completions.create(model="nano", messages=USER, tools=WEATHER, tool_choice="required",
                                            max_tokens=80, temperature=0, stream=True)
    calls, reasons = {}, []
    for chunk in stream:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": delta.id, "name": "", "arguments": ""})
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
            reasons.append(choice.finish_reason)
    assert reasons[-1] == "tool_calls"
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"])["city"] in ("Kelmar", "Oruna")


NOTE = [{"type": "function", "function": {"name": "take_note", "parameters": {
    "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}]


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "take_note"}}])
def test_a_forced_call_that_runs_out_of_tokens_is_an_error(client, tool_choice):
    """Sampled hot, the random model does not close the unbounded string, so the call is still open at max_tokens
    (greedy, it closes the string at once)."""
    request = {"model": "nano", "messages": USER, "tools": NOTE, "tool_choice": tool_choice, "max_tokens": 80,
               "temperature": 1.5, "seed": 0}
    with pytest.raises(openai.BadRequestError, match="did not finish within max_tokens") as caught:
        client.chat.completions.create(**request)
    assert caught.value.body["param"] == "max_tokens" and "maxLength" in caught.value.body["message"]
    with pytest.raises(openai.APIError, match="did not finish within max_tokens"):
        list(client.chat.completions.create(**request, stream=True))


def test_tool_results_go_back_through_the_template(client, nano_model_dir):
    first = client.chat.completions.create(model="nano", messages=USER, tools=WEATHER, tool_choice="required",
                                           max_tokens=80, temperature=0).choices[0].message
    history = [*USER, first.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": '{"sky": "clear"}'}]
    reply = client.chat.completions.create(model="nano", messages=history, tools=WEATHER, max_tokens=1,
                                           temperature=0)
    tokenizer = load_tokenizer(nano_model_dir)
    assert reply.usage.prompt_tokens == len(trained_prompt(tokenizer, history, WEATHER))
    text = tokenizer.decode(trained_prompt(tokenizer, history, WEATHER))
    assert '<tool_response>\n{"sky": "clear"}' in text and "<tool_call>" in text


def test_tool_choice_none_and_unknown_function(client):
    plain = client.chat.completions.create(model="nano", messages=USER, tools=WEATHER, tool_choice="none",
                                           max_tokens=4, temperature=0)
    assert plain.choices[0].message.tool_calls is None
    with pytest.raises(openai.BadRequestError, match="nowhere"):
        client.chat.completions.create(model="nano", messages=USER, tools=WEATHER, max_tokens=4,
                                       tool_choice={"type": "function", "function": {"name": "nowhere"}})


def test_embeddings_of_served_model_and_sentence_model(client):
    base = client.embeddings.create(model="nano", input=["Kelmar", "Oruna river"])
    vectors = [torch.tensor(item.embedding) for item in base.data]
    assert len(vectors[0]) == 128 and all(abs(float(v.norm()) - 1) < 1e-4 for v in vectors)
    minilm = client.embeddings.create(model="minilm", encoding_format="float", input=["a cat sits on the mat", "a kitten on a rug",
                                                             "stock markets fell sharply"])
    cat, kitten, markets = (torch.tensor(item.embedding) for item in minilm.data)
    assert len(cat) == 384
    assert float(cat @ kitten) > float(cat @ markets) + 0.2
    packed = client.embeddings.create(model="minilm", input="a cat sits on the mat")  # the client asks for base64
    assert packed.data[0].embedding == pytest.approx(minilm.data[0].embedding, abs=1e-6)


def test_base64_embeddings_on_the_wire(api_url):
    body = {"model": "minilm", "input": "Kelmar", "encoding_format": "base64"}
    encoded = httpx.post(f"{api_url}/v1/embeddings", json=body).json()["data"][0]["embedding"]
    floats = httpx.post(f"{api_url}/v1/embeddings", json={**body, "encoding_format": "float"}).json()
    decoded = struct.unpack("<384f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)


def test_text_completion_with_echo_and_logprobs(client):
    reply = client.completions.create(model="nano", prompt="Kelmar is a city", max_tokens=6, temperature=0,
                                      echo=True, logprobs=2)
    choice = reply.choices[0]
    assert choice.text.startswith("Kelmar is a city")
    assert len(choice.logprobs.tokens) == 6 and len(choice.logprobs.top_logprobs[0]) == 2
    streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model="nano", prompt="Kelmar is a city", max_tokens=6, temperature=0, stream=True) if chunk.choices)
    assert "Kelmar is a city" + streamed == choice.text


@pytest.mark.parametrize("body, status, words, param", [
    (b'{"model": "nano", "messages": [', 400, "malformed JSON", None),
    (b'{"model": "nano", "messages": "hello"}', 400, "messages", "messages"),
    (b'{"model": "nano", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 400,
     "temperature", "temperature"),
    (b'{"model": "nano", "messages": [{"role": "wizard", "content": "hi"}]}', 400, "role", "messages.0.role"),
    (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}', 404, "gpt-9", "model"),
    (json.dumps({"model": "nano", "messages": USER, "max_tokens": CONTEXT}).encode(), 400, f"{CONTEXT} tokens",
     "max_tokens"),
    (json.dumps({"model": "nano", "messages": [{"role": "user", "content": "x " * CONTEXT}]}).encode(), 400,
     "leaves no room for a reply", "messages"),
    (json.dumps({"model": "nano", "messages": [{"role": "user", "content": "x" * 70_000}]}).encode(), 413,
     "limit", None),
])
def test_bad_requests_get_openai_errors(api_url, body, status, words, param):
    response = httpx.post(f"{api_url}/v1/chat/completions", content=body,
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and error["type"] and error["param"] == param
    assert not re.search(r"\s-\d", error["message"])  # no negative token counts


@pytest.mark.parametrize("extra, words", [
    ({"tool_choice": "required"}, "tools"),
    ({"top_logprobs": 2}, "logprobs"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}},
     "nonsense"),
    ({"stop": [str(i) for i in range(17)]}, "16 stop strings"),
])
def test_inconsistent_options_are_refused(api_url, extra, words):
    body = {"model": "nano", "messages": USER, "max_tokens": 4, **extra}
    response = httpx.post(f"{api_url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 400 and words in response.json()["error"]["message"]


def test_a_long_stop_string_is_fine(client):
    reply = client.chat.completions.create(model="nano", messages=USER, max_tokens=4, temperature=0,
                                           stop="</answer>\n\nQuestion: what comes next")
    assert reply.choices[0].finish_reason == "length"


def test_chunked_body_over_the_limit_is_413(api_url):
    def pieces():
        yield b'{"model": "nano", "messages": [{"role": "user", "content": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}]}'

    response = httpx.post(f"{api_url}/v1/chat/completions", content=pieces(),
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 413 and "limit" in response.json()["error"]["message"]


def test_context_error_gives_the_numbers(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="nano", messages=USER, max_tokens=CONTEXT)
    message = caught.value.body["message"]
    assert f"maximum context length is {CONTEXT}" in message and f"asks for {CONTEXT} more" in message


def test_disconnect_stops_generation_and_metrics_count(api_url):
    body = {"model": "nano", "messages": USER, "max_tokens": CONTEXT - 40, "temperature": 1.0, "stream": True}
    with httpx.stream("POST", f"{api_url}/v1/chat/completions", json=body, timeout=60) as response:
        next(response.iter_lines())
    for _ in range(200):
        metrics = httpx.get(f"{api_url}/metrics").text
        if "lmforge_running_sequences 0.0" in metrics:
            break
        time.sleep(0.05)
    assert "lmforge_running_sequences 0.0" in metrics
    assert 'lmforge_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
    assert "lmforge_generation_tokens_total" in metrics and "lmforge_time_to_first_token_seconds_bucket" in metrics
    assert httpx.get(f"{api_url}/health").json() == {"status": "ok"}


def test_api_key_and_queue_limits(nano_model_dir):
    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    cfg = ServeConfig(model=str(nano_model_dir), port=0, api_key="sesame", max_batch_size=1, max_queue=1,
                      max_model_len=CONTEXT)
    with running_server(cfg) as url:
        body = {"model": nano_model_dir.name, "messages": USER, "max_tokens": 100}
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
        wrong = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sesame", max_retries=0)
        statuses = _run_concurrently(client, nano_model_dir.name, 6)
        assert 429 in statuses and 200 in statuses
        too_many = httpx.post(f"{url}/v1/chat/completions", json={**body, "n": 2},
                              headers={"Authorization": "Bearer sesame"})
        assert too_many.status_code == 400 and "--max-batch-size" in too_many.json()["error"]["message"]
        assert httpx.get(f"{url}/health").status_code == 200  # no key needed to check health


def _run_concurrently(client, model: str, count: int) -> list[int]:
    import asyncio

    async def one() -> int:
        try:
            await client.chat.completions.create(model=model, messages=USER, max_tokens=100, temperature=1.0)
            return 200
        except openai.APIStatusError as err:
            return err.status_code

    async def main() -> list[int]:
        return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(main())
