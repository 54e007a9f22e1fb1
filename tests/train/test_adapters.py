import json

import pytest
import torch
from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from lmforge.models import count_parameters, save_model
from lmforge.train.adapters import apply_finetuning, default_target_modules, quantization_kwargs, trainable_summary
from lmforge.train.config import TrainRecipe

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LLAMA_LIKE = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2)
ARCHITECTURES = {
    "llama": (LlamaForCausalLM, LlamaConfig, LLAMA_LIKE),
    "qwen2": (Qwen2ForCausalLM, Qwen2Config, LLAMA_LIKE),
    "mistral": (MistralForCausalLM, MistralConfig, LLAMA_LIKE),
    "gemma": (GemmaForCausalLM, GemmaConfig, dict(LLAMA_LIKE, head_dim=16)),
    "gpt2": (GPT2LMHeadModel, GPT2Config, dict(n_embd=64, n_layer=2, n_head=4, n_positions=128)),
}
EXPECTED_TARGETS = {arch: PROJECTIONS for arch in ARCHITECTURES} | {"gpt2": ["c_attn", "c_proj", "c_fc"]}


def tiny(arch: str, vocab_size: int = 128, **shape):
    model_class, config_class, defaults = ARCHITECTURES[arch]
    torch.manual_seed(0)
    return model_class(config_class(vocab_size=vocab_size, bos_token_id=0, eos_token_id=1, pad_token_id=2,
                                    **(defaults | shape)))


def make_recipe(finetuning: str, path: str = "parent-model", **sections) -> TrainRecipe:
    return TrainRecipe.model_validate({
        "stage": "sft", "name": "t", "model": {"path": path}, "data": {"train": ["unused.jsonl"]},
        "finetuning": finetuning, **sections,
    })


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def expected_lora_parameters(model, targets: list[str], r: int) -> int:
    """r * (in + out) per adapted layer; Linear and Conv1D weights both have the shape (in, out) in some order."""
    return sum(r * sum(module.weight.shape) for name, module in model.named_modules()
               if name.rsplit(".", 1)[-1] in targets and hasattr(module, "weight"))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_targets_are_the_block_projections(arch):
    assert default_target_modules(tiny(arch)) == EXPECTED_TARGETS[arch]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_lora_trains_exactly_r_times_in_plus_out_per_target(arch):
    model = tiny(arch)
    expected = expected_lora_parameters(model, EXPECTED_TARGETS[arch], r=4)
    wrapped = apply_finetuning(model, make_recipe("lora", lora={"r": 4}))
    assert count_parameters(wrapped, trainable_only=True) == expected
    assert all("lora_" in name for name in trainable_names(wrapped))


def test_lora_share_is_small_on_a_realistic_shape():
    wrapped = apply_finetuning(tiny("llama", 400, hidden_size=256, intermediate_size=688, num_attention_heads=8,
                                    num_key_value_heads=8), make_recipe("lora"))
    share = count_parameters(wrapped, trainable_only=True) / count_parameters(wrapped)
    assert share < 0.10
    assert trainable_summary(wrapped).startswith(f"trainable {count_parameters(wrapped, trainable_only=True):,} of ")


def test_dora_adds_one_magnitude_per_output_feature():
    model = tiny("llama")
    linears = [m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in PROJECTIONS]
    expected = expected_lora_parameters(model, PROJECTIONS, r=8) + sum(m.out_features for m in linears)
    wrapped = apply_finetuning(model, make_recipe("dora"))
    assert count_parameters(wrapped, trainable_only=True) == expected
    assert any("lora_magnitude_vector" in name for name in trainable_names(wrapped))


def test_explicit_targets_override_and_unknown_ones_list_the_choices():
    wrapped = apply_finetuning(tiny("llama"), make_recipe("lora", lora={"target_modules": ["q_proj", "v_proj"]}))
    assert sorted(wrapped.peft_config["default"].target_modules) == ["q_proj", "v_proj"]
    with pytest.raises(ValueError, match=r"\['query'\] match no layer; this model has: .*q_proj.*lm_head"):
        apply_finetuning(tiny("llama"), make_recipe("lora", lora={"target_modules": ["q_proj", "query"]}))


