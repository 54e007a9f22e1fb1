import pytest

from lmforge.data import SCHEMAS, DataError, RawRecord, normalize

SOURCE = "train.jsonl:7"


def msg(role, content):
    return {"role": role, "content": content}


def norm(value, schema):
    return normalize(RawRecord(SOURCE, value), schema)


def error_of(value, schema):
    with pytest.raises(DataError) as caught:
        norm(value, schema)
    assert caught.value.source == SOURCE
    return caught.value.message


def test_schema_names():
    assert SCHEMAS == ("text", "alpaca", "messages", "preference", "unpaired", "prompt")


def test_unknown_schema_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown schema 'sft' .*text, alpaca, messages, preference, unpaired"):
        norm({"text": "x"}, "sft")


def test_unparsed_record_raises_its_reader_error():
    with pytest.raises(DataError, match="^a.jsonl:3: invalid JSON"):
        normalize(RawRecord("a.jsonl:3", "{oops", error="invalid JSON: bad"), "text")


def test_text_from_a_paragraph_or_an_object():
    assert norm("plain paragraph", "text") == {"text": "plain paragraph"}
    assert norm({"text": "hello", "id": 3}, "text") == {"text": "hello"}
    assert error_of({"body": "x"}, "text") == "missing key 'text' (keys present: body)"
    assert error_of({"text": "  "}, "text") == "'text' is empty"
    assert error_of({"text": 5}, "text") == "'text' must be a string, got a number"


def test_alpaca_maps_to_messages():
    record = {"instruction": "Translate", "input": "bonjour", "output": "hello", "system": "Be brief."}
    assert norm(record, "alpaca") == {
        "messages": [
            msg("system", "Be brief."),
            msg("user", "Translate\n\nbonjour"),
            msg("assistant", "hello"),
        ]
    }


def test_alpaca_without_input_or_system():
    record = {"instruction": "Say hi", "input": "", "output": "Hi"}
    assert norm(record, "alpaca")["messages"] == [
        msg("user", "Say hi"),
        msg("assistant", "Hi"),
    ]


def test_alpaca_errors():
    assert error_of({"instruction": "x", "input": "y"}, "alpaca") == (
        "missing key 'output' (keys present: instruction, input)"
    )
    assert error_of("a paragraph", "alpaca") == (
        "expected a JSON object, got a string (plain text only fits schema 'text')"
    )
    assert error_of({"instruction": "x", "output": "y", "input": 3}, "alpaca") == (
        "'input' must be a string, got a number"
    )


def test_openai_messages_pass_through_with_extra_keys():
    record = {
        "messages": [msg("user", "2+2?"), msg("assistant", "4")],
        "answer": "4",
        "id": "q1",
    }
    assert norm(record, "messages") == record


def test_sharegpt_maps_roles_and_system():
    record = {
        "system": "You are helpful.",
        "conversations": [
            {"from": "human", "value": "Weather?"},
            {"from": "function_call", "value": '{"name": "weather"}'},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": "It is sunny."},
            {"from": "user", "value": "Thanks"},
            {"from": "model", "value": "You're welcome."},
        ],
        "id": 9,
    }
    assert norm(record, "messages") == {
        "messages": [
            msg("system", "You are helpful."),
            msg("user", "Weather?"),
            {"role": "assistant", "content": '{"name": "weather"}'},
            msg("tool", "sunny"),
            msg("assistant", "It is sunny."),
            msg("user", "Thanks"),
            msg("assistant", "You're welcome."),
        ],
        "id": 9,
    }


