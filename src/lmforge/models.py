"""Model presets, loading from local directories, and saving in the standard Hugging Face layout."""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import os
from pathlib import Path

import torch

from lmforge.config import ModelConfig

log = logging.getLogger("lmforge.models")

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

PRESET_SHAPES = {
    "nano": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=344),
    "micro": dict(hidden_size=256, num_hidden_layers=5, num_attention_heads=8, intermediate_size=688),
    "mini": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=1376),
    "small": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=2048),
    "0.5b": dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=4, intermediate_size=5504
    ),
}


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The weights dtype: bf16 where the GPU supports it, fp32 on the CPU (training may still autocast, see
    `mixed_precision`)."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    _require_local_dir(path, "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_from_preset(preset: str, tokenizer, max_length: int = 2048):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max(2048, max_length),
        tie_word_embeddings=preset != "0.5b",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **PRESET_SHAPES[preset],
    )
    return LlamaForCausalLM(config)


def load_model(
    cfg: ModelConfig, seed: int = 42, max_length: int = 2048, for_training: bool = False, **load_kwargs
):
    """The model and tokenizer a run starts from: a fresh preset, a local HF directory, or a peft adapter folder
    (merged into the base it names, so every stage can start from a LoRA run). Training keeps fp32 master weights
    and leaves half precision to autocast (see `mixed_precision`); `load_kwargs` go to `from_pretrained` (QLoRA's
    4-bit quantisation)."""
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.path, cfg.trust_remote_code)
    device = pick_device(cfg.device)
    if device.type == "cpu":
        keep_freed_memory()
    dtype = torch.float32 if for_training else pick_dtype(cfg.dtype, device)
    if cfg.preset:
        torch.manual_seed(seed)
        model = build_from_preset(cfg.preset, tokenizer, max_length).to(dtype)
    else:
        model = _from_directory(Path(cfg.path), cfg, dtype, load_kwargs, ())
    model.config._attn_implementation = cfg.attn_implementation
    log.info("model: %s, %.2fM parameters, %s on %s", cfg.preset or cfg.path, count_parameters(model) / 1e6, dtype, device)
    return (model if "device_map" in load_kwargs else model.to(device)), tokenizer


def _from_directory(path: Path, cfg: ModelConfig, dtype: torch.dtype, load_kwargs: dict, adapters: tuple):
    """A model folder, or an adapter folder on top of its base (itself perhaps an adapter: `adapters` so far)."""
    from transformers import AutoModelForCausalLM

    _require_local_dir(path, "model")
    if is_adapter(path):
        if path.resolve() in adapters:
            chain = " -> ".join(str(step) for step in (*adapters, path.resolve()))
            raise ValueError(f"adapter folders name each other as their base in a circle: {chain}")
        base = _from_directory(recorded_base(path), cfg, dtype, load_kwargs, (*adapters, path.resolve()))
        return merge_adapter(base, path)
    return AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=dtype,
        local_files_only=True,
        use_safetensors=True,
        trust_remote_code=cfg.trust_remote_code,
        attn_implementation=cfg.attn_implementation,
        **load_kwargs,
    )


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def recorded_base(adapter: str | Path) -> Path:
    """The base model directory a peft adapter folder names in its adapter_config.json."""
    adapter = Path(adapter)
    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise FileNotFoundError(
            f"the base model recorded in {adapter / ADAPTER_CONFIG} is not a local directory: {base!r}; "
            f"pass the base model directory explicitly and the adapter folder {adapter} beside it"
        )
    return Path(base)


def require_adapter(path: str | Path) -> Path:
    """A peft adapter folder lmforge can load (safetensors weights), or an error that says what is missing."""
    path = Path(path)
    _require_local_dir(path, "adapter")
    if not is_adapter(path):
        raise ValueError(f"{path} is not a peft adapter folder: it has no {ADAPTER_CONFIG}")
    if not (path / ADAPTER_WEIGHTS).is_file():
        raise ValueError(f"{path} has no {ADAPTER_WEIGHTS} (lmforge loads safetensors only)")
    return path


def adapter_tokenizer(adapter: str | Path) -> str | None:
    """The adapter run's own tokenizer, which carries the chat template it trained with, if it saved one."""
    return str(adapter) if (Path(adapter) / "tokenizer_config.json").is_file() else None


def merge_adapter(model, adapter: str | Path):
    """The model with a peft adapter folded into its weights: plain transformers, at the base model's speed. The
    adapter run's stop tokens (its template's end-of-turn) come along."""
    from peft import PeftModel
    from transformers import GenerationConfig

    adapter = require_adapter(adapter)
    adapted = PeftModel.from_pretrained(model, str(adapter))
    _merge_tied_adapter_once(adapted.get_base_model())
    merged = adapted.merge_and_unload()
    if (adapter / "generation_config.json").is_file():
        merged.generation_config = GenerationConfig.from_pretrained(str(adapter), local_files_only=True)
    return merged


def _merge_tied_adapter_once(model) -> None:
    """With tied embeddings, a LoRA on the embedding matrix is shared by its input and output side (peft's
    ensure_weight_tying); merging both sides would add the one update twice to the one matrix, so the output side
    is handed back its plain layer and the merge goes through the input side alone."""
    head, embedding = model.get_output_embeddings(), model.get_input_embeddings()
    if not (hasattr(head, "get_base_layer") and hasattr(embedding, "get_base_layer")):
        return
    if head.get_base_layer().weight is embedding.get_base_layer().weight:
        model.set_output_embeddings(head.get_base_layer())


