"""The reference model of the dpo and grpo stages, from one of three places: a frozen copy of the start model (or
of `dpo.reference_path`), the policy itself with its LoRA adapters switched off (no second model in memory), or
log-probs computed once before training (dpo only; then no reference model is kept at all)."""

from __future__ import annotations

import copy
import logging

import torch

from lmforge.train.config import ADAPTER_METHODS, TrainRecipe

log = logging.getLogger("lmforge.train")


class Reference:
    """Runs the reference forward pass the way the recipe asks, always without gradients."""

    def __init__(self, source: str, model=None):
        self.source = source
        self.model = model

    def logits(self, accelerator, policy, **inputs) -> torch.Tensor:
        """Reference logits for `inputs`, in the training precision (the policy's own forward, unwrapped from its
        launcher, when its adapters are switched off)."""
        with torch.no_grad(), accelerator.autocast():
            if self.source == "adapter":
                unwrapped = accelerator.unwrap_model(policy)
                with unwrapped.disable_adapter():
                    return unwrapped(**inputs).logits
            return self.model(**inputs).logits


def build_reference(recipe: TrainRecipe, model) -> Reference | None:
    """The reference of this recipe, taken from the start model before any training step; None when its loss
    needs none or when the log-probs are precomputed."""
    source = recipe.reference_source
    if source in (None, "precomputed"):
        return None
    if source == "adapter":
        log.info("reference: the policy with its adapters switched off (no second model in memory)")
        return Reference("adapter")
    return Reference("copy", _frozen(_reference_model(recipe, model)))


def start_reference(recipe: TrainRecipe, model, reference: Reference | None) -> Reference | None:
    """The start model for `train.anchor: kl`, taken before any training step: the stage's own reference when that
    is the start model (dpo without dpo.reference_path), the policy with its adapters off under LoRA, else a frozen
    copy. None for the other anchors."""
    if recipe.train.anchor != "kl":
        return None
    if reference is not None and not recipe.dpo.reference_path:
        return reference
    if recipe.finetuning in ADAPTER_METHODS:
        log.info("anchor: the model with its adapters switched off")
        return Reference("adapter")
    log.info("anchor: a frozen copy of the start model")
    return Reference("copy", _frozen(copy.deepcopy(model)))


def _reference_model(recipe: TrainRecipe, model):
    if recipe.stage == "dpo" and recipe.dpo.reference_path:
        from lmforge.models import load_model

        log.info("reference: %s", recipe.dpo.reference_path)
        cfg = recipe.model.model_copy(update={"path": recipe.dpo.reference_path, "tokenizer": None})
        return load_model(cfg, for_training=True)[0]
    log.info("reference: a frozen copy of the start model")
    return copy.deepcopy(model)


def _frozen(model):
    model.requires_grad_(False)
    return model.eval()
