"""Every loss against numbers worked out by hand (with `math`, not torch) on a tiny example."""

import math

import pytest
import torch

from lmforge.losses import (
    Completions, PreferenceOptions, group_advantages, grpo_loss, kto_loss, l2_distance, paired_loss,
    pairwise_reward_loss, sequence_logps, token_kl, token_logps,
)
from lmforge.templates import IGNORE_INDEX

# One pair: policy log-probs -1 (chosen, 2 tokens) and -3 (rejected, 4 tokens); reference -1.5 and -2.
CHOSEN, REJECTED = Completions(torch.tensor([-1.0]), torch.tensor([2])), Completions(torch.tensor([-3.0]), torch.tensor([4]))
REF_CHOSEN, REF_REJECTED = Completions(torch.tensor([-1.5]), torch.tensor([2])), Completions(torch.tensor([-2.0]), torch.tensor([4]))
BETA = 0.5
# log-ratios 0.5 and -1.0, so the margin is 1.5 and beta * margin = 0.75


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def loss_of(kind: str, **options) -> float:
    result = paired_loss(kind, CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, PreferenceOptions(beta=BETA, **options))
    return result.losses.item()


@pytest.mark.parametrize("kind, options, expected", [
    ("sigmoid", {}, softplus(-0.75)),
    ("sigmoid", {"label_smoothing": 0.1}, 0.9 * softplus(-0.75) + 0.1 * softplus(0.75)),
    ("robust", {"label_smoothing": 0.1}, (0.9 * softplus(-0.75) - 0.1 * softplus(0.75)) / 0.8),
    ("robust", {}, softplus(-0.75)),
    ("hinge", {}, 1 - 0.75),
    ("ipo", {}, (0.5 / 2 - (-1.0) / 4 - 1 / (2 * BETA)) ** 2),
    ("simpo", {"simpo_gamma": 0.5}, softplus(-(BETA * -1.0 / 2 - BETA * -3.0 / 4 - 0.5))),
    ("orpo", {}, BETA * softplus(-((-0.5 - math.log(1 - math.exp(-0.5))) - (-0.75 - math.log(1 - math.exp(-0.75)))))),
])
def test_paired_losses_match_hand_computed_values(kind, options, expected):
    assert loss_of(kind, **options) == pytest.approx(expected, abs=1e-6)


def test_implicit_rewards_are_beta_times_the_log_ratios():
    result = paired_loss("sigmoid", CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, PreferenceOptions(beta=BETA))
    assert result.chosen_rewards.item() == pytest.approx(0.25)
    assert result.rejected_rewards.item() == pytest.approx(-0.5)


def test_reference_free_losses_ignore_the_reference():
    for kind in ("simpo", "orpo"):
        with_ref = paired_loss(kind, CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, PreferenceOptions(beta=BETA))
        without = paired_loss(kind, CHOSEN, REJECTED, None, None, PreferenceOptions(beta=BETA))
        assert with_ref.losses.item() == without.losses.item()


def test_dpo_gradient_raises_the_chosen_and_lowers_the_rejected_answer():
    chosen = Completions(torch.tensor([-1.0], requires_grad=True), torch.tensor([2]))
    rejected = Completions(torch.tensor([-3.0], requires_grad=True), torch.tensor([4]))
    paired_loss("sigmoid", chosen, rejected, REF_CHOSEN, REF_REJECTED, PreferenceOptions(beta=BETA)).losses.sum().backward()
    sigma = 1 / (1 + math.exp(0.75))  # d/dmargin of -log sigmoid(beta * margin) is -beta * sigmoid(-beta * margin)
    assert chosen.logps.grad.item() == pytest.approx(-BETA * sigma)
    assert rejected.logps.grad.item() == pytest.approx(BETA * sigma)


