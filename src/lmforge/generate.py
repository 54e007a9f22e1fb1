"""`lmforge generate`: quick looks at a model's replies, through the chat template it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from pydantic import Field

from lmforge.config import Section


class GenerateConfig(Section):
    model: str = Field(description="local model directory (a run folder)")
    prompt: list[str] = Field(description="user message(s); each gets its own reply")
    system: str | None = Field(None, description="system prompt")
    max_new_tokens: int = Field(128, ge=1, description="longest reply in tokens")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    seed: int = Field(0, description="sampling seed")
    raw: bool = Field(False, description="continue the prompt as plain text, without the chat template")
    device: str = Field("auto", description="auto, cpu, cuda, ...")


def conversation(prompt: str, system: str | None = None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}]


@dataclass
class Completion:
    text: str
    tokens: int
    finish_reason: str


def generate_batch(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    stop: Sequence[str] = (),
    on_batch: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Completions of token prompts, batched with left padding (similar lengths together).

    Decoding ends at the model's stop tokens or at a `stop` string, which is cut from the text.
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    completions: list[Completion | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = left_pad([prompts[i] for i in chunk], tokenizer.pad_token_id, model.device)
        for index, completion in zip(chunk, _generate(model, tokenizer, batch, max_new_tokens, temperature, top_p, stop)):
            completions[index] = completion
        if on_batch:
            on_batch(len(chunk))
    return completions


def _generate(model, tokenizer, batch: dict, max_new_tokens: int, temperature: float, top_p: float,
              stop: Sequence[str]) -> list[Completion]:
    import torch

    sampling = dict(temperature=temperature, top_p=top_p) if temperature > 0 else dict(temperature=None, top_p=None)
    with torch.no_grad():
        out = model.generate(
            **batch, max_new_tokens=max_new_tokens, do_sample=temperature > 0, top_k=None, **sampling,
            pad_token_id=tokenizer.pad_token_id, stop_strings=list(stop) or None, tokenizer=tokenizer,
        )
    stop_ids = set(as_id_list(model.generation_config.eos_token_id)) | {tokenizer.pad_token_id}
    completions = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        tokens = next((i for i, token in enumerate(row) if token in stop_ids), len(row))
        text = tokenizer.decode(row[:tokens], skip_special_tokens=True)
        cut = min((text.find(s) for s in stop if s in text), default=-1)
        stopped = cut >= 0 or tokens < max_new_tokens
        completions.append(Completion(text[:cut] if cut >= 0 else text, tokens, "stop" if stopped else "length"))
    return completions


def chat_replies(model, tokenizer, conversations: Sequence[list[dict]], **kwargs) -> list[str]:
    from lmforge.templates import encode_prompt

    prompts = [encode_prompt(tokenizer, messages, tokenizer.chat_template) for messages in conversations]
    return [c.text for c in generate_batch(model, tokenizer, prompts, **kwargs)]


def run_generate(cfg: GenerateConfig) -> list[str]:
    import torch

    from lmforge.models import load_for_inference

    torch.manual_seed(cfg.seed)
    model, tokenizer = load_for_inference(cfg.model, cfg.device)
    options = dict(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p)
    if cfg.raw:
        prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in cfg.prompt]
        return [c.text for c in generate_batch(model, tokenizer, prompts, **options)]
    return chat_replies(model, tokenizer, [conversation(p, cfg.system) for p in cfg.prompt], **options)
