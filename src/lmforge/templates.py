"""Chat templates and the loss mask: one function turns a conversation into tokens plus labels.

Rendering always goes through the tokenizer's own Jinja engine (`apply_chat_template`), and the template used in
training is saved into the model's tokenizer files, so training, `lmforge generate`, the server and plain
transformers all see the same text.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

IGNORE_INDEX = -100
log = logging.getLogger("lmforge.templates")

_CHATML_TURNS = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
_QWEN_DEFAULT_SYSTEM = (
    "{%- if not messages or messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
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
    "chatml": _CHATML_TURNS,
    "qwen": _QWEN_DEFAULT_SYSTEM + _CHATML_TURNS,
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


def render(tokenizer, messages: list[dict], template: str, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def assistant_spans(tokenizer, messages: list[dict], template: str) -> tuple[str, list[tuple[int, int]]]:
    """Character spans of each assistant reply plus its end-of-turn marker, found by rendering prefixes."""
    text = render(tokenizer, messages, template)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], template, add_generation_prompt=True)
        through = render(tokenizer, messages[: index + 1], template)
        if not (text.startswith(before) and text.startswith(through) and len(before) <= len(through)):
            raise TemplateError(
                "the chat template renders a conversation differently from its prefixes, so assistant turns "
                "cannot be located; use a built-in template (data.template)"
            )
        spans.append((len(before), len(before) + len(through[len(before) :].rstrip())))
    return text, spans


def encode_chat(tokenizer, messages: list[dict], template: str, reply_from: int = 0) -> Encoded:
    """Tokens of the whole rendered conversation; labels keep only assistant tokens (end-of-turn included), of
    the messages from index `reply_from` on."""
    text, spans = assistant_spans(tokenizer, messages, template)
    spans = spans[sum(message["role"] == "assistant" for message in messages[:reply_from]) :]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if _inside(start, spans) else IGNORE_INDEX
        for token, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"])
    ]
    return Encoded(list(enc["input_ids"]), labels)


def encode_completion(tokenizer, prompt: list[dict], completion: list[dict], template: str) -> Encoded:
    """A prompt and one answer to it (preference data), with labels on the answer alone."""
    return encode_chat(tokenizer, [*prompt, *completion], template, reply_from=len(prompt))


def encode_prompt(tokenizer, messages: list[dict], template: str) -> list[int]:
    """The tokens a model is given to continue a conversation (what training saw before the reply)."""
    text = render(tokenizer, messages, template, add_generation_prompt=True)
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
