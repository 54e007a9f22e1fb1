"""`train.anchor`: a penalty toward the start model, against forgetting, added to any stage's training loss.

`l2` adds anchor_weight/2 times the squared distance of the trainable weights from a copy taken before training
(under LoRA: of the adapters from their initial values). `kl` adds anchor_weight times the mean KL(start model ||
model) of the next-token distributions on the trained tokens, the start model's logits coming from a `Reference`
(see `lmforge.losses.token_kl` for the direction)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from lmforge.losses import l2_distance, token_kl
from lmforge.train.reference import Reference

log = logging.getLogger("lmforge.train")

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


@dataclass
class Anchor:
    """The penalty's kind and weight, with the start weights (l2) or the start model (kl)."""

    kind: str
    weight: float
    params: list[torch.nn.Parameter] = field(default_factory=list)
    starts: list[torch.Tensor] = field(default_factory=list)
    reference: Reference | None = None


def build_anchor(settings, model, reference: Reference | None) -> Anchor | None:
    """The recipe's anchor (`settings` is its `train` section) for `model` as it is now, before any training step,
    so a resumed run still anchors to the start model; `reference` is the start model for kl."""
    if settings.anchor == "none":
        return None
    if settings.anchor == "kl":
        return Anchor("kl", settings.anchor_weight, reference=reference)
    params = [param for param in model.parameters() if param.requires_grad]
    log.info("anchor: l2 to a copy of the %d trainable tensors", len(params))
    return Anchor("l2", settings.anchor_weight, params, [param.detach().clone() for param in params])


def anchored(trainer_class: type) -> type:
    """`trainer_class` (a RecordingTrainer) with the anchor penalty added to its training loss."""
    return type(f"Anchored{trainer_class.__name__}", (Anchored, trainer_class), {})


class Anchored:
    """Mixin before a stage's trainer class: adds the penalty to the training loss (eval losses stay the stage's
    own) and records it as `anchor`, weighted as in the loss, so `loss` minus `anchor` is the stage's loss."""

    def __init__(self, *args, anchor: Anchor, **kwargs):
        super().__init__(*args, **kwargs)
        self.anchor = anchor

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        penalty, value = self._penalty(model, inputs, outputs, num_items_in_batch)
        self.record(anchor=value)
        loss = loss + penalty
        return (loss, outputs) if return_outputs else loss

    def _penalty(self, model, inputs: dict, outputs, num_items_in_batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The term to add to this micro-batch's loss, and the penalty's value to log. An optimizer step must count
        the penalty once whatever train.grad_accum and the number of processes: the Trainer divides each loss by the
        accumulation steps, except a loss already divided by the step's token count over every process
        (`num_items_in_batch`, the causal LM loss of pretrain and sft), which it multiplies by the number of
        processes to undo the gradient averaging. A KL term then follows that token normalisation; the L2 term, the
        same in every micro-batch and process, is divided by the accumulation steps."""
        anchor = self.anchor
        by_tokens = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        if anchor.kind == "l2":
            value = anchor.weight * l2_distance(anchor.params, anchor.starts)
            return (value / self.current_gradient_accumulation_steps if by_tokens else value), value
        model_inputs = {key: inputs[key] for key in MODEL_INPUTS if key in inputs}
        start = anchor.reference.logits(self.accelerator, model, **model_inputs, use_cache=False)
        kl, positions = token_kl(start, outputs.logits, inputs["labels"])
        value = anchor.weight * kl / positions.clamp(min=1)
        if not by_tokens:
            return value, value
        processes = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        return anchor.weight * kl * processes / num_items_in_batch, value