def test_full_leaves_the_model_untouched():
    model = tiny("llama")
    assert apply_finetuning(model, make_recipe("full")) is model
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


def test_freeze_trains_the_last_blocks_and_named_modules():
    model = apply_finetuning(tiny("llama", num_hidden_layers=3),
                             make_recipe("freeze", freeze={"trainable_layers": 2, "trainable_modules": ["model.norm"]}))
    expected = {name for name, _ in model.named_parameters()
                if name.startswith(("model.layers.1.", "model.layers.2.")) or name == "model.norm.weight"}
    assert trainable_names(model) == expected
    gpt2 = apply_finetuning(tiny("gpt2"), make_recipe("freeze", freeze={"trainable_layers": 1}))
    assert trainable_names(gpt2) == {name for name, _ in gpt2.named_parameters() if name.startswith("transformer.h.1.")}


@pytest.mark.parametrize("freeze, message", [
    ({"trainable_layers": 3}, "has 2 blocks"),
    ({"trainable_modules": ["nothing_like_this"]}, "no module name contains 'nothing_like_this'"),
    ({"trainable_layers": 0}, "nothing to train"),
])
def test_freeze_rejects_impossible_settings(freeze, message):
    with pytest.raises(ValueError, match=message):
        apply_finetuning(tiny("llama"), make_recipe("freeze", freeze=freeze))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_qlora_refuses_clearly_without_cuda():
    recipe = make_recipe("qlora")
    with pytest.raises(ValueError, match="qlora needs a CUDA GPU and bitsandbytes; use finetuning: lora"):
        quantization_kwargs(recipe)
    with pytest.raises(ValueError, match="qlora needs a CUDA GPU"):
        apply_finetuning(tiny("llama"), recipe)
    assert quantization_kwargs(make_recipe("lora")) == {}


def test_lora_on_a_preset_is_refused_when_the_recipe_is_read(tokenizer_dir):
    from lmforge.config import ConfigError, build

    recipe = {"stage": "sft", "name": "t", "model": {"preset": "nano", "tokenizer": str(tokenizer_dir)},
              "data": {"train": ["unused.jsonl"]}, "finetuning": "lora"}
    with pytest.raises(ConfigError, match="finetuning: lora needs a pretrained model.path"):
        build(TrainRecipe, recipe, "recipe.yaml")


