"""Chat templates and the loss mask: one function turns a conversation into tokens plus labels.

Rendering always goes through the tokenizer's own Jinja engine (`apply_chat_template`), and the template used in
training is saved into the model's tokenizer files, so training, `lmforge generate`, the server and plain
transformers all see the same text.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

IGNORE_INDEX = -100
log = logging.getLogger("lmforge.templates")

_TOOLS = (
    "{{ '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{ '\\n' + tool | tojson }}{%- endfor %}"
    "{{ '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}"
    "\\n</tool_call><|im_end|>\\n' }}"
)
_QWEN_DEFAULT_SYSTEM = "You are a helpful assistant."


def _system_with_tools(default_system: str) -> str:
    """The system turn Qwen2.5 opens when tools are given: the conversation's own system message (or the
    default), then the tool list and how to call them."""
    default = "{%- else %}{{ '" + default_system + "\\n\\n' }}" if default_system else ""
    return (
        "{{ '<|im_start|>system\\n' }}"
        "{%- if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}"
        + default
        + "{%- endif %}"
        + _TOOLS
    )


_CHATML_SYSTEM = "{%- if tools %}" + _system_with_tools("") + "{%- endif %}"
_QWEN_SYSTEM = (
    "{%- if tools %}"
    + _system_with_tools(_QWEN_DEFAULT_SYSTEM)
    + "{%- elif not messages or messages[0]['role'] != 'system' %}"
    + "{{ '<|im_start|>system\\n" + _QWEN_DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    + "{%- endif %}"
)
_CHATML_TURNS = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] == 'system' and tools %}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or loop.previtem['role'] != 'tool' %}{{ '<|im_start|>user' }}{%- endif %}"
    "{{ '\\n<tool_response>\\n' + (message['content'] or '') + '\\n</tool_response>' }}"
    "{%- if loop.last or loop.nextitem['role'] != 'tool' %}{{ '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' and message['tool_calls'] %}"
    "{{ '<|im_start|>assistant' }}"
    "{%- if message['content'] %}{{ '\\n' + message['content'] }}{%- endif %}"
    "{%- for call in message['tool_calls'] %}"
    "{{ '\\n<tool_call>\\n' + {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson"
    " + '\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
_LLAMA3 = (
    "{{ '<|begin_of_text|>' }}"
    "{%- for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] or '') + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
_ALPACA = (
    "{%- if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}"
    "{%- else %}{{ 'Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\\n\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
    "{%- elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '### Response:\\n' }}{%- endif %}"
)
_PLAIN = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}{{ message['content'] + eos_token + '\\n' }}"
    "{%- else %}{{ message['content'] + '\\n' }}{%- endif %}"
    "{%- endfor %}"
)

BUILTIN_TEMPLATES = {
    "chatml": _CHATML_SYSTEM + _CHATML_TURNS,
    "qwen": _QWEN_SYSTEM + _CHATML_TURNS,
    "llama3": _LLAMA3,
    "alpaca": _ALPACA,
    "plain": _PLAIN,
}
_MARKER = re.compile(r"<\|[A-Za-z0-9_]+\|>")


class TemplateError(ValueError):
    pass


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def resolve_template(tokenizer, name: str) -> str:
    """`auto` keeps the tokenizer's own template (falling back to chatml); a built-in name picks that one."""
    if name == "auto":
        return tokenizer.chat_template or BUILTIN_TEMPLATES["chatml"]
    if name not in BUILTIN_TEMPLATES:
        raise TemplateError(f"unknown chat template '{name}'; built-ins: {', '.join(BUILTIN_TEMPLATES)}")
    return BUILTIN_TEMPLATES[name]


def describe_template(name: str, tokenizer) -> str:
    """How a run's template choice resolves, for its model card."""
    if name != "auto":
        return name
    return "the tokenizer's own" if tokenizer.chat_template else "chatml (the tokenizer had none)"


def render(tokenizer, messages: list[dict], template: str, add_generation_prompt: bool = False,
           tools: list[dict] | None = None) -> str:
    """`tools` are OpenAI function specs; tool-call arguments may be JSON strings, as OpenAI clients send them."""
    _check_renders_tools(template, messages, tools)
    return tokenizer.apply_chat_template(
        _with_argument_objects(messages), tools=tools, chat_template=template, tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )


