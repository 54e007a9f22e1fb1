"""The models one server answers for: a base model and peft adapters on it, each with the tokenizer, chat
template and stop tokens its run trained with."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from lmforge.engine import Target, stop_ids_for
from lmforge.serve.config import ServeConfig

log = logging.getLogger("lmforge.serve")


@dataclass(kw_only=True)
class ServedModel(Target):
    """A model id the server answers for: the engine's target, with its chat template."""

    id: str
    template: str
    created: int = 0

    def chat_prompt(self, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
        """The tokens SFT trained on before the reply, rendered by the same function."""
        from lmforge.templates import encode_prompt

        return encode_prompt(self.tokenizer, messages, self.template, tools=tools)

    def text_prompt(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def load_served(cfg: ServeConfig):
    """The model (a PeftModel when adapters are served) and the served ids, base first."""
    import time

    from lmforge.models import load_for_inference, load_tokenizer, recorded_base, require_adapter, sliding_window

    model, tokenizer = load_for_inference(cfg.model, cfg.device, cfg.trust_remote_code, dtype=cfg.dtype)
    max_len = cfg.max_model_len or int(getattr(model.config, "max_position_embeddings", 2048))
    window = sliding_window(model.config)
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
    from lmforge.templates import resolve_template

    template = resolve_template(tokenizer, "auto")
    return ServedModel(id=model_id, tokenizer=tokenizer, template=template,
                       stop_ids=stop_ids_for(tokenizer, generation_config, template), max_len=max_len,
                       adapter=adapter, created=created)


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
