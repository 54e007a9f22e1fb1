"""Which parameters a run trains (`finetuning: full|lora|dora|qlora|freeze`).

LoRA/DoRA/QLoRA wrap the model in peft adapters, so the run folder holds a small adapter (adapter_config.json +
adapter_model.safetensors) on top of its parent; `freeze` trains the last blocks of the model in place.
Layers are found from the module tree, not from a per-architecture table, so new architectures need no code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from lmforge.models import count_parameters, unique_parameters
from lmforge.train.config import FreezeSection, TrainRecipe


def apply_finetuning(model, recipe: TrainRecipe, tokenizer=None):
    """The model to train: untouched (full), frozen but for its last blocks (freeze), or a peft adapter model
    (the tokenizer resolves `lora.trainable_tokens`; a reward model's new head trains in full beside it)."""
    if recipe.finetuning == "full":
        return model
    if recipe.finetuning == "freeze":
        model = freeze_all_but(model, recipe.freeze)
        if recipe.stage == "rm":
            model.score.requires_grad_(True)  # a reward model's head is new: it always trains
        return model
    return add_lora(model, recipe, token_ids(tokenizer, recipe.lora.trainable_tokens))


def token_ids(tokenizer, tokens: list[str]) -> list[int]:
    """The vocabulary ids of `lora.trainable_tokens`, each of which must be one token of this tokenizer."""
    if not tokens:
        return []
    if tokenizer is None:
        raise ValueError("lora.trainable_tokens needs the tokenizer to look the tokens up")
    ids = [tokenizer.convert_tokens_to_ids(token) for token in tokens]
    unknown = [token for token, i in zip(tokens, ids) if i is None or i == tokenizer.unk_token_id]
    if unknown:
        raise ValueError(f"lora.trainable_tokens {unknown} are not tokens of this tokenizer's vocabulary")
    return ids


def add_lora(model, recipe: TrainRecipe, trainable_token_ids: list[int] = ()):
    """Wrap in LoRA/DoRA adapters; the saved adapter names its parent so `PeftModel.from_pretrained` finds it."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if recipe.finetuning == "qlora":
        require_qlora()
        model = prepare_model_for_kbit_training(model)
    lora = recipe.lora
    targets = lora.target_modules or default_target_modules(model)
    check_targets(model, targets)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        use_dora=recipe.finetuning == "dora",
        rank_pattern=lora.rank_pattern,
        alpha_pattern={name: rank * lora.alpha / lora.r for name, rank in lora.rank_pattern.items()},
        trainable_token_indices=list(trainable_token_ids) or None,
        ensure_weight_tying=_adapts_tied_embedding(model, targets, trainable_token_ids),
        fan_in_fan_out=_targets_conv1d(model, targets),
        task_type="SEQ_CLS" if recipe.stage == "rm" else "CAUSAL_LM",
    )
    wrapped = get_peft_model(model, config)
    wrapped.peft_config["default"].base_model_name_or_path = str(Path(recipe.model.path).resolve())
    return wrapped


def transformer_blocks(model) -> nn.ModuleList:
    """The repeated blocks (model.layers, transformer.h, ...): the ModuleList holding the most parameters."""
    lists = [module for module in model.modules() if isinstance(module, nn.ModuleList)]
    if not lists:
        raise ValueError(f"cannot find the transformer blocks of {type(model).__name__}: it has no nn.ModuleList")
    return max(lists, key=lambda blocks: sum(p.numel() for p in blocks.parameters()))


def default_target_modules(model) -> list[str]:
    """Leaf names of the projections inside the blocks (q_proj..down_proj, or c_attn/c_proj/c_fc for GPT-2):
    lm_head and embeddings live outside the blocks, so they are left alone."""
    blocks = transformer_blocks(model)
    names = [name.rsplit(".", 1)[-1] for name, module in blocks.named_modules() if _is_projection(module)]
    if not names:
        raise ValueError(f"no Linear layers inside the blocks of {type(model).__name__}; set lora.target_modules")
    return list(dict.fromkeys(names))


def check_targets(model, targets: list[str]) -> None:
    """Fail before peft does, naming the layers this model has (peft matches a target by name suffix)."""
    names = [name for name, _ in model.named_modules()]
    unknown = [target for target in targets if not any(_matches(name, [target]) for name in names)]
    if unknown:
        available = dict.fromkeys(
            name.rsplit(".", 1)[-1] for name, module in model.named_modules()
            if _is_projection(module) or isinstance(module, nn.Embedding)
        )
        raise ValueError(f"lora.target_modules {unknown} match no layer; this model has: {', '.join(available)}")


def freeze_all_but(model, section: FreezeSection):
    """Train only the last `trainable_layers` blocks and the modules named in `trainable_modules`."""
    blocks = transformer_blocks(model)
    if section.trainable_layers > len(blocks):
        raise ValueError(f"freeze.trainable_layers={section.trainable_layers}, but the model has {len(blocks)} blocks")
    model.requires_grad_(False)
    for block in blocks[len(blocks) - section.trainable_layers :]:
        block.requires_grad_(True)
    for pattern in section.trainable_modules:
        matched = [module for name, module in model.named_modules() if pattern in name]
        if not matched:
            raise ValueError(f"freeze.trainable_modules: no module name contains '{pattern}'")
        for module in matched:
            module.requires_grad_(True)
    if count_parameters(model, trainable_only=True) == 0:
        raise ValueError("freeze leaves nothing to train: set freeze.trainable_layers or freeze.trainable_modules")
    return model


def parameter_counts(model) -> dict:
    """Trainable and total parameters, and the memory of weights plus what training adds per trainable
    parameter: an fp32 gradient and AdamW's two fp32 moments."""
    trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
    weights = sum(p.numel() * p.element_size() for p in unique_parameters(model))
    state_mb = (weights + trainable * (4 + 8)) / 2**20
    return {"trainable": trainable, "total": total, "trainable_share": round(trainable / total, 6),
            "state_mb": round(state_mb, 2)}


def trainable_summary(model) -> str:
    counts = parameter_counts(model)
    return f"trainable {counts['trainable']:,} of {counts['total']:,} parameters ({counts['trainable_share']:.2%})"


def require_qlora() -> None:
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("qlora needs a CUDA GPU and bitsandbytes; use finetuning: lora on this machine")


def quantization_kwargs(recipe: TrainRecipe) -> dict:
    """Extra `from_pretrained` arguments: QLoRA loads its base as 4-bit NF4 (bf16 compute, double quantisation)
    straight onto the GPU. Not exercised by the test suite, which has no CUDA."""
    if recipe.finetuning != "qlora":
        return {}
    require_qlora()
    from transformers import BitsAndBytesConfig

    from lmforge.models import pick_device

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
    return {"quantization_config": quantization, "device_map": {"": str(pick_device(recipe.model.device))}}


def _is_projection(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def _targets_conv1d(model, targets: list[str]) -> bool:
    """GPT-2 style Conv1D stores weights transposed; peft must be told (fan_in_fan_out)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) and _matches(name, targets) for name, module in model.named_modules())


def _adapts_tied_embedding(model, targets: list[str], trainable_token_ids) -> bool:
    """Whether an adapter lands on an embedding matrix the LM head shares: peft must then tie the two sides."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return False
    embedding_names = [name for name, module in model.named_modules()
                       if module is model.get_input_embeddings() or module is model.get_output_embeddings()]
    return bool(trainable_token_ids) or any(_matches(name, targets) for name in embedding_names)


def _matches(name: str, targets: list[str]) -> bool:
    """peft's rule for a list of target_modules: the whole qualified name or a dotted suffix of it."""
    return any(name == target or name.endswith("." + target) for target in targets)