def _check_renders_tools(template: str, messages: list[dict], tools: list[dict] | None) -> None:
    """A template that never reads the tools or tool calls would silently drop them from the text."""
    if tools and "tools" not in template:
        raise TemplateError("this chat template cannot render tools; the built-in chatml and qwen templates can")
    if any(message.get("tool_calls") for message in messages) and "tool_calls" not in template:
        raise TemplateError(
            "this chat template cannot render tool calls; the built-in chatml and qwen templates can"
        )


def _with_argument_objects(messages: list[dict]) -> list[dict]:
    """Copies of the messages whose tool-call arguments are objects: templates write them out with `tojson`,
    which would quote a JSON string a second time."""
    return [
        {**message, "tool_calls": [_call_with_object(call, index) for call in message["tool_calls"]]}
        if message.get("tool_calls") else message
        for index, message in enumerate(messages)
    ]


def _call_with_object(call: dict, index: int) -> dict:
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ValueError(f"message {index}: a tool call needs a 'function' with a 'name'")
    arguments = function.get("arguments")
    if arguments is None:
        arguments = {}
    elif isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"message {index}: the arguments of tool call {function['name']!r} are not valid JSON ({err})"
            ) from None
    if not isinstance(arguments, dict):
        raise ValueError(f"message {index}: the arguments of tool call {function['name']!r} must be a JSON object")
    return {**call, "function": {**function, "arguments": arguments}}


def assistant_spans(tokenizer, messages: list[dict], template: str,
                    tools: list[dict] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """Character spans of each assistant reply (tool calls included) plus its end-of-turn marker, found by
    rendering prefixes."""
    text = render(tokenizer, messages, template, tools=tools)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], template, add_generation_prompt=True, tools=tools)
        through = render(tokenizer, messages[: index + 1], template, tools=tools)
        if not (text.startswith(before) and text.startswith(through) and len(before) <= len(through)):
            raise TemplateError(
                "the chat template renders a conversation differently from its prefixes, so assistant turns "
                "cannot be located; use a built-in template (data.template)"
            )
        spans.append((len(before), len(before) + len(through[len(before) :].rstrip())))
    return text, spans


def encode_chat(tokenizer, messages: list[dict], template: str, reply_from: int = 0,
                tools: list[dict] | None = None) -> Encoded:
    """Tokens of the whole rendered conversation; labels keep only assistant tokens (tool calls and end-of-turn
    included, tool responses not), of the messages from index `reply_from` on."""
    text, spans = assistant_spans(tokenizer, messages, template, tools)
    spans = spans[sum(message["role"] == "assistant" for message in messages[:reply_from]) :]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if _inside(start, spans) else IGNORE_INDEX
        for token, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"])
    ]
    return Encoded(list(enc["input_ids"]), labels)


def encode_completion(tokenizer, prompt: list[dict], completion: list[dict], template: str,
                      tools: list[dict] | None = None) -> Encoded:
    """A prompt and one answer to it (preference data), with labels on the answer alone."""
    return encode_chat(tokenizer, [*prompt, *completion], template, reply_from=len(prompt), tools=tools)


def encode_prompt(tokenizer, messages: list[dict], template: str, tools: list[dict] | None = None) -> list[int]:
    """The tokens a model is given to continue a conversation (what training saw before the reply)."""
    text = render(tokenizer, messages, template, add_generation_prompt=True, tools=tools)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


_PROBE = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def end_of_turn_ids(tokenizer, template: str) -> list[int]:
    """Trained tokens that follow the reply text: the marker a model must learn to emit to stop."""
    encoded = encode_chat(tokenizer, _PROBE, template)
    trained = [token for token in encoded.labels if token != IGNORE_INDEX]
    reply = tokenizer(_PROBE[-1]["content"], add_special_tokens=False)["input_ids"]
    return trained[len(reply) :]


def preflight(tokenizer, template: str, stop_ids: list[int]) -> list[str]:
    """Warnings for the usual causes of endless, repetitive replies after SFT."""
    problems = [
        f"chat template marker {marker!r} is not a single token of this tokenizer (a base model that never saw it?)"
        for marker in sorted(set(_MARKER.findall(template)))
        if len(tokenizer(marker, add_special_tokens=False)["input_ids"]) != 1
    ]
    eot = end_of_turn_ids(tokenizer, template)
    if not eot:
        problems.append("the chat template leaves the end-of-turn token out of the trained tokens")
    elif eot[0] not in stop_ids:
        problems.append(
            f"end-of-turn token {tokenizer.convert_ids_to_tokens(eot[0])!r} is not a generation stop token"
        )
    for problem in problems:
        log.warning("pre-flight: %s", problem)
    return problems
