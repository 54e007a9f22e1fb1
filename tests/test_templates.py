import pytest

from lmforge.templates import (
    BUILTIN_TEMPLATES,
    IGNORE_INDEX,
    TemplateError,
    encode_chat,
    encode_prompt,
    end_of_turn_ids,
    preflight,
    render,
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


def test_conversations_without_tools_render_as_before(tokenizer):
    chatml = render(tokenizer, CONVERSATION[1:3], BUILTIN_TEMPLATES["chatml"], add_generation_prompt=True)
    assert chatml == (
        "<|im_start|>user\nWhere was Alda Vorn born?<|im_end|>\n<|im_start|>assistant\nKelmar<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    qwen = render(tokenizer, CONVERSATION[1:2], BUILTIN_TEMPLATES["qwen"])
    assert qwen == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhere was Alda Vorn born?<|im_end|>\n"
    )
    for name in ("chatml", "qwen"):
        template = BUILTIN_TEMPLATES[name]
        assert render(tokenizer, CONVERSATION, template, tools=[]) == render(tokenizer, CONVERSATION, template)
        assert "<tools>" not in render(tokenizer, CONVERSATION, template)


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
TOOLS = [WEATHER, TIME]
TOOLS_SYSTEM = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": '
    '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n'
    '{"type": "function", "function": {"name": "get_time", "description": "The time now"}}\n</tools>\n\n'
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
)


def call(name, arguments, call_id):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Kelmar, and the time?"},
    {"role": "assistant", "content": None,
     "tool_calls": [call("get_weather", '{"city": "Kelmar"}', "c1"), call("get_time", {}, "c2")]},
    {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "sunny"},
    {"role": "tool", "tool_call_id": "c2", "name": "get_time", "content": "noon"},
    {"role": "assistant", "content": "Checking Oruna too.",
     "tool_calls": [call("get_weather", '{"city": "Oruna"}', "c3")]},
    {"role": "tool", "tool_call_id": "c3", "content": "rain"},
    {"role": "assistant", "content": "Sunny at noon in Kelmar; rain on the Oruna."},
]
TOOL_TURNS = (
    "<|im_start|>user\nWeather in Kelmar, and the time?<|im_end|>\n"
    "<|im_start|>assistant\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Kelmar"}}\n</tool_call>\n<tool_call>\n'
    '{"name": "get_time", "arguments": {}}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n"
    "<tool_response>\nnoon\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\nChecking Oruna too.\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Oruna"}}\n</tool_call><|im_end|>\n'
    "<|im_start|>user\n<tool_response>\nrain\n</tool_response><|im_end|>\n"
    "<|im_start|>assistant\nSunny at noon in Kelmar; rain on the Oruna.<|im_end|>\n"
)


@pytest.mark.parametrize("name, default_system", [("chatml", ""), ("qwen", "You are a helpful assistant.\n\n")])
def test_tools_go_in_the_system_turn_and_calls_and_responses_render_hermes_style(tokenizer, name, default_system):
    """chatml opens a system turn for the tools; qwen puts them after its default system prompt."""
    rendered = render(tokenizer, TOOL_CONVERSATION, BUILTIN_TEMPLATES[name], tools=TOOLS)
    assert rendered == "<|im_start|>system\n" + default_system + TOOLS_SYSTEM + TOOL_TURNS
    with_system = [{"role": "system", "content": "Be brief."}, *TOOL_CONVERSATION]
    rendered = render(tokenizer, with_system, BUILTIN_TEMPLATES[name], tools=TOOLS)
    assert rendered == "<|im_start|>system\nBe brief.\n\n" + TOOLS_SYSTEM + TOOL_TURNS


@pytest.mark.parametrize("name", ["chatml", "qwen"])
def test_tool_calls_are_trained_and_tool_responses_are_not(tokenizer, name):
    encoded = encode_chat(tokenizer, TOOL_CONVERSATION, BUILTIN_TEMPLATES[name], tools=TOOLS)
    assert [tokenizer.decode(span) for span in trained_spans(encoded.labels)] == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Kelmar"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "get_time", "arguments": {}}\n</tool_call><|im_end|>',
        'Checking Oruna too.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oruna"}}\n'
        "</tool_call><|im_end|>",
        "Sunny at noon in Kelmar; rain on the Oruna.<|im_end|>",
    ]
    prompt = encode_prompt(tokenizer, TOOL_CONVERSATION[:4], BUILTIN_TEMPLATES[name], tools=TOOLS)
    assert encoded.input_ids[: len(prompt)] == prompt  # what the server sends after the tool responses


def test_arguments_sent_as_json_strings_render_like_objects(tokenizer):
    template = BUILTIN_TEMPLATES["chatml"]
    asked = {"role": "user", "content": "Weather?"}
    as_string = [asked, {"role": "assistant", "content": None,
                         "tool_calls": [call("get_weather", '{"city": "Kelmar"}', "c1")]}]
    as_object = [asked, {"role": "assistant", "tool_calls": [call("get_weather", {"city": "Kelmar"}, "c1")]}]
    rendered = render(tokenizer, as_string, template, tools=TOOLS)
    assert rendered == render(tokenizer, as_object, template, tools=TOOLS)
    assert rendered.endswith('\n{"name": "get_weather", "arguments": {"city": "Kelmar"}}\n</tool_call><|im_end|>\n')
    assert as_string[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Kelmar"}'  # the caller's copy is kept


@pytest.mark.parametrize(
    ("arguments", "problem"), [('{"city": ', "are not valid JSON"), ('["Kelmar"]', "must be a JSON object")]
)
def test_bad_argument_strings_name_the_message(tokenizer, arguments, problem):
    broken = [*TOOL_CONVERSATION[:4], {**TOOL_CONVERSATION[4], "tool_calls": [call("get_weather", arguments, "c3")]}]
    with pytest.raises(ValueError, match=f"message 4: the arguments of tool call 'get_weather' {problem}"):
        render(tokenizer, broken, BUILTIN_TEMPLATES["chatml"], tools=TOOLS)


def test_a_tool_call_without_a_function_names_the_message(tokenizer):
    broken = [TOOL_CONVERSATION[0], {"role": "assistant", "tool_calls": [{"id": "c1", "name": "get_time"}]}]
    with pytest.raises(ValueError, match="message 1: a tool call needs a 'function' with a 'name'"):
        encode_prompt(tokenizer, broken, BUILTIN_TEMPLATES["chatml"], tools=TOOLS)


@pytest.mark.parametrize("name", ["llama3", "alpaca", "plain"])
def test_templates_without_tool_support_refuse_tools(tokenizer, name):
    with pytest.raises(TemplateError, match="cannot render tools"):
        encode_chat(tokenizer, CONVERSATION, BUILTIN_TEMPLATES[name], tools=TOOLS)
    with pytest.raises(TemplateError, match="cannot render tool calls"):
        encode_chat(tokenizer, TOOL_CONVERSATION, BUILTIN_TEMPLATES[name])