def test_saved_adapter_loads_in_plain_peft_with_identical_logits(tmp_path, tokenizer):
    base = tmp_path / "base"
    tiny("llama", len(tokenizer)).save_pretrained(base)
    model = apply_finetuning(AutoModelForCausalLM.from_pretrained(base), make_recipe("lora", path=str(base)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)  # B starts at zero: make the adapter change the outputs
    save_model(model, tokenizer, tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base.resolve())
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter")
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    with torch.no_grad():
        expected, actual = model.eval()(ids).logits, loaded.eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    assert torch.equal(actual, expected)
    assert not torch.allclose(plain, expected)


def train_nano(tmp_path, model_dir, chat_file, name, **updates):
    from lmforge.config import load
    from lmforge.train import train

    return train(load(TrainRecipe, updates={
        "stage": "sft", "name": name, "output_dir": str(tmp_path / "runs"), "model.path": str(model_dir),
        "data.train": str(chat_file), "data.max_length": 64, "train.max_steps": 25, "train.lr": 1e-2,
        "train.batch_size": 4, "train.logging_steps": 5, "train.warmup_ratio": 0.0, **updates,
    }))


def test_lora_run_is_a_peft_adapter_that_lmforge_and_plain_peft_load_alike(nano_model_dir, chat_file, tmp_path):
    from lmforge.models import load_for_inference
    from lmforge.runs import read_metrics

    run = train_nano(tmp_path, nano_model_dir, chat_file, "lora", finetuning="lora",
                     **{"lora.r": 4, "lora.trainable_tokens": ["<|im_end|>"]})
    saved = {p.name for p in run.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "generation_config.json"} <= saved
    assert not (run / "model.safetensors").exists()
    losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert losses[-1] < 0.85 * losses[0]
    counts = next(r["parameters"] for r in read_metrics(run) if "parameters" in r)
    base = AutoModelForCausalLM.from_pretrained(nano_model_dir)
    assert counts["trainable"] == expected_lora_parameters(base, PROJECTIONS, r=4) + base.config.hidden_size
    assert counts["total"] == count_parameters(base) + counts["trainable"] and counts["trainable_share"] < 0.1
    assert f"trainable {counts['trainable']:,} of {counts['total']:,} parameters" in (run / "run.log").read_text()
    assert "lora (r=4, alpha=16" in (run / "README.md").read_text()
    plain = PeftModel.from_pretrained(base, run).eval()
    merged, tokenizer = load_for_inference(run, device="cpu")
    ids = torch.tensor([[3, 14, 15, 92, 65, 35]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, plain(ids).logits, atol=1e-4, rtol=0)
        assert not torch.allclose(AutoModelForCausalLM.from_pretrained(nano_model_dir)(ids).logits,
                                  plain(ids).logits, atol=1e-3)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in merged.generation_config.eos_token_id


def test_freeze_run_changes_only_the_trainable_blocks(nano_model_dir, chat_file, tmp_path):
    from safetensors.torch import load_file

    run = train_nano(tmp_path, nano_model_dir, chat_file, "freeze", finetuning="freeze",
                     **{"freeze.trainable_layers": 1})
    before, after = load_file(nano_model_dir / "model.safetensors"), load_file(run / "model.safetensors")
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(name.startswith("model.layers.1.") for name in changed)
    assert "freeze (last 1 blocks trainable" in (run / "README.md").read_text()


def test_trainable_tokens_add_one_embedding_row_each(tokenizer):
    model = tiny("llama", len(tokenizer))
    markers = ["<|im_start|>", "<|im_end|>"]
    expected = expected_lora_parameters(model, PROJECTIONS, r=8) + len(markers) * model.config.hidden_size
    wrapped = apply_finetuning(model, make_recipe("lora", lora={"trainable_tokens": markers}), tokenizer)
    assert count_parameters(wrapped, trainable_only=True) == expected
    with pytest.raises(ValueError, match=r"\['<\|nope\|>'\] are not tokens"):
        apply_finetuning(tiny("llama", len(tokenizer)), make_recipe("lora", lora={"trainable_tokens": ["<|nope|>"]}),
                         tokenizer)


def test_lora_on_a_tied_embedding_trains_one_matrix_and_merges_it_once(tmp_path):
    from lmforge.models import merge_adapter

    base = tmp_path / "base"
    tiny("llama", tie_word_embeddings=True).save_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    targets = ["q_proj", "embed_tokens"]
    wrapped = apply_finetuning(model, make_recipe("lora", path=str(base), lora={"r": 4, "target_modules": targets}))
    head, embedding = wrapped.get_base_model().lm_head, wrapped.get_base_model().model.embed_tokens
    assert head.lora_B["default"].weight.data_ptr() == embedding.lora_embedding_A["default"].data_ptr()
    tied_adapter = 4 * (128 + 64)  # one A (r x vocab) and one B (hidden x r), counted once
    expected = expected_lora_parameters(tiny("llama"), ["q_proj"], 4) + tied_adapter
    assert count_parameters(wrapped, trainable_only=True) == expected
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        wrapped(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    wrapped.eval().save_pretrained(tmp_path / "adapter")
    merged = merge_adapter(AutoModelForCausalLM.from_pretrained(base), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, wrapped(ids).logits, atol=1e-4, rtol=0)
    assert merged.lm_head.weight is merged.model.embed_tokens.weight


def test_adapter_folders_naming_each_other_as_base_fail_clearly(tmp_path, tokenizer_dir):
    from lmforge.models import load_model
    from lmforge.config import ModelConfig

    for name, other in (("a", "b"), ("b", "a")):
        (tmp_path / name).mkdir()
        config = {"base_model_name_or_path": str(tmp_path / other)}
        (tmp_path / name / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="name each other as their base in a circle"):
        load_model(ModelConfig(path=str(tmp_path / "a"), tokenizer=str(tokenizer_dir)))


def test_adapter_run_may_not_replace_the_folder_it_starts_from(tmp_path, chat_file):
    with pytest.raises(ValueError, match="this run's own folder"):
        train_nano(tmp_path, tmp_path / "runs" / "itself", chat_file, "itself", finetuning="lora")
    assert not (tmp_path / "runs").exists()
