"""/v1/embeddings: the served model's last hidden states, mean-pooled over real tokens, or a sentence-transformers
model (`lmforge.embedders`). Vectors are L2-normalised, as OpenAI's are."""

from __future__ import annotations

import threading

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
