"""The grpo stage: online RL. Each step samples `grpo.group_size` completions per prompt from the current model,
scores them with the recipe's reward functions, and raises the likelihood of completions that beat their group's
mean, with a KL penalty to the reference model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmforge.sequences import left_pad
from lmforge.losses import group_advantages, grpo_loss, token_logps
from lmforge.train.config import TrainRecipe
from lmforge.train.data import PromptRow
from lmforge.train.loop import MetricTrainer, StageParts
from lmforge.train.reference import Reference


def collate_prompts(rows: list[PromptRow]) -> dict:
    """Prompts stay lists (they are left-padded at sampling time); the records' other fields go to the rewards."""
    return {"prompt_ids": [row.prompt_ids for row in rows], "messages": [row.messages for row in rows],
            "columns": [row.columns for row in rows]}


@dataclass
class Rollout:
    """Sampled completions of a batch of prompts: prompt and completion side by side, left-padded prompts."""

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    prompt_width: int
    rewards: torch.Tensor


class GrpoTrainer(MetricTrainer):
    def __init__(self, *args, recipe: TrainRecipe, reference: Reference | None, rewards, stop_ids: list[int],
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = recipe.grpo
        self.reference = reference
        self.rewards = rewards
        self.stop_ids = stop_ids

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rollout = self._rollout(model, inputs)
        advantages = group_advantages(rollout.rewards, self.settings.group_size, self.settings.scale_rewards)
        logps = self._completion_logps(model, rollout)
        ref_logps = None
        if self.reference is not None:
            logits = self.reference.logits(self.accelerator, model, **_model_inputs(rollout))
            ref_logps = _completion_part(logits / self.settings.temperature, rollout)
        loss, kl = grpo_loss(logps, ref_logps, advantages, rollout.completion_mask, self.settings.beta)
        self.record(kl=kl, completion_length=rollout.completion_mask.sum(-1).float())
        return (loss, logps) if return_outputs else loss

    def _completion_logps(self, model, rollout: Rollout) -> torch.Tensor:
        """Log-probs under the distribution the completions were sampled from (logits over the temperature)."""
        return _completion_part(model(**_model_inputs(rollout)).logits / self.settings.temperature, rollout)

    @torch.no_grad()
    def _rollout(self, model, inputs: dict) -> Rollout:
        """Sample the groups with the model in eval mode (no dropout), then score them."""
        unwrapped = self.accelerator.unwrap_model(model)
        group = self.settings.group_size
        padded = left_pad([ids for ids in inputs["prompt_ids"] for _ in range(group)],
                          self.processing_class.pad_token_id, unwrapped.device)
        prompts, prompt_mask = padded["input_ids"], padded["attention_mask"]
        was_training = unwrapped.training
        unwrapped.eval()
        sequences = unwrapped.generate(input_ids=prompts, attention_mask=prompt_mask, **self._sampling())
        unwrapped.train(was_training)
        completions = sequences[:, prompts.shape[1]:]
        completion_mask = _until_stop(completions, self.stop_ids)
        pad_id = self.processing_class.pad_token_id
        texts = self.processing_class.batch_decode(completions.masked_fill(completion_mask == 0, pad_id),
                                                   skip_special_tokens=True)
        rewards = self._score(inputs, texts, group)
        return Rollout(sequences, torch.cat([prompt_mask, completion_mask], dim=1), completion_mask,
                       prompts.shape[1], rewards)

    def _sampling(self) -> dict:
        settings = self.settings
        return {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p,
                "top_k": settings.top_k or None, "max_new_tokens": settings.max_new_tokens, "use_cache": True,
                "eos_token_id": self.stop_ids, "pad_token_id": self.processing_class.pad_token_id}

    def _score(self, inputs: dict, texts: list[str], group: int) -> torch.Tensor:
        messages = [m for m in inputs["messages"] for _ in range(group)]
        records = [record for record in inputs["columns"] for _ in range(group)]
        columns = {key: [record.get(key) for record in records] for key in {k for r in records for k in r}}
        totals, parts = self.rewards(messages, texts, **columns)
        rewards = torch.tensor(totals, dtype=torch.float32, device=self.args.device)
        self.record(reward=rewards, reward_std=rewards.view(-1, group).std(-1),
                    **{name: torch.tensor(value) for name, value in parts.items()})
        return rewards


def _until_stop(completions: torch.Tensor, stop_ids: list[int]) -> torch.Tensor:
    """1 for each completion token up to and including its first stop token, 0 after it."""
    stops = torch.isin(completions, torch.tensor(stop_ids, device=completions.device))
    after_stop = (stops.cumsum(-1) - stops.long()) > 0
    return (~after_stop).long()


def _model_inputs(rollout: Rollout) -> dict:
    """Positions count real tokens only, as in generation from left-padded prompts."""
    positions = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": rollout.sequences, "attention_mask": rollout.attention_mask, "position_ids": positions}


def _completion_part(logits: torch.Tensor, rollout: Rollout) -> torch.Tensor:
    """Per-token log-probs of the completion tokens (the logits one position before each)."""
    labels = rollout.sequences.masked_fill(rollout.attention_mask == 0, -100)
    picked, _ = token_logps(logits, labels)
    return picked[:, rollout.prompt_width - 1 :]


def grpo_parts(recipe: TrainRecipe, tokenizer, reference: Reference | None, stop_ids: list[int]) -> StageParts:
    from lmforge.rewards import RewardSet

    rewards = RewardSet.build([(spec.name, spec.weight, spec.options) for spec in recipe.grpo.rewards])
    return StageParts(GrpoTrainer, collate_prompts, {"recipe": recipe, "reference": reference, "rewards": rewards,
                                                     "stop_ids": stop_ids, "processing_class": tokenizer})
