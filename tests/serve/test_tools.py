import json
import random
import re

import pytest

from lmforge.serve.tools import ContentDelta, ToolCallDone, ToolStreamParser, tool_grammar
from lmforge.toolcalls import parse_tool_calls
from lmforge.templates import BUILTIN_TEMPLATES, render

WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Kelmar", "days": 2}}\n</tool_call>'
TIME = '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'
REPLIES = [
    "Kelmar lies on the Oruna.",
    "",
    "a < b and <tool is not a tag, nor is <tool_call without its bracket",
    "ends on half a tag <tool_c",
    WEATHER,
    f"Let me check.\n{WEATHER}\n{TIME}",
    f"\n{WEATHER}\n{TIME}\n",
    f"{WEATHER}\nIt is sunny in Kelmar 🙂",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Kel</tool_call> then text',
    '<tool_call>\n{"arguments": {}}\n</tool_call>',
    '<tool_call>\n{"name": "get_time", "arguments": "now"}\n</tool_call>',
    f"<<tool_call>\n{TIME[len('<tool_call>'):]}",
    '<tool_call>\n{"name": "get_time", "arguments": {}}',
    '<tool_call>\n{"name": "get_time", "argu',
    f'{WEATHER}<tool_call>\n{{"name": "get_time"}}\n</tool_call>',
]


def without_ids(calls):
    return [{key: value for key, value in call.items() if key != "id"} for call in calls]


def reassembled(chunks):
    """What a streaming client ends up with: the content deltas joined, and the calls in order."""
    parser = ToolStreamParser()
    events = [event for chunk in chunks for event in parser.feed(chunk)] + parser.finish()
    content = "".join(event.text for event in events if isinstance(event, ContentDelta))
    calls = [event.call for event in events if isinstance(event, ToolCallDone)]
    assert len(calls) + sum(isinstance(event, ContentDelta) for event in events) == len(events)
    return content or None, without_ids(calls)


def expected(text):
    content, calls = parse_tool_calls(text)
    return content, without_ids(calls)


def random_chunks(text, rng):
    cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, len(text) - 1))) if len(text) > 1 else []
    return [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]


def test_calls_come_out_in_the_openai_shape_and_the_rest_is_content():
    content, calls = parse_tool_calls(f"Let me check.\n{WEATHER}\n{TIME}")
    assert content == "Let me check.\n\n"
    assert without_ids(calls) == [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Kelmar","days":2}'}},
        {"type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", call["id"]) for call in calls)
    assert calls[0]["id"] != calls[1]["id"]


def test_a_reply_of_calls_alone_has_no_content():
    assert parse_tool_calls(f"\n{WEATHER}\n{TIME}\n")[0] is None
    assert parse_tool_calls("Kelmar") == ("Kelmar", [])


def test_blocks_that_are_not_calls_stay_in_the_content():
    for block in ['<tool_call>\n{"name": "get_weather", "arguments": {"city": </tool_call>',
                  '<tool_call>\n{"arguments": {}}\n</tool_call>',
                  '<tool_call>\n["get_time"]\n</tool_call>',
                  '<tool_call>\n{"name": "get_time", "arguments": "now"}\n</tool_call>']:
        assert parse_tool_calls(f"Sure. {block}") == (f"Sure. {block}", [])


def test_a_block_left_open_counts_only_if_its_json_is_complete():
    assert without_ids(parse_tool_calls('<tool_call>\n{"name": "get_time"}')[1]) == [
        {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]
    assert parse_tool_calls('<tool_call>\n{"name": "get_ti') == ('<tool_call>\n{"name": "get_ti', [])


def test_arguments_keep_non_ascii_text():
    _, calls = parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {"city": "凯尔马"}}\n</tool_call>')
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "凯尔马"}
    assert "凯尔马" in calls[0]["function"]["arguments"]


@pytest.mark.parametrize("text", REPLIES)
def test_streaming_in_any_pieces_gives_what_parsing_the_whole_gives(text):
    rng = random.Random(text)
    splits = [[text], list(text)]
    splits += [[text[:cut], text[cut:]] for cut in range(1, len(text))]
    splits += [random_chunks(text, rng) for _ in range(30)]
    for chunks in splits:
        assert reassembled(chunks) == expected(text), chunks


def test_plain_text_streams_at_once_and_only_a_possible_tag_is_held():
    parser = ToolStreamParser()
    assert parser.feed("Kelmar is") == [ContentDelta("Kelmar is")]
    assert parser.feed(" sunny <tool_") == [ContentDelta(" sunny ")]
    assert parser.feed("call>\n") == []
    assert parser.feed('{"name": "get_time", "arguments": {}}\n') == []
    done, after = parser.feed("</tool_call> ok <to")
    assert isinstance(done, ToolCallDone) and done.call["function"] == {"name": "get_time", "arguments": "{}"}
    assert after == ContentDelta(" ok ")
    assert parser.finish() == [ContentDelta("<to")]