def mixed_precision(cfg: ModelConfig, device: torch.device) -> dict[str, bool]:
    """Trainer flags for the compute dtype of training on this device. `auto` also autocasts to bf16 on CPUs with
    native bf16 matmuls (AVX512-BF16 or AMX), where that is about 1.6x faster than fp32; the master weights, the
    optimizer and the loss stay fp32."""
    dtype = pick_dtype(cfg.dtype, device)
    if cfg.dtype == "auto" and device.type == "cpu" and fast_cpu_bf16():
        dtype = torch.bfloat16
    return {"bf16": dtype == torch.bfloat16, "fp16": dtype == torch.float16}


def fast_cpu_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (Intel AMX, AVX512-BF16 on Intel and AMD Zen 4 and later)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# glibc mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX = -1, -3, 32 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks of up to 32 MiB for reuse. By default it serves every block over an
    adaptive threshold with a fresh mmap, and trims the heap's top, so each training step on the CPU faults in and
    zeroes the pages of its activations, logits and gradients anew. The fixed threshold and a high trim threshold
    keep those blocks in the heap (as MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 would):
    the demo's pretraining then takes a fifth of the page faults and half the kernel time, and runs about 4% faster
    on two cores. Left alone where the user set either variable or a glibc.malloc tunable, or preloads another
    allocator, and off glibc. Returns whether it applied."""
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or (
            "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")) or any(
            name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not Linux, or a libc without mallopt (musl)
        return False
    return bool(applied)


def load_for_inference(
    path: str | Path, device: str = "auto", trust_remote_code: bool = False, adapter: str | Path | None = None,
    dtype: str = "auto",
):
    """A model ready to score or generate: a model directory or an adapter run folder, optionally with a further
    adapter merged in (whose tokenizer, if it has one, is the one its run trained with)."""
    tokenizer = adapter_tokenizer(adapter) if adapter is not None else None
    cfg = ModelConfig(path=str(path), tokenizer=tokenizer, trust_remote_code=trust_remote_code, device=device,
                      dtype=dtype)
    model, tokenizer = load_model(cfg)
    if adapter is not None:
        model = merge_adapter(model, adapter)
    return model.eval(), tokenizer


def to_reward_model(causal_lm, pad_token_id: int):
    """A sequence-classification model with one output on the causal LM's body (its LM head is dropped): the
    architecture transformers loads with AutoModelForSequenceClassification. It reads its score at the last token
    before padding, so its config must name the tokenizer's pad token."""
    from transformers import AutoModelForSequenceClassification

    config = causal_lm.config.__class__.from_dict(causal_lm.config.to_dict())
    config.num_labels, config.architectures, config.pad_token_id = 1, None, pad_token_id
    reward_model = AutoModelForSequenceClassification.from_config(config, dtype=causal_lm.dtype)
    body = getattr(reward_model, reward_model.base_model_prefix)
    body.load_state_dict(getattr(causal_lm, causal_lm.base_model_prefix).state_dict())
    return reward_model.to(causal_lm.device)


def load_reward_model(path: str | Path, device: str = "auto"):
    """A reward model the rm stage trained: a model folder, or a LoRA adapter (its score head saved with it) on
    the causal LM it started from."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    _require_local_dir(path, "reward model")
    tokenizer = load_tokenizer(path)
    if is_adapter(path):
        base, _ = load_model(ModelConfig(path=str(recorded_base(path)), device=device))
        reward_model = to_reward_model(base, tokenizer.pad_token_id)
        model = PeftModel.from_pretrained(reward_model, str(require_adapter(path))).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True,
                                                                   use_safetensors=True)
        model = model.to(pick_device(device))
    if model.config.num_labels != 1:
        raise ValueError(f"{path} is not a reward model: its head has {model.config.num_labels} outputs, not 1")
    return model.eval(), tokenizer


def unique_parameters(model) -> list:
    """Each tensor once: peft's adapter on a tied embedding is two parameters over one storage."""
    unique = {id(p) if p.device.type == "meta" else p.data_ptr(): p for p in model.parameters()}
    return list(unique.values())


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in unique_parameters(model) if p.requires_grad or not trainable_only)


def set_stop_tokens(model, tokenizer, stop_ids: list[int]) -> None:
    """Generation stops at these tokens (EOS and the template's end-of-turn), in memory and once saved."""
    model.generation_config.eos_token_id = stop_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def save_model(model, tokenizer, out: Path) -> None:
    """Safetensors weights (or a peft adapter), generation config and the tokenizer with its chat template."""
    model.save_pretrained(out, safe_serialization=True)
    save_companions(model, tokenizer, out)


def save_companions(model, tokenizer, out: Path) -> None:
    """What a model folder needs beside the weights: the generation config (a peft adapter's save leaves it out;
    it holds the stop tokens) and the tokenizer with its chat template."""
    if getattr(model, "generation_config", None) is not None:  # a reward model does not generate
        model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _require_local_dir(path: str | Path | None, what: str) -> None:
    if path is None or not Path(path).is_dir():
        raise FileNotFoundError(f"{what} directory not found: {path} (lmforge loads local directories only)")


def as_id_list(value) -> list[int]:
    """A config's token id field (one id, a list of them, or None) as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def sliding_window(config) -> int | None:
    """The attention window of a model trained with one (Mistral, Qwen2 with it on, Gemma 2/3 local layers), in
    tokens; None for full attention."""
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    if window is None and "sliding_attention" in (getattr(config, "layer_types", None) or []):
        window = getattr(config, "sliding_window", None)
    return window or None


def cache_keyword(model) -> str:
    """The forward keyword of the KV cache: transformers 5.2x renamed `past_key_values` (in and out) to `cache` and
    warns on the old name; older versions and remote code know only `past_key_values`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "peft_config") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
