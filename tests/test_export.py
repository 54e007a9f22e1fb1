import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.export import ExportConfig, export
from lmforge.models import load_model, save_model, set_stop_tokens
from lmforge.runs import RunExistsError, sha256_file
from lmforge.train.adapters import apply_finetuning
from lmforge.train.config import TrainRecipe

IDS = torch.tensor([[5, 17, 42, 99, 3, 250, 8]])


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, nano_model_dir):
    """A LoRA run folder on the nano model, saved the way train() saves one; returns (folder, its logits on IDS)."""
    recipe = TrainRecipe.model_validate({
        "stage": "sft", "name": "lora", "model": {"path": str(nano_model_dir)}, "data": {"train": ["unused.jsonl"]},
        "finetuning": "lora",
    })
    model, tokenizer = load_model(recipe.model)
    set_stop_tokens(model, tokenizer, [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")])
    model = apply_finetuning(model, recipe)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)  # B starts at zero: make the merge change the weights
        logits = model.eval()(IDS).logits
    out = tmp_path_factory.mktemp("lora-run")
    save_model(model, tokenizer, out)
    return out, logits


def test_merged_export_matches_the_adapter_model_and_loads_in_plain_transformers(adapter, nano_model_dir, tmp_path):
    folder, expected = adapter
    out = export(ExportConfig(model=str(folder), output=str(tmp_path / "merged")))
    model = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        actual = model(IDS).logits
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=0)
    plain = AutoModelForCausalLM.from_pretrained(nano_model_dir)
    with torch.no_grad():
        assert not torch.allclose(plain(IDS).logits, expected, atol=1e-3)
    assert not any("lora" in key for key in load_file(out / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id == [tokenizer.eos_token_id, end_of_turn]
    card = (out / "README.md").read_text(encoding="utf-8")
    weights_hash = sha256_file(folder / "adapter_model.safetensors")
    for fact in (str(nano_model_dir.resolve()), str(folder.resolve()), weights_hash, "| merged dtype | float32 |"):
        assert fact in card
    assert not out.with_name("merged.partial").exists()


def test_bf16_export_writes_bf16_weights(adapter, nano_model_dir, tmp_path):
    folder, _ = adapter
    out = export(ExportConfig(model=str(nano_model_dir), adapter=str(folder), output=str(tmp_path / "bf16"),
                              dtype="bfloat16"))
    assert {tensor.dtype for tensor in load_file(out / "model.safetensors").values()} == {torch.bfloat16}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert "| merged dtype | bfloat16 |" in (out / "README.md").read_text(encoding="utf-8")


def test_existing_output_is_kept_without_overwrite(adapter, tmp_path):
    cfg = ExportConfig(model=str(adapter[0]), output=str(tmp_path / "merged"))
    first = export(cfg)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(RunExistsError, match="--overwrite"):
        export(cfg)
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert export(cfg, overwrite=True) == first


def test_missing_or_wrong_sources_fail_before_any_output(adapter, nano_model_dir, tmp_path):
    out = tmp_path / "merged"
    with pytest.raises(FileNotFoundError, match="adapter directory not found: .*nowhere"):
        export(ExportConfig(model=str(nano_model_dir), adapter=str(tmp_path / "nowhere"), output=str(out)))
    with pytest.raises(ValueError, match="is not a peft adapter folder"):
        export(ExportConfig(model=str(nano_model_dir), output=str(out)))
    moved = tmp_path / "orphan"
    moved.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (moved / name).write_bytes((adapter[0] / name).read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "org/hub-model"}))
    with pytest.raises(FileNotFoundError, match="recorded in .* is not a local directory: 'org/hub-model'"):
        export(ExportConfig(model=str(moved), output=str(out)))
    assert not out.exists() and not out.with_name("merged.partial").exists()


def test_export_command_merges_from_the_command_line(adapter, tmp_path, capsys):
    from lmforge.cli import main

    out = tmp_path / "cli-merged"
    assert main(["export", "--model", str(adapter[0]), "--output", str(out), "--dtype", "float16"]) == 0
    assert f"finished: {out}" in capsys.readouterr().out
    assert {tensor.dtype for tensor in load_file(out / "model.safetensors").values()} == {torch.float16}
    assert main(["export", "--model", str(adapter[0]), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
