"""/v1/embeddings: the served model's last hidden states, mean-pooled over real tokens, or a sentence-transformers
model. Vectors are L2-normalised, as OpenAI's are."""

from __future__ import annotations

import threading
from pathlib import Path

from lmforge.engine import BASE_ADAPTER


class HiddenStateEmbedder:
    def __init__(self, model, served, model_lock: threading.Lock):
        self.model, self.served = model, served
        self.lock = model_lock  # the engine's: peft's adapter hooks are per call, on the shared modules
        self.uses_adapters = hasattr(model, "peft_config")

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        import torch

        from lmforge.sequences import left_pad

        batch = left_pad(inputs, self.served.tokenizer.pad_token_id, next(self.model.parameters()).device)
        extra = {"adapter_names": [self.served.adapter or BASE_ADAPTER] * len(inputs)} if self.uses_adapters else {}
        with self.lock, torch.inference_mode():
            hidden = self.model(**batch, output_hidden_states=True, logits_to_keep=1, **extra).hidden_states[-1]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1).tolist()


class SentenceEmbedder:
    def __init__(self, path: str, device: str):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device=None if device == "auto" else device, local_files_only=True)
        self.tokenizer = self.model.tokenizer
        self.lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self.lock:
            return self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True).tolist()

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(ids) for ids in self.tokenizer(texts)["input_ids"])


def embedding_model_id(spec: str) -> tuple[str, str]:
    """`NAME=DIR`, or a DIR named by its folder (its parent's, for a package's generic `model` folder)."""
    if "=" in spec and not Path(spec).exists():
        name, path = spec.split("=", 1)
        return name, path
    path = Path(spec).resolve()
    return (path.parent.name if path.name == "model" else path.name), str(path)
