"""Training losses as pure tensor functions, shared by the stages: sequence log-probabilities under a loss mask,
the preference losses of the dpo stage, the reward model's pairwise loss, GRPO's policy loss and the anchor
penalties that keep a model near its start (`train.anchor`).

Preference losses take summed log-probabilities of each completion under the policy and (where they use one) the
reference, and return one loss per pair plus the implicit rewards to log. Formulas follow the papers: DPO (Rafailov
et al. 2023; label smoothing as conservative DPO), IPO (Azar et al. 2023, on per-token averages as its authors
ran it), hinge (SLiC, Zhao et al. 2023), robust DPO (Chowdhury et al. 2024), SimPO (Meng et al. 2024), ORPO (Hong
et al. 2024), KTO (Ethayarajh et al. 2024) and GRPO (Shao et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lmforge.templates import IGNORE_INDEX

PAIRED_LOSSES = ("sigmoid", "ipo", "hinge", "robust", "simpo", "orpo")
REFERENCE_FREE_LOSSES = ("simpo", "orpo")


@dataclass
class Completions:
    """Summed log-probability of each completion and its number of scored tokens."""

    logps: torch.Tensor
    tokens: torch.Tensor

    @property
    def mean_logps(self) -> torch.Tensor:
        return self.logps / self.tokens.clamp(min=1)


@dataclass
class PreferenceOptions:
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0


@dataclass
class PreferenceLoss:
    """Per-pair (or per-example, for KTO) losses and the implicit rewards behind them."""

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next token and the mask of the scored ones (labels shifted by one, as in causal LM
    training; IGNORE_INDEX marks prompt and padding)."""
    targets, mask = labels[:, 1:], labels[:, 1:] != IGNORE_INDEX
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = logps.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> Completions:
    picked, mask = token_logps(logits, labels)
    return Completions(picked.sum(-1), mask.sum(-1))


def paired_loss(kind: str, chosen: Completions, rejected: Completions, ref_chosen: Completions | None,
                ref_rejected: Completions | None, options: PreferenceOptions) -> PreferenceLoss:
    """One of PAIRED_LOSSES; the reference-free ones ignore `ref_*` (pass None)."""
    if kind == "simpo":
        return _simpo(chosen, rejected, options)
    if kind == "orpo":
        return _orpo(chosen, rejected, options)
    beta, eps = options.beta, options.label_smoothing
    chosen_ratio, rejected_ratio = chosen.logps - ref_chosen.logps, rejected.logps - ref_rejected.logps
    margin = chosen_ratio - rejected_ratio
    if kind == "sigmoid":
        losses = -(1 - eps) * F.logsigmoid(beta * margin) - eps * F.logsigmoid(-beta * margin)
    elif kind == "robust":
        losses = (-(1 - eps) * F.logsigmoid(beta * margin) + eps * F.logsigmoid(-beta * margin)) / (1 - 2 * eps)
    elif kind == "hinge":
        losses = torch.relu(1 - beta * margin)
    elif kind == "ipo":
        per_token = chosen_ratio / chosen.tokens.clamp(min=1) - rejected_ratio / rejected.tokens.clamp(min=1)
        losses = (per_token - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"unknown paired preference loss {kind!r}; expected one of {', '.join(PAIRED_LOSSES)}")
    return PreferenceLoss(losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach())


