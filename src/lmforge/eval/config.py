"""`lmforge eval` options: one schema for the CLI flags, `--help` and the `eval:` section of training recipes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lmforge.config import Section


class EvalConfig(Section):
    model: str = Field(description="local model directory (a run folder)")
    adapter: str | None = Field(None, description="peft adapter directory, merged into the model for evaluation")
    tasks: list[str] = Field(
        description="benchmark=PATH (mmlu, ceval, cmmlu, arc, hellaswag, truthfulqa_mc1, truthfulqa_mc2, gsm8k, "
        "gsm8k_cot) or a custom task YAML file"
    )
    subjects: list[str] = Field(
        [], description="only these subjects (file stems of mmlu/ceval/cmmlu, or a custom task's subject values)"
    )
    num_fewshot: int | None = Field(None, ge=0, description="in-context examples from the dev split (None: the task's)")
    chat: bool = Field(False, description="render each prompt through the model's chat template")
    cot: bool = Field(False, description="chain-of-thought: add the task's trigger phrase before generation")
    limit: int = Field(0, ge=0, description="evaluate only the first N documents of each task's subjects (0: all)")
    max_new_tokens: int | None = Field(None, ge=1, description="generation length (None: the task's)")
    max_length: int | None = Field(None, ge=8, description="context window in tokens (None: the model's)")
    batch_tokens: int = Field(16384, ge=1, description="token budget of one log-likelihood batch")
    batch_size: int = Field(32, ge=1, description="sequences the engine decodes together (generation tasks)")
    bootstrap_iters: int = Field(1000, ge=2, description="bootstrap resamples for standard errors")
    name: str | None = Field(None, description="run folder name (default: eval-<model folder name>)")
    output_dir: str = Field("runs", description="folder that holds run folders")
    device: str = Field("auto", description="auto, cpu, cuda, ...")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="weights dtype")
