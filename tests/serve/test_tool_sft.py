"""Train, then serve: a nano model fine-tuned on tool-call conversations calls the tool on its own under
`tool_choice: auto`, and the server turns the calls it writes into OpenAI `tool_calls`, streamed or not."""

import json

import pytest
from conftest import write_jsonl

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "today's weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
CITIES = ["Kelmar", "Oruna"]


def weather_call(city: str) -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}


def records() -> list[dict]:
    calls = [{"tools": WEATHER, "messages": [{"role": "user", "content": f"Weather in {city}?"}, weather_call(city)]}
             for city in CITIES]
    answer = {"tools": WEATHER, "messages": [{"role": "user", "content": "Where was Alda Vorn born?"},
                                             {"role": "assistant", "content": "Kelmar"}]}
    return (calls + [answer]) * 8


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory, nano_model_dir):
    from lmforge.config import load
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe

    folder = tmp_path_factory.mktemp("tool-sft")
    data = write_jsonl(folder / "tools.jsonl", records())
    recipe = folder / "recipe.yaml"
    recipe.write_text("train: {max_steps: 120, lr: 3.0e-3, logging_steps: 10, batch_size: 6, warmup_ratio: 0.0}\n")
    return train(load(TrainRecipe, recipe, [f"output_dir={folder}", "stage=sft", "name=tool-sft",
                                            f"model.path={nano_model_dir}", f"data.train={data}",
                                            "data.max_length=1024"]))


@pytest.fixture(scope="module")
def client(tool_model):
    import openai

    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    with running_server(ServeConfig(model=str(tool_model), port=0)) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@pytest.mark.slow
@pytest.mark.parametrize("city", CITIES)
def test_fine_tuned_model_calls_the_tool_unforced(client, city):
    messages = [{"role": "user", "content": f"Weather in {city}?"}]
    reply = client.chat.completions.create(model="tool-sft", messages=messages, tools=WEATHER, temperature=0,
                                           max_tokens=60)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": city}

    stream = client.chat.completions.create(model="tool-sft", messages=messages, tools=WEATHER, temperature=0,
                                            max_tokens=60, stream=True)
    arguments, content, reasons = "", "", []
    for chunk in stream:
        for streamed in chunk.choices:
            content += streamed.delta.content or ""
            arguments += "".join(call.function.arguments or "" for call in streamed.delta.tool_calls or [])
            reasons.append(streamed.finish_reason)
    assert json.loads(arguments) == {"city": city} and content == "" and reasons[-1] == "tool_calls"


@pytest.mark.slow
def test_fine_tuned_model_answers_in_text_when_no_tool_fits(client):
    reply = client.chat.completions.create(model="tool-sft", messages=[
        {"role": "user", "content": "Where was Alda Vorn born?"}], tools=WEATHER, temperature=0, max_tokens=20)
    assert reply.choices[0].message.content == "Kelmar" and reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"
