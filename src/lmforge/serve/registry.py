"""The models one server answers for: a base model and peft adapters on it, each with the tokenizer, chat
template and stop tokens its run trained with."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.serve.config import ServeConfig

log = logging.getLogger("lmforge.serve")

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch


@dataclass
class ServedModel:
    id: str
    tokenizer: object
    template: str
    stop_ids: list[int]
    max_len: int
    adapter: str | None = None
    created: int = 0
    _guidance: object = field(default=None, repr=False)

    def chat_prompt(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """The tokens SFT trained on before the reply, rendered by the same function."""
        from lmforge.templates import encode_prompt

        return encode_prompt(self.tokenizer, messages, self.template, tools=tools)

    def text_prompt(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def guidance_tokenizer(self, vocab_size: int):
        """llguidance's view of the vocabulary, built on first use (constrained decoding)."""
        if self._guidance is None:
            import llguidance.hf

            self._guidance = llguidance.hf.from_tokenizer(self.tokenizer, n_vocab=vocab_size,
                                                          eos_token=self.stop_ids)
        return self._guidance


def load_served(cfg: ServeConfig):
    """The model (a PeftModel when adapters are served) and the served ids, base first."""
    import time

    from lmforge.models import load_for_inference, load_tokenizer, recorded_base, require_adapter

    model, tokenizer = load_for_inference(cfg.model, cfg.device, cfg.trust_remote_code, dtype=cfg.dtype)
    max_len = cfg.max_model_len or int(getattr(model.config, "max_position_embeddings", 2048))
    window = getattr(model.config, "sliding_window", None) if getattr(model.config, "use_sliding_window", True) \
        else None
    if window and window < max_len:
        log.warning("the engine attends over the whole context; this model was trained with a %d-token sliding "
                    "window, so replies past %d tokens of context may differ from transformers'", window, window)
    created = int(time.time())
    base_id = cfg.name or Path(cfg.model).resolve().name
    served = {base_id: _served(base_id, tokenizer, model.generation_config, max_len, None, created)}
    for name, path in cfg.adapters().items():
        if name in served:
            raise ValueError(f"adapter name {name!r} is already the base model's id; pick another (--name)")
        require_adapter(path)
        _warn_if_other_base(path, recorded_base(path), Path(cfg.model))
        model = _attach(model, name, path)
        adapter_tokenizer = load_tokenizer(path) if (Path(path) / "tokenizer_config.json").is_file() else tokenizer
        if len(adapter_tokenizer) != len(tokenizer):
            raise ValueError(f"adapter {path} has a tokenizer of {len(adapter_tokenizer)} tokens, the base model "
                             f"{len(tokenizer)}: it was not trained on this base")
        served[name] = _served(name, adapter_tokenizer, _generation_config(path, model), max_len, name, created)
    return model, served


def _served(model_id: str, tokenizer, generation_config, max_len: int, adapter: str | None, created: int):
    from lmforge.generate import as_id_list
    from lmforge.templates import end_of_turn_ids, resolve_template

    template = resolve_template(tokenizer, "auto")
    stops = as_id_list(getattr(generation_config, "eos_token_id", None)) + [tokenizer.eos_token_id]
    stops += end_of_turn_ids(tokenizer, template)[:1]
    stop_ids = sorted({token for token in stops if token is not None})
    return ServedModel(model_id, tokenizer, template, stop_ids, max_len, adapter, created)


def _attach(model, name: str, path: str):
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model.load_adapter(path, adapter_name=name)
        return model
    return PeftModel.from_pretrained(model, path, adapter_name=name).eval()


def _generation_config(path: str, model):
    from transformers import GenerationConfig

    if (Path(path) / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(path, local_files_only=True)
    return model.generation_config


def _warn_if_other_base(adapter: str, recorded: Path, served: Path) -> None:
    if recorded.resolve() != served.resolve():
        log.warning("adapter %s was trained on %s, not on the served model %s", adapter, recorded, served)