def _simpo(chosen: Completions, rejected: Completions, options: PreferenceOptions) -> PreferenceLoss:
    """Length-normalised log-probabilities as rewards, with a target margin gamma; no reference model."""
    beta, eps = options.beta, options.label_smoothing
    chosen_rewards, rejected_rewards = beta * chosen.mean_logps, beta * rejected.mean_logps
    logits = chosen_rewards - rejected_rewards - options.simpo_gamma
    losses = -(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
    return PreferenceLoss(losses, chosen_rewards.detach(), rejected_rewards.detach())


def _orpo(chosen: Completions, rejected: Completions, options: PreferenceOptions) -> PreferenceLoss:
    """The odds-ratio term, weighted by beta (the paper's lambda); its NLL term on the chosen answer comes from
    `sft_weight`, which defaults to 1 for ORPO."""
    log_odds = _log_odds(chosen.mean_logps) - _log_odds(rejected.mean_logps)
    losses = -options.beta * F.logsigmoid(log_odds)
    return PreferenceLoss(losses, options.beta * chosen.mean_logps.detach(), options.beta * rejected.mean_logps.detach())


def _log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log(p / (1 - p)) for p = exp(mean log-probability), kept finite as p approaches 1."""
    return mean_logps - torch.log1p(-torch.exp(mean_logps).clamp(max=1 - 1e-6))


def kto_loss(policy: Completions, reference: Completions, desirable: torch.Tensor,
             options: PreferenceOptions) -> PreferenceLoss:
    """Unpaired good/bad examples. The reference point z0 is the batch's mean policy/reference log-ratio, clipped
    at 0 and not differentiated (the KTO paper estimates it from mismatched pairs; the batch mean is the cheaper
    estimate). `rejected_rewards` holds the undesirable examples' rewards, `chosen_rewards` the desirable ones'."""
    beta = options.beta
    ratio = policy.logps - reference.logps
    z0 = ratio.detach().mean().clamp(min=0)
    good = options.desirable_weight * (1 - torch.sigmoid(beta * (ratio - z0)))
    bad = options.undesirable_weight * (1 - torch.sigmoid(beta * (z0 - ratio)))
    losses = torch.where(desirable, good, bad)
    rewards = beta * ratio.detach()
    return PreferenceLoss(losses, rewards[desirable], rewards[~desirable])


def pairwise_reward_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss of a reward model: the chosen answer should score higher."""
    return -F.logsigmoid(chosen - rejected)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """Each completion's reward minus its group's mean (completions of one prompt are consecutive), divided by the
    group's standard deviation when `scale`; a group whose rewards are all equal teaches nothing (advantage 0)."""
    grouped = rewards.view(-1, group_size)
    centred = grouped - grouped.mean(-1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(-1, keepdim=True) + 1e-4)
    return centred.reshape(-1)


def grpo_loss(logps: torch.Tensor, ref_logps: torch.Tensor | None, advantages: torch.Tensor, mask: torch.Tensor,
              beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's loss on per-token log-probabilities of sampled completions (scored where `mask`): the policy
    gradient of the advantages, plus `beta` times the k3 estimate of KL(policy || reference); averaged over all
    completion tokens of the batch. One optimizer step per sampled batch, so the PPO ratio is exp(0) = 1 in value
    and only its gradient counts (clipping would never act). Returns (loss, mean KL per token)."""
    ratio = torch.exp(logps - logps.detach())
    per_token = -ratio * advantages.unsqueeze(-1)
    kl = torch.zeros_like(logps)
    if ref_logps is not None:
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        per_token = per_token + beta * kl
    count = mask.sum().clamp(min=1)
    return (per_token * mask).sum() / count, ((kl * mask).sum() / count).detach()


def l2_distance(params: list[torch.Tensor], starts: list[torch.Tensor]) -> torch.Tensor:
    """Half the summed squared distance of the weights from their start values (the L2-SP penalty, Li et al. 2018,
    before its weight), so that its gradient is p - p_start."""
    return torch.stack([(p.float() - s.float()).pow(2).sum() for p, s in zip(params, starts)]).sum() / 2


def token_kl(start_logits: torch.Tensor, logits: torch.Tensor,
             labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(start || model) of the next-token distributions, summed over the scored positions (labels shifted by one,
    as in `token_logps`), and their number. This direction is the distillation loss of learning without forgetting
    (Li and Hoiem 2016): it keeps probability wherever the start model put it, while KL(model || start) lets the
    model drop the start model's other likely tokens at little cost, which is the forgetting to prevent."""
    mask = labels[:, 1:] != IGNORE_INDEX
    start = torch.log_softmax(start_logits[:, :-1][mask].float(), dim=-1)
    model = torch.log_softmax(logits[:, :-1][mask].float(), dim=-1)
    return (start.exp() * (start - model)).sum(), mask.sum()
