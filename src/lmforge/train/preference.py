"""The rm and dpo stages: learning from preferred and dispreferred answers to one prompt.

`rm` puts a one-output head on the causal LM and trains it to score the chosen answer above the rejected one.
`dpo` trains the language model itself with one of the preference losses of `lmforge.losses`. Both batch a pair as
two rows, the chosen answers first, so one forward pass scores both."""

from __future__ import annotations

import dataclasses

import torch

from lmforge.losses import Completions, PreferenceOptions, kto_loss, paired_loss, pairwise_reward_loss, sequence_logps
from lmforge.sequences import Collator
from lmforge.train.config import TrainRecipe
from lmforge.train.data import LabeledRow, PairRow
from lmforge.train.loop import MetricTrainer, StageParts
from lmforge.train.reference import Reference


class PairCollator:
    """A batch of pairs as 2n rows, chosen answers first; KTO's labelled rows as n rows and their labels.
    Precomputed reference log-probs (`reference_logps`) travel along in the same order."""

    def __init__(self, pad_id: int):
        self.pad_rows = Collator(pad_id, packed=False)

    def __call__(self, items: list) -> dict[str, torch.Tensor]:
        if isinstance(items[0], LabeledRow):
            batch = self.pad_rows([item.row for item in items])
            batch["desirable"] = torch.tensor([item.desirable for item in items])
        else:
            batch = self.pad_rows([item.chosen for item in items] + [item.rejected for item in items])
        references = [getattr(item, "reference", None) for item in items]
        if references[0] is not None:
            batch["reference_logps"] = torch.tensor(_pair_order(references), dtype=torch.float32)
        return batch


def _pair_order(references: list[tuple[float, ...]]) -> list[float]:
    """Per-item reference log-probs laid out like the rows: every first value, then every second (pairs)."""
    return [values[i] for i in range(len(references[0])) for values in references]


@dataclasses.dataclass
class ReferencedPair(PairRow):
    reference: tuple[float, float]


@dataclasses.dataclass
class ReferencedExample(LabeledRow):
    reference: tuple[float]


class RewardModelTrainer(MetricTrainer):
    """Bradley-Terry training of a sequence-classification model; logs pairwise accuracy and the score margin."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        scores = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits.squeeze(-1)
        chosen, rejected = scores.float().chunk(2)
        self.record(accuracy=(chosen > rejected).float(), margin=chosen - rejected)
        loss = pairwise_reward_loss(chosen, rejected).mean()
        return (loss, scores) if return_outputs else loss


class DpoTrainer(MetricTrainer):
    """The dpo stage's trainer: policy log-probs of both answers, the reference's from the Reference (or the
    batch, when precomputed), one of the preference losses, and an optional NLL term on the chosen answers."""

    def __init__(self, *args, recipe: TrainRecipe, reference: Reference | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = recipe.dpo
        self.options = preference_options(recipe)
        self.reference = reference
        self.sft_weight = sft_weight(recipe)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        outputs = model(**model_inputs)
        policy = sequence_logps(outputs.logits, inputs["labels"])
        reference = self._reference_logps(model, model_inputs, inputs, policy)
        if self.settings.loss == "kto":
            result = kto_loss(policy, reference, inputs["desirable"], self.options)
            chosen = _select(policy, inputs["desirable"])
        else:
            chosen, rejected = _halves(policy)
            ref_chosen, ref_rejected = _halves(reference) if reference is not None else (None, None)
            result = paired_loss(self.settings.loss, chosen, rejected, ref_chosen, ref_rejected, self.options)
            self.record(accuracy=(result.chosen_rewards > result.rejected_rewards).float(),
                        margin=result.chosen_rewards - result.rejected_rewards,
                        logps_chosen=chosen.logps.detach(), logps_rejected=rejected.logps.detach())
        self.record(rewards_chosen=result.chosen_rewards, rewards_rejected=result.rejected_rewards)
        loss = result.losses.mean()
        if self.sft_weight:
            nll = -chosen.logps.sum() / chosen.tokens.sum().clamp(min=1)
            self.record(nll=nll)
            loss = loss + self.sft_weight * nll
        return (loss, outputs) if return_outputs else loss

    def _reference_logps(self, model, model_inputs: dict, inputs: dict, policy: Completions) -> Completions | None:
        if "reference_logps" in inputs:
            return Completions(inputs["reference_logps"], policy.tokens)
        if self.reference is None:
            return None
        logits = self.reference.logits(self.accelerator, model, **model_inputs)
        return sequence_logps(logits, inputs["labels"])


def _halves(completions: Completions) -> tuple[Completions, Completions]:
    logps, tokens = completions.logps.chunk(2), completions.tokens.chunk(2)
    return Completions(logps[0], tokens[0]), Completions(logps[1], tokens[1])


def _select(completions: Completions, keep: torch.Tensor) -> Completions:
    return Completions(completions.logps[keep], completions.tokens[keep])


def preference_options(recipe: TrainRecipe) -> PreferenceOptions:
    section = recipe.dpo
    return PreferenceOptions(beta=section.beta, label_smoothing=section.label_smoothing, simpo_gamma=section.simpo_gamma,
                             desirable_weight=section.desirable_weight, undesirable_weight=section.undesirable_weight)


def sft_weight(recipe: TrainRecipe) -> float:
    if recipe.dpo.sft_weight is not None:
        return recipe.dpo.sft_weight
    return 1.0 if recipe.dpo.loss == "orpo" else 0.0


def precompute_reference(model, rows: list, pad_id: int, batch_size: int, autocast) -> list:
    """`dpo.reference: precomputed`: the start model's log-probs of every answer, in one pass before training (in
    the precision training computes in, `autocast`), so training keeps no reference model."""
    collate, out = PairCollator(pad_id), []
    model.eval()
    with torch.no_grad(), autocast():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = {key: value.to(model.device) for key, value in collate(chunk).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            logps = sequence_logps(logits, batch["labels"]).logps.tolist()
            out += [_with_reference(row, logps, index, len(chunk)) for index, row in enumerate(chunk)]
    model.train()
    return out


def _with_reference(row, logps: list[float], index: int, count: int):
    if isinstance(row, LabeledRow):
        return ReferencedExample(row.row, row.desirable, (logps[index],))
    return ReferencedPair(row.chosen, row.rejected, (logps[index], logps[count + index]))


def preference_parts(recipe: TrainRecipe, tokenizer, reference: Reference | None) -> StageParts:
    collator = PairCollator(tokenizer.pad_token_id)
    if recipe.stage == "rm":
        return StageParts(RewardModelTrainer, collator)
    return StageParts(DpoTrainer, collator, {"recipe": recipe, "reference": reference})
