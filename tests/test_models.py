import subprocess
import sys

import pytest
import torch

from lmforge.models import PRESET_SHAPES, build_from_preset, count_parameters, load_model, pick_dtype
from lmforge.config import ModelConfig


class FakeVocab:
    """Just what build_from_preset reads from a tokenizer, at a realistic vocabulary size."""

    bos_token_id = eos_token_id = 0
    pad_token_id = 1

    def __len__(self):
        return 4096


@pytest.mark.parametrize("preset,millions", [("nano", 1), ("micro", 5), ("mini", 25)])
def test_preset_sizes(preset, millions):
    with torch.device("meta"):
        model = build_from_preset(preset, FakeVocab())
    assert 0.7 * millions <= count_parameters(model) / 1e6 <= 1.3 * millions


def test_large_presets_are_defined_without_allocating():
    with torch.device("meta"):
        sizes = {p: count_parameters(build_from_preset(p, FakeVocab())) / 1e6 for p in ("small", "0.5b")}
    assert 80 <= sizes["small"] <= 120
    assert 400 <= sizes["0.5b"] <= 600
    assert set(PRESET_SHAPES) == {"nano", "micro", "mini", "small", "0.5b"}


def test_cpu_defaults_to_float32():
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="loads local directories only"):
        load_model(ModelConfig(path=str(tmp_path / "nowhere")))


def test_only_safetensors_weights_load(tmp_path, tokenizer):
    model = build_from_preset("nano", tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "elsewhere.bin")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError):
        load_model(ModelConfig(path=str(tmp_path)))


def test_config_choices_match_what_is_implemented():
    import typing

    from lmforge.templates import BUILTIN_TEMPLATES
    from lmforge.config import Preset
    from lmforge.train.config import Template

    assert set(typing.get_args(Preset)) == set(PRESET_SHAPES)
    assert set(typing.get_args(Template)) == {"auto", *BUILTIN_TEMPLATES}


def test_training_keeps_fp32_weights_and_autocasts_to_the_requested_dtype(tokenizer_dir):
    from lmforge.models import mixed_precision

    cfg = ModelConfig(preset="nano", tokenizer=str(tokenizer_dir), dtype="bfloat16", device="cpu")
    model, _ = load_model(cfg, for_training=True)
    assert next(model.parameters()).dtype == torch.float32
    assert mixed_precision(cfg, torch.device("cpu")) == {"bf16": True, "fp16": False}
    inference, _ = load_model(cfg)
    assert next(inference.parameters()).dtype == torch.bfloat16


def test_reward_model_scores_an_answer_alike_with_and_without_padding(tokenizer):
    import torch

    from lmforge.models import build_from_preset, to_reward_model

    torch.manual_seed(0)
    reward_model = to_reward_model(build_from_preset("nano", tokenizer), tokenizer.pad_token_id).eval()
    short, long = [5, 6, 7], [5, 6, 7, 8, 9, 10]
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        alone = reward_model(input_ids=torch.tensor([short])).logits[0, 0]
        batch = reward_model(input_ids=torch.tensor([short + [pad] * 3, long]),
                             attention_mask=torch.tensor([[1] * 3 + [0] * 3, [1] * 6])).logits[:, 0]
    assert reward_model.config.pad_token_id == pad
    assert batch[0].item() == pytest.approx(alone.item(), abs=1e-5)


FAULTS = """
import resource, sys, torch
from lmforge.models import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "tuned" else None
def step():  # a training step's pattern: a few large blocks, freed at its end
    blocks = [torch.ones(n << 20) for n in (6, 2, 4, 3)]  # 24, 8, 16 and 12 MiB
    del blocks
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    runs = {mode: subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
            for mode in ("default", "tuned")}
    (_, default), (applied, tuned) = (runs[mode].stdout.split() for mode in ("default", "tuned"))
    if applied != "True":
        pytest.skip("malloc settings chosen by the environment (or not glibc)")
    assert int(tuned) * 2 < int(default)  # by default much of a step's 60 MiB comes back faulted and zeroed (about 3x)


def test_sliding_window_reads_every_way_configs_state_it():
    from transformers import Gemma2Config, LlamaConfig, MistralConfig, Qwen2Config

    from lmforge.models import sliding_window

    assert sliding_window(MistralConfig(sliding_window=4096)) == 4096
    assert sliding_window(Qwen2Config(use_sliding_window=False, sliding_window=4096)) is None
    assert sliding_window(Gemma2Config(sliding_window=512)) == 512
    assert sliding_window(LlamaConfig()) is None
