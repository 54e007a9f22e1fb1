"""`lmforge generate`: quick looks at a model's replies, through the chat template it was trained with."""

from __future__ import annotations

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


def run_generate(cfg: GenerateConfig) -> list[str]:
    from lmforge.engine import SamplingParams, generate_texts
    from lmforge.models import load_for_inference
    from lmforge.templates import encode_prompt

    model, tokenizer = load_for_inference(cfg.model, cfg.device)
    if cfg.raw:
        prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in cfg.prompt]
    else:
        prompts = [encode_prompt(tokenizer, conversation(p, cfg.system), tokenizer.chat_template) for p in cfg.prompt]
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed=cfg.seed)
    return [c.text for c in generate_texts(model, tokenizer, prompts, params)]
