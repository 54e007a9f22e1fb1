"""GRPO's rollout bookkeeping: which sampled tokens count, and their log-probs against a plain forward pass."""

import pytest
import torch

from lmforge.train.rl import Rollout, _completion_part, _model_inputs


def test_completion_log_probs_match_a_forward_pass_without_padding(tokenizer):
    from lmforge.models import build_from_preset

    torch.manual_seed(0)
    model = build_from_preset("nano", tokenizer).eval()
    pad = tokenizer.pad_token_id
    prompts, completions = ([11, 12], [11, 12, 13, 14]), ([20, 21, 22], [23, 24])  # row 1 ends a token early
    sequences = torch.tensor([[pad, pad] + prompts[0] + completions[0], prompts[1] + completions[1] + [pad]])
    attention = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0]])
    completion_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rollout = Rollout(sequences, attention, completion_mask, prompt_width=4, rewards=torch.zeros(2))
    with torch.no_grad():
        logps = _completion_part(model(**_model_inputs(rollout)).logits, rollout)
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            alone = torch.log_softmax(model(input_ids=torch.tensor([prompt + completion])).logits[0], -1)
            expected = [alone[len(prompt) - 1 + i, token].item() for i, token in enumerate(completion)]
            assert logps[row, : len(completion)].tolist() == pytest.approx(expected, abs=1e-5)  # padding changes nothing
    assert logps.shape == (2, 3) and logps[1, 2] == 0  # a padded completion position scores nothing
