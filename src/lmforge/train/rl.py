"""The grpo stage: online RL. Each step samples `grpo.group_size` completions per prompt from the current model
through the shared engine (continuous batching; a prompt's group shares its prefill), scores them with the recipe's
reward functions, and raises the likelihood of completions that beat their group's mean, with a KL penalty to the
reference model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lmforge.engine import Engine, SamplingParams, Target
from lmforge.losses import group_advantages, grpo_loss, token_logps
from lmforge.sequences import left_pad
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
        self._generator: Engine | None = None
        self._target: Target | None = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rollout = self._rollout(model, inputs)
        advantages = group_advantages(rollout.rewards, self.settings.group_size, self.settings.scale_rewards)
        logps = self._completion_logps(model, rollout)
        ref_logps = None
        if self.reference is not None:
            logits = self.reference.logits(self.accelerator, model, **_model_inputs(rollout))
            ref_logps = _completion_part(_at_temperature(logits, self.settings.temperature), rollout)
        loss, kl = grpo_loss(logps, ref_logps, advantages, rollout.completion_mask, self.settings.beta)
        self.record(kl=kl, completion_length=rollout.completion_mask.sum(-1).float())
        return (loss, logps) if return_outputs else loss

    def _completion_logps(self, model, rollout: Rollout) -> torch.Tensor:
        """Log-probs under the distribution the completions were sampled from (logits over the temperature)."""
        logits = model(**_model_inputs(rollout)).logits
        return _completion_part(_at_temperature(logits, self.settings.temperature), rollout)

    def _rollout(self, model, inputs: dict) -> Rollout:
        """Sample the groups from the weights being trained (the engine runs on the same model object, in eval mode
        under no_grad: no copy, no weight sync), then score them."""
        group = self.settings.group_size
        prompts = inputs["prompt_ids"]
        completions = self._engine(model).generate(self._target, prompts, self._sampling(len(prompts)), n=group)
        pad_id = self.processing_class.pad_token_id
        device = self.accelerator.device
        padded = left_pad([ids for ids in prompts for _ in range(group)], pad_id, device)
        answers = [c.token_ids + ([] if c.stop_token is None else [c.stop_token]) for c in completions]
        width = max(1, max(len(answer) for answer in answers))
        tokens = torch.tensor([answer + [pad_id] * (width - len(answer)) for answer in answers], device=device)
        completion_mask = torch.tensor([[1] * len(answer) + [0] * (width - len(answer)) for answer in answers],
                                       device=device)
        rewards = self._score(inputs, [c.text for c in completions], group)
        return Rollout(torch.cat([padded["input_ids"], tokens], dim=1),
                       torch.cat([padded["attention_mask"], completion_mask], dim=1), completion_mask,
                       padded["input_ids"].shape[1], rewards)

    def _engine(self, model):
        """One engine on the unwrapped model for the whole run; no prefix cache, as the weights change every step."""
        unwrapped = self.accelerator.unwrap_model(model)
        if self._generator is None or self._generator.model is not unwrapped:
            rows = self.args.per_device_train_batch_size * self.settings.group_size
            self._generator = Engine(unwrapped, max_batch_size=rows, prefix_cache_tokens=0)
            self._target = Target(tokenizer=self.processing_class, stop_ids=self.stop_ids,
                                  max_len=int(getattr(unwrapped.config, "max_position_embeddings", 2048)))
        return self._generator

    def _sampling(self, prompts: int) -> list[SamplingParams]:
        """Each prompt's settings, seeded from torch's generator (which the Trainer seeds and checkpoints), so a
        run and its resume sample the same completions."""
        settings = self.settings
        first = int(torch.randint(0, 2**62, (1,)))
        return [SamplingParams(settings.max_new_tokens, settings.temperature, settings.top_p, settings.top_k,
                               seed=first + index * settings.group_size) for index in range(prompts)]

    def _score(self, inputs: dict, texts: list[str], group: int) -> torch.Tensor:
        messages = [m for m in inputs["messages"] for _ in range(group)]
        records = [record for record in inputs["columns"] for _ in range(group)]
        columns = {key: [record.get(key) for record in records] for key in {k for r in records for k in r}}
        totals, parts = self.rewards(messages, texts, **columns)
        rewards = torch.tensor(totals, dtype=torch.float32, device=self.args.device)
        self.record(reward=rewards, reward_std=rewards.view(-1, group).std(-1),
                    **{name: torch.tensor(value) for name, value in parts.items()})
        return rewards


def _model_inputs(rollout: Rollout) -> dict:
    """Positions count real tokens only, as in generation from left-padded prompts. Only the logits that score a
    completion token are computed: from the last prompt position on (the vocabulary projection and its softmax are
    a large part of a small model's step)."""
    positions = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    completion_width = rollout.sequences.shape[1] - rollout.prompt_width
    return {"input_ids": rollout.sequences, "attention_mask": rollout.attention_mask, "position_ids": positions,
            "logits_to_keep": completion_width + 1}


def _at_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return logits if temperature == 1.0 else logits / temperature


def _completion_part(logits: torch.Tensor, rollout: Rollout) -> torch.Tensor:
    """Per-token log-probs of the completion tokens, from the logits of the last prompt position on (each token's
    logits sit one position before it)."""
    labels = rollout.sequences.masked_fill(rollout.attention_mask == 0, -100)[:, rollout.prompt_width - 1 :]
    picked, _ = token_logps(logits, labels)
    return picked


def grpo_parts(recipe: TrainRecipe, tokenizer, reference: Reference | None, stop_ids: list[int]) -> StageParts:
    from lmforge.rewards import RewardSet

    rewards = RewardSet.build([(spec.name, spec.weight, spec.options) for spec in recipe.grpo.rewards])
    return StageParts(GrpoTrainer, collate_prompts, {"recipe": recipe, "reference": reference, "rewards": rewards,
                                                     "stop_ids": stop_ids, "processing_class": tokenizer})
