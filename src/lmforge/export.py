"""`lmforge export`: merge a LoRA/DoRA adapter into its base and write a plain Hugging Face model folder.

The export loads with transformers alone (no peft) and runs at the base model's speed. Its model card records the
lineage (base, adapter, hash of the adapter weights), so a merged model can be traced back to its training run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from lmforge.config import Section

log = logging.getLogger("lmforge.export")


class ExportConfig(Section):
    model: str = Field(
        description="base model directory, or an adapter run folder (its base is read from adapter_config.json)"
    )
    adapter: str | None = Field(None, description="peft adapter folder to merge (default: model, if it is one)")
    output: str = Field(description="folder to write the merged model to")
    dtype: Literal["keep", "float32", "bfloat16", "float16"] = Field(
        "keep", description="weights dtype of the export; keep = the base model's"
    )


def export(cfg: ExportConfig, overwrite: bool = False) -> Path:
    """Merge in fp32 on the CPU (exact up to the final cast) and publish the folder in one rename."""
    from lmforge.models import adapter_tokenizer, load_model, merge_adapter, save_model
    from lmforge.runs import atomic_write_text, fresh_partial, publish, refuse_to_replace
    from lmforge.config import ModelConfig

    base, adapter = resolve_sources(cfg)
    final = Path(cfg.output)
    if final.resolve() in (base.resolve(), adapter.resolve()):
        raise ValueError(f"output {final} would replace its own base or adapter; pick another folder")
    refuse_to_replace(final, overwrite)
    dtype = target_dtype(cfg.dtype, base)
    config = ModelConfig(path=str(base), tokenizer=adapter_tokenizer(adapter), device="cpu", dtype="float32")
    model, tokenizer = load_model(config)
    merged = merge_adapter(model, adapter)
    partial = fresh_partial(final, overwrite)
    save_model(merged.to(dtype), tokenizer, partial)
    atomic_write_text(partial / "README.md", export_card(base, adapter, dtype))
    log.info("merged %s into %s as %s", adapter, base, dtype)
    return publish(partial, final)


def resolve_sources(cfg: ExportConfig) -> tuple[Path, Path]:
    """(base, adapter), checked before any loading; an adapter folder given as `model` names its own base."""
    from lmforge.models import recorded_base, require_adapter

    adapter = require_adapter(cfg.adapter or cfg.model)
    base = Path(cfg.model) if cfg.adapter else recorded_base(adapter)
    if not base.is_dir():
        raise FileNotFoundError(f"base model directory not found: {base}")
    return base, adapter


def target_dtype(requested: str, base: Path):
    """`keep` means the dtype the base was saved in (fp32 when its config does not say)."""
    import torch
    from transformers import AutoConfig

    from lmforge.models import is_adapter, recorded_base

    if requested != "keep":
        return getattr(torch, requested)
    source = base
    while is_adapter(source):  # an adapter trained on an adapter run: the dtype of the model at the bottom
        source = recorded_base(source)
    return AutoConfig.from_pretrained(str(source), local_files_only=True).dtype or torch.float32


def export_card(base: Path, adapter: Path, dtype) -> str:
    from lmforge.models import ADAPTER_CONFIG, ADAPTER_WEIGHTS
    from lmforge.runs import sha256_file

    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    method = "DoRA" if config.get("use_dora") else "LoRA"
    targets = config.get("target_modules") or []
    targets = targets if isinstance(targets, str) else ", ".join(sorted(targets))  # peft also takes a regex
    return "\n".join([
        "---",
        "library_name: transformers",
        "tags: [lmforge, merged]",
        "---",
        f"# {method} adapter merged into its base",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {base.resolve()} |",
        f"| adapter | {adapter.resolve()} |",
        f"| adapter weights sha256 | `{sha256_file(adapter / ADAPTER_WEIGHTS)}` |",
        f"| method | {method}, r={config.get('r')}, alpha={config.get('lora_alpha')}, targets: {targets} |",
        f"| merged dtype | {str(dtype).removeprefix('torch.')} |",
        "",
        "Load it with transformers alone: `AutoModelForCausalLM.from_pretrained(<this folder>)`.",
        *_training_lineage(adapter),
        "",
    ])


def _training_lineage(adapter: Path) -> list[str]:
    """The adapter run's own model card (stage, parent, data files with hashes, metrics), one heading level down."""
    card = adapter / "README.md"
    if not card.is_file():
        return []
    body = card.read_text(encoding="utf-8").split("\n---\n", 1)[-1].strip()
    return ["", "## How the adapter was trained", "", *("#" + line if line.startswith("#") else line
                                                        for line in body.splitlines())]