def test_sharegpt_system_turn_and_tool_alias():
    record = {
        "conversations": [
            {"from": "system", "value": "sys"},
            {"from": "human", "value": "q"},
            {"from": "assistant", "value": "call"},
            {"from": "function", "value": "result"},
            {"from": "tool", "value": "more"},
            {"from": "gpt", "value": "a"},
        ]
    }
    roles = [m["role"] for m in norm(record, "messages")["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]


def test_tool_calls_and_tool_messages_are_kept_as_given():
    call = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    messages = [
        msg("user", "use f"),
        {"role": "assistant", "content": None, "tool_calls": call},
        {"role": "tool", "content": "42", "tool_call_id": "c1", "name": "f"},
        msg("assistant", "42 it is"),
    ]
    assert norm({"messages": messages}, "messages")["messages"] == messages


WEATHER_TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}


def tool_record(call=None, tools=None, tool_message=None):
    """A messages record that calls a tool, with one part swapped for a broken one."""
    call = call if call is not None else {"id": "c1", "type": "function",
                                          "function": {"name": "weather", "arguments": '{"city": "Kelmar"}'}}
    tool_message = tool_message or {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    return {
        "messages": [msg("user", "Weather?"), {"role": "assistant", "content": None, "tool_calls": [call]},
                     tool_message, msg("assistant", "Sunny.")],
        "tools": [WEATHER_TOOL] if tools is None else tools,
    }


def test_a_record_with_tools_keeps_them():
    assert norm(tool_record(), "messages") == tool_record()


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (tool_record(tools={"weather": {}}), "'tools' must be a list of function specs, got an object"),
        (tool_record(tools=["weather"]), "tools[0] must be an object, got a string"),
        (tool_record(tools=[{"function": {"name": "w"}}]), "tools[0] 'type' must be 'function', got None"),
        (tool_record(tools=[{"type": "function"}]), "tools[0]: missing key 'function' (keys present: type)"),
        (tool_record(tools=[{"type": "function", "function": {"name": "w", "parameters": "city"}}]),
         "tools[0] function 'parameters' must be a JSON schema object, got a string"),
        (tool_record(call="weather"), "messages[1] tool_calls[0] must be an object, got a string"),
        (tool_record(call={"function": {"arguments": "{}"}}),
         "messages[1] tool_calls[0] function: missing key 'name' (keys present: arguments)"),
        (tool_record(call={"function": {"name": "weather", "arguments": "{city"}}),
         "messages[1] tool_calls[0] arguments are not valid JSON (Expecting property name enclosed in double "
         "quotes: line 1 column 2 (char 1))"),
        (tool_record(call={"function": {"name": "weather", "arguments": "[1]"}}),
         "messages[1] tool_calls[0] arguments must be an object (or a JSON string of one), got a list"),
        (tool_record(tool_message={"role": "tool", "content": "sunny", "tool_call_id": 1}),
         "messages[2] 'tool_call_id' must be a string, got a number"),
        ({"messages": [{"role": "user", "content": "q", "tool_calls": [{}]}, msg("assistant", "a")]},
         "messages[0] is a 'user' message with tool_calls; only assistant messages call tools"),
    ],
)
def test_tool_errors_name_the_part(record, expected):
    assert error_of(record, "messages") == expected


def test_null_fields_from_columnar_files_are_dropped():
    messages = [
        {"role": "user", "content": "q", "tool_calls": None, "name": None},
        {"role": "assistant", "content": "a", "tool_calls": None, "name": None},
    ]
    assert norm({"messages": messages}, "messages")["messages"] == [
        msg("user", "q"),
        msg("assistant", "a"),
    ]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([], "'messages' is an empty list"),
        ("hi", "'messages' must be a list of messages, got a string"),
        (["hi"], "messages[0] must be an object, got a string"),
        (
            [msg("user", "q"), msg("assistant", "a"), msg("bot", "x")],
            "messages[2] has unknown role 'bot' (expected one of system, user, assistant, tool)",
        ),
        ([{"content": "q"}], "messages[0]: missing key 'role' (keys present: content)"),
        ([{"role": "user"}], "messages[0]: missing key 'content' (keys present: role)"),
        ([{"role": "user", "content": ["q"]}], "messages[0] content must be a string, got a list"),
        (
            [msg("user", "q"), msg("assistant", "")],
            "messages[1] is an assistant message with empty content and no tool_calls",
        ),
        (
            [msg("user", "q"), msg("system", "s"), msg("assistant", "a")],
            "messages[1] is a system message; system is only allowed first",
        ),
        ([msg("user", "q")], "no assistant message (roles: user)"),
        (
            [msg("user", "q"), msg("assistant", "a"), msg("user", "q2")],
            "the last message must be from the assistant, got 'user'",
        ),
    ],
)
def test_message_errors_are_specific(messages, expected):
    assert error_of({"messages": messages}, "messages") == expected