def test_kto_weighs_desirable_and_undesirable_examples_around_the_reference_point():
    policy = Completions(torch.tensor([-1.0, -3.0]), torch.tensor([2, 4]))
    reference = Completions(torch.tensor([-1.5, -2.0]), torch.tensor([2, 4]))
    desirable = torch.tensor([True, False])
    result = kto_loss(policy, reference, desirable, PreferenceOptions(beta=BETA, undesirable_weight=2.0))
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # log-ratios 0.5 and -1.0; their mean is below 0, so the reference point z0 is clipped to 0
    assert result.losses.tolist() == pytest.approx([1 - sigmoid(BETA * 0.5), 2.0 * (1 - sigmoid(BETA * 1.0))])
    raised = kto_loss(Completions(torch.tensor([-1.0, -1.0]), torch.tensor([2, 4])), reference, desirable,
                      PreferenceOptions(beta=BETA))
    z0 = (0.5 + 1.0) / 2  # now positive: both log-ratios are measured from it
    assert raised.losses.tolist() == pytest.approx([1 - sigmoid(BETA * (0.5 - z0)), 1 - sigmoid(BETA * (z0 - 1.0))])


def test_pairwise_reward_loss_is_bradley_terry():
    assert pairwise_reward_loss(torch.tensor([2.0]), torch.tensor([1.0])).item() == pytest.approx(softplus(-1.0))


def test_sequence_logps_sum_only_the_labelled_next_tokens():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 1, 2]])  # the prompt's tokens carry no label
    result = sequence_logps(logits, labels)
    assert result.logps.item() == pytest.approx(math.log(0.6) + math.log(0.6))
    assert result.tokens.item() == 2
    picked, mask = token_logps(logits, labels)
    assert mask.tolist() == [[False, True, True]] and picked[0, 0].item() == 0.0


def test_group_advantages_are_relative_to_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    std = math.sqrt(4 * 0.25 / 3)  # unbiased standard deviation of (1, 0, 0, 1)
    expected = [0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 1
    advantages = group_advantages(rewards, group_size=4)
    assert advantages[:2].tolist() == pytest.approx(expected)
    assert advantages[4:].tolist() == [0.0] * 4  # all equal: nothing to learn from this group
    assert group_advantages(rewards, 4, scale=False)[:4].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_grpo_loss_is_the_advantage_weighted_likelihood_plus_the_k3_kl():
    logps = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-0.5, -2.0, -0.5], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    advantages = torch.tensor([1.0, -1.0])
    loss, kl = grpo_loss(logps, ref, advantages, mask, beta=0.1)
    k3 = math.exp(0.5) - 0.5 - 1  # the first token: reference 0.5 above the policy
    assert kl.item() == pytest.approx(k3 / 3)
    assert loss.item() == pytest.approx((-1 - 1 + 1) / 3 + 0.1 * k3 / 3)
    loss.backward()
    assert logps.grad[0, 1].item() == pytest.approx(-1 / 3)  # d(-ratio * A)/dlogp = -A, over 3 scored tokens
    assert logps.grad[1, 0].item() == pytest.approx(1 / 3)
    assert logps.grad[0, 2].item() == 0.0 and logps.grad[1, 1].item() == 0.0  # unmasked tokens get no gradient


def test_l2_distance_is_half_the_squared_distance_and_its_gradient_points_back():
    params = [torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([[3.0]], requires_grad=True)]
    starts = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    distance = l2_distance(params, starts)
    assert distance.item() == pytest.approx((1 + 4 + 4) / 2)
    distance.backward()
    assert params[0].grad.tolist() == [1.0, 2.0] and params[1].grad.tolist() == [[2.0]]  # p - p_start
    assert l2_distance(starts, starts).item() == 0


def test_token_kl_is_kl_from_the_start_model_on_scored_positions_only():
    """Two tokens: the start model says (1/2, 1/2), the model (3/4, 1/4). Only the second position is scored;
    the first, with far apart logits, must not count."""
    start = torch.tensor([[[5.0, -5.0], [0.0, 0.0], [0.0, 0.0]]])
    model = torch.tensor([[[-5.0, 5.0], [math.log(3.0), 0.0], [9.0, 0.0]]])
    labels = torch.tensor([[7, IGNORE_INDEX, 1]])
    kl, positions = token_kl(start, model, labels)
    assert positions.item() == 1
    assert kl.item() == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25), abs=1e-6)
    # the reverse direction, KL(model || start), would be 0.75 log 1.5 + 0.25 log 0.5 = 0.1308, not 0.1438
    assert token_kl(model, model, labels)[0].item() == pytest.approx(0.0, abs=1e-7)