def test_whitespace_around_calls_alone_is_never_streamed():
    parser = ToolStreamParser()
    assert parser.feed("\n") == []
    assert [type(event) for event in parser.feed(f"{TIME}\n")] == [ToolCallDone]
    assert parser.finish() == []
    parser = ToolStreamParser()
    assert parser.feed("\n") == [] and parser.feed("Hi") == [ContentDelta("\nHi")]


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather",
    "description": 'Forecast for a city, e.g. {"city": "Kelmar"}',
    "parameters": {
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/City"}, "days": {"type": "integer", "minimum": 1, "maximum": 3}},
        "required": ["city", "days"],
        "additionalProperties": False,
        "$defs": {"City": {"enum": ["Kelmar", "Oruna"]}},
    },
}}
TIME_TOOL = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
TOOLS = [WEATHER_TOOL, TIME_TOOL]


def valid_arguments(name, arguments):
    if name == "get_time":
        return arguments == {}
    days = arguments.get("days")
    return (set(arguments) == {"city", "days"} and arguments["city"] in ("Kelmar", "Oruna")
            and isinstance(days, int) and 1 <= days <= 3)


@pytest.fixture(scope="module")
def guided(frozen_tokenizer):
    """The test tokenizer as llguidance sees it, ending a reply at the end-of-turn token."""
    pytest.importorskip("llguidance")
    import llguidance.hf

    end_of_turn = frozen_tokenizer.convert_tokens_to_ids("<|im_end|>")
    return llguidance.hf.from_tokenizer(frozen_tokenizer, n_vocab=len(frozen_tokenizer), eos_token=[end_of_turn])


def forced_reply(tokenizer, guided, grammar, seed):
    """Greedy decoding from random logits under the grammar: whatever the model, only grammatical text."""
    import llguidance.torch as lgt
    import torch
    from llguidance import LLMatcher

    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    matcher = LLMatcher(guided, grammar)
    assert not matcher.is_error(), matcher.get_error()
    mask = lgt.allocate_token_bitmask(1, len(tokenizer))
    generator = torch.Generator().manual_seed(seed)
    tokens = []
    for _ in range(200):
        if matcher.is_stopped():
            break
        logits = torch.randn(1, len(tokenizer), generator=generator)
        lgt.fill_next_token_bitmask(matcher, mask, 0)
        lgt.apply_token_bitmask_inplace(logits, mask)
        token = int(logits.argmax())
        assert matcher.consume_token(token), matcher.get_error()
        tokens.append(token)
    assert matcher.is_stopped()
    return tokenizer.decode(tokens[:-1] if tokens[-1] == end_of_turn else tokens)  # a grammar may end with no EOS


@pytest.mark.parametrize("seed", range(4))
def test_required_choice_forces_valid_calls_in_the_trained_format(frozen_tokenizer, guided, seed):
    text = forced_reply(frozen_tokenizer, guided, tool_grammar(TOOLS, "required"), seed)
    content, calls = parse_tool_calls(text)
    assert content is None and calls
    for call in calls:
        name = call["function"]["name"]
        assert valid_arguments(name, json.loads(call["function"]["arguments"])), call
    conversation = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "tool_calls": calls}]
    rendered = render(frozen_tokenizer, conversation, BUILTIN_TEMPLATES["chatml"], tools=TOOLS)
    assert rendered.endswith(f"<|im_start|>assistant\n{text}<|im_end|>\n")  # exactly what training teaches


@pytest.mark.parametrize("name", ["get_weather", "get_time"])
def test_a_named_choice_forces_one_call_of_that_function(frozen_tokenizer, guided, name):
    choice = {"type": "function", "function": {"name": name}}
    for seed in range(3):
        content, [call] = parse_tool_calls(forced_reply(frozen_tokenizer, guided, tool_grammar(TOOLS, choice), seed))
        assert content is None and call["function"]["name"] == name
        assert valid_arguments(name, json.loads(call["function"]["arguments"]))


def test_free_choices_need_no_grammar():
    assert tool_grammar(TOOLS, "auto") is None
    assert tool_grammar(TOOLS, "none") is None
    assert tool_grammar(TOOLS, None) is None
    assert tool_grammar(None, None) is None


def test_impossible_choices_are_refused_clearly():
    with pytest.raises(ValueError, match="tool_choice 'required' needs at least one function"):
        tool_grammar([], "required")
    with pytest.raises(ValueError, match=r"names function 'get_news', which is not among the tools \(get_weather, "):
        tool_grammar(TOOLS, {"type": "function", "function": {"name": "get_news"}})
    with pytest.raises(ValueError, match=r"not among the tools \(none given\)"):
        tool_grammar(None, {"type": "function", "function": {"name": "get_time"}})
    with pytest.raises(ValueError, match="tool_choice must be 'auto', 'none', 'required' or"):
        tool_grammar(TOOLS, "always")
    with pytest.raises(ValueError, match="tool_choice must be"):
        tool_grammar(TOOLS, {"type": "function", "name": "get_time"})
