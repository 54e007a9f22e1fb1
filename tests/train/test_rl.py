"""GRPO's rollout bookkeeping: which sampled tokens count, and their log-probs against a plain forward pass."""

import pytest
import torch

from lmforge.train.rl import Rollout, _completion_part, _model_inputs


def test_completion_log_probs_match_a_forward_pass_without_padding(tokenizer):
    from lmforge.models import build_from_preset

    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    pad = tokenizer.pad_token_id
    prompt_short, prompt_long, completion = [11, 12], [11, 12, 13, 14], [20, 21, 22]
    sequences = torch.tensor([[pad, pad] + prompt_short + completion, prompt_long + completion])
    attention = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    rollout = Rollout(sequences, attention, torch.ones(2, 3, dtype=torch.long), prompt_width=4,
                      rewards=torch.zeros(2))
    with torch.no_grad():
        logps = _completion_part(model(**_model_inputs(rollout)).logits, rollout)
        alone = torch.log_softmax(model(input_ids=torch.tensor([prompt_short + completion])).logits[0], -1)
    expected = [alone[1 + i, token].item() for i, token in enumerate(completion)]  # left padding changes nothing
    assert logps.shape == (2, 3)
    assert logps[0].tolist() == pytest.approx(expected, abs=1e-5)