def test_sharegpt_errors_name_the_turn():
    bad_role = {"conversations": [{"from": "bot", "value": "x"}]}
    assert error_of(bad_role, "messages").startswith(
        "conversations[0] has unknown role 'bot' (expected one of human"
    )
    no_value = {"conversations": [{"from": "human"}]}
    assert error_of(no_value, "messages") == (
        "conversations[0]: missing key 'value' (keys present: from)"
    )


def test_messages_structure_errors():
    assert error_of({"prompt": "x"}, "messages") == (
        "missing key 'messages' (or ShareGPT 'conversations') (keys present: prompt)"
    )
    double_system = {
        "system": "a",
        "messages": [msg("system", "b"), msg("user", "q"), msg("assistant", "x")],
    }
    assert error_of(double_system, "messages") == (
        "both a top-level 'system' and a leading system message"
    )


def test_preference_from_strings():
    record = {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}
    assert norm(record, "preference") == {
        "prompt": [msg("user", "Capital of France?")],
        "chosen": [msg("assistant", "Paris.")],
        "rejected": [msg("assistant", "Lyon.")],
    }


def test_preference_from_message_lists():
    prompt = [msg("system", "Be kind."), msg("user", "Hi")]
    record = {
        "prompt": prompt,
        "chosen": [msg("assistant", "Hello!")],
        "rejected": [{"from": "gpt", "value": "What?"}],
    }
    result = norm(record, "preference")
    assert result["prompt"] == prompt
    assert result["rejected"] == [msg("assistant", "What?")]


def test_preference_implicit_prompt_is_split_off():
    shared = [msg("user", "q1"), msg("assistant", "a1"), msg("user", "q2")]
    record = {
        "chosen": [*shared, msg("assistant", "good")],
        "rejected": [*shared, msg("assistant", "bad")],
    }
    assert norm(record, "preference") == {
        "prompt": shared,
        "chosen": [msg("assistant", "good")],
        "rejected": [msg("assistant", "bad")],
    }


def test_preference_errors():
    assert error_of({"prompt": "q", "chosen": "same", "rejected": "same"}, "preference") == (
        "'chosen' and 'rejected' are identical"
    )
    assert error_of({"prompt": "q", "chosen": "a"}, "preference") == (
        "missing key 'rejected' (keys present: prompt, chosen)"
    )
    assert error_of({"chosen": "a", "rejected": "b"}, "preference").startswith(
        "missing key 'prompt', and 'chosen'/'rejected' share no leading prompt messages"
    )
    assert error_of({"prompt": "q", "chosen": 1, "rejected": "b"}, "preference") == (
        "'chosen' must be a string or a list of messages, got a number"
    )
    user_in_answer = {"prompt": "q", "chosen": [msg("user", "x")], "rejected": "b"}
    assert error_of(user_in_answer, "preference").startswith(
        "'chosen' holds a 'user' message after the prompt"
    )
    prompt_ends_with_answer = {"prompt": [msg("assistant", "x")], "chosen": "a", "rejected": "b"}
    assert error_of(prompt_ends_with_answer, "preference") == (
        "the prompt must end with a user or tool message, got 'assistant'"
    )


def test_unpaired_answers_for_kto_and_scoring():
    record = norm({"prompt": "q", "completion": "a", "label": False}, "unpaired")
    assert record == {"prompt": [msg("user", "q")], "completion": [msg("assistant", "a")], "label": False}
    assert norm({"prompt": "q", "completion": "a"}, "unpaired")["label"] is None  # to score: no label needed
    assert error_of({"prompt": "q", "completion": "a", "label": "yes"}, "unpaired") == (
        "'label' must be true (a good answer) or false (a bad one), got a string"
    )
    assert error_of({"prompt": "q"}, "unpaired") == "missing key 'completion' (keys present: prompt)"


def test_rl_prompts_keep_their_other_fields_for_the_rewards():
    record = norm({"prompt": "3 + 4 = ?", "answer": "7", "kind": "arithmetic"}, "prompt")
    assert record == {"prompt": [msg("user", "3 + 4 = ?")], "answer": "7", "kind": "arithmetic"}
    assert error_of({"prompt": [msg("assistant", "x")]}, "prompt") == (
        "the prompt must end with a user or tool message, got 'assistant'"
    )
    assert error_of({"question": "q"}, "prompt") == "missing key 'prompt' (keys present: question)"
