"""The rm, dpo and grpo stages end to end on nano models: they learn what their data asks, and the reference
model is what the recipe says."""

import gc
import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, GenerationMixin, PreTrainedModel

from lmforge.config import load
from lmforge.runs import last_record, read_metrics
from lmforge.train import train
from lmforge.train.config import TrainRecipe

from conftest import FACTS, write_jsonl


def recipe(tmp_path, overrides):
    path = tmp_path / "recipe.yaml"
    path.write_text("train: {max_steps: 30, lr: 3.0e-3, logging_steps: 5, batch_size: 8, warmup_ratio: 0.0}\n"
                    "data: {max_length: 96}\n")
    return load(TrainRecipe, path, [f"output_dir={tmp_path / 'runs'}", *overrides])


def separable_pairs(indices) -> list[dict]:
    """Concise answers preferred to the same answer looped: a rule a reward model can learn from a few pairs."""
    return [{"prompt": f"What is the code of item {i}?", "chosen": f"Code {i * 7 % 100}.",
             "rejected": " ".join([f"Code {i * 7 % 100}."] * (3 + i % 4))} for i in indices]


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pairs")
    return write_jsonl(folder / "train.jsonl", separable_pairs(range(48))), \
        write_jsonl(folder / "heldout.jsonl", separable_pairs(range(100, 120)))


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory, nano_model_dir, chat_file):
    tmp_path = tmp_path_factory.mktemp("sft")
    return train(recipe(tmp_path, ["stage=sft", "name=sft", f"model.path={nano_model_dir}",
                                   f"data.train={chat_file}", "train.max_steps=60"]))


def logged(run_dir, key):
    return [record[key] for record in read_metrics(run_dir) if key in record]


def test_reward_model_learns_to_rank_held_out_pairs(tmp_path, nano_model_dir, pair_files):
    train_file, heldout = pair_files
    run = train(recipe(tmp_path, ["stage=rm", "name=rm", f"model.path={nano_model_dir}", f"data.train={train_file}",
                                  f"data.eval={heldout}", "train.max_steps=40", "train.eval_steps=20"]))
    final = last_record(run, "final")
    assert final["eval_accuracy"] >= 0.9
    model = AutoModelForSequenceClassification.from_pretrained(run)  # plain transformers loads it
    assert model.config.num_labels == 1 and not (run / "generation_config.json").exists()
    from lmforge.cli import main

    out = tmp_path / "scores.jsonl"
    assert main(["score", "--rm", str(run), "--data", str(heldout), "--output", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    accuracy = sum(r["chosen_score"] > r["rejected_score"] for r in scored) / len(scored)
    assert accuracy == pytest.approx(final["eval_accuracy"])
    assert main(["score", "--rm", str(run), "--data", str(heldout), "--output", str(out)]) == 2  # no overwrite


def test_lora_reward_model_scores_the_same_through_lmforge_score(tmp_path, nano_model_dir, pair_files):
    from lmforge.score import RewardScorer

    train_file, heldout = pair_files
    run = train(recipe(tmp_path, ["stage=rm", "name=rm-lora", f"model.path={nano_model_dir}", "finetuning=lora",
                                  f"data.train={train_file}", "train.max_steps=40"]))
    scorer = RewardScorer(str(run))
    pairs = separable_pairs(range(100, 120))
    prompts = [[{"role": "user", "content": p["prompt"]}] for p in pairs]
    chosen, rejected = scorer.score(prompts, [p["chosen"] for p in pairs]), scorer.score(prompts, [p["rejected"] for p in pairs])
    assert sum(c > r for c, r in zip(chosen, rejected)) / len(pairs) >= 0.9


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo", "kto"])
def test_dpo_losses_prefer_the_chosen_answers(tmp_path, sft_model, pair_files, loss):
    train_file, _ = pair_files
    run = train(recipe(tmp_path, ["stage=dpo", "name=dpo", f"model.path={sft_model}", f"data.train={train_file}",
                                  f"dpo.loss={loss}", "train.lr=1e-3", "train.max_steps=20"]))
    losses = logged(run, "loss")
    assert losses[-1] < losses[0]
    chosen, rejected = logged(run, "rewards_chosen"), logged(run, "rewards_rejected")
    assert chosen[-1] - rejected[-1] > chosen[0] - rejected[0]
    if loss != "kto":
        assert logged(run, "accuracy")[-1] >= 0.9


def test_precomputed_reference_gives_the_same_training_as_a_copy(tmp_path, sft_model, pair_files):
    train_file, heldout = pair_files
    curves = {}
    for source in ("copy", "precomputed"):
        run = train(recipe(tmp_path, ["stage=dpo", f"name=dpo-{source}", f"model.path={sft_model}",
                                      f"data.train={train_file}", f"data.eval={heldout}", f"dpo.reference={source}",
                                      "train.max_steps=10", "train.logging_steps=1", "model.dtype=float32"]))
        curves[source] = logged(run, "loss") + [last_record(run, "final")["eval_loss"]]
    assert curves["copy"] == pytest.approx(curves["precomputed"], abs=1e-4)


def live_models() -> int:
    """Language models alive in this process (their inner base models, also PreTrainedModels, not counted)."""
    gc.collect()
    return sum(isinstance(obj, PreTrainedModel) and isinstance(obj, GenerationMixin) for obj in gc.get_objects())


def spy_on_dpo(monkeypatch) -> dict:
    """What the DPO trainer holds in its last training step: live models, its reference and the batch."""
    from lmforge.train.preference import DpoTrainer

    seen, original = {}, DpoTrainer.compute_loss

    def spying(self, model, inputs, *args, **kwargs):
        seen["models"], seen["reference"] = live_models(), self.reference
        model_inputs = {key: inputs[key] for key in ("input_ids", "attention_mask")}
        seen["reference_logps"] = self._reference_logps(model, model_inputs, inputs, None).logps
        seen["inputs"] = {key: value.clone() for key, value in inputs.items()}
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(DpoTrainer, "compute_loss", spying)
    return seen


@pytest.mark.parametrize("finetuning, extra_models", [("lora", 1), ("full", 2)])
def test_lora_dpo_keeps_no_second_model_and_its_reference_is_the_base(tmp_path, sft_model, pair_files, monkeypatch,
                                                                      finetuning, extra_models):
    from lmforge.losses import sequence_logps
    from lmforge.models import load_for_inference

    seen = spy_on_dpo(monkeypatch)
    before = live_models()
    train(recipe(tmp_path, ["stage=dpo", "name=dpo", f"model.path={sft_model}", f"finetuning={finetuning}",
                            f"data.train={pair_files[0]}", "train.max_steps=4", "model.dtype=float32"]))
    assert seen["models"] - before == extra_models  # LoRA: the policy alone; full: the policy and its frozen copy
    assert seen["reference"].source == ("adapter" if finetuning == "lora" else "copy")
    base, _ = load_for_inference(sft_model)
    batch = seen["inputs"]
    with torch.no_grad():
        base_logps = sequence_logps(base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                    batch["labels"]).logps
    assert seen["reference_logps"].tolist() == pytest.approx(base_logps.tolist(), abs=1e-4)  # after 3 steps


def test_grpo_raises_a_verifiable_reward(tmp_path, sft_model):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q, "answer": "Kelmar"} for q, _ in FACTS] * 4)
    run = train(recipe(tmp_path, ["stage=grpo", "name=grpo", f"model.path={sft_model}", f"data.train={prompts}",
                                  "grpo.group_size=6", "grpo.max_new_tokens=12", "train.batch_size=4",
                                  "train.max_steps=36", "train.lr=2e-3", "train.logging_steps=4"]))
    rewards = logged(run, "reward")
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.2
    assert logged(run, "kl")[-1] > logged(run, "kl")[0] and logged(run, "completion_length")  # it moved away
    before, after = load_file(sft_model / "model.safetensors"), load_file(run / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_grpo_samples_from_the_weights_being_trained(tmp_path, sft_model):
    from transformers import TrainingArguments

    from lmforge.models import load_for_inference
    from lmforge.templates import encode_prompt
    from lmforge.train.data import PromptRow
    from lmforge.train.rl import GrpoTrainer, collate_prompts, grpo_parts

    model, tokenizer = load_for_inference(sft_model, "cpu")
    settings = recipe(tmp_path, ["stage=grpo", "name=g", f"model.path={sft_model}", "data.train=x.jsonl",
                                 "grpo.group_size=4", "grpo.max_new_tokens=10"])
    parts = grpo_parts(settings, tokenizer, None, [tokenizer.eos_token_id])
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=2,
                             report_to="none")
    trainer = GrpoTrainer(model=model, args=args, train_dataset=[], data_collator=parts.collator, **parts.options)
    turns = [[{"role": "user", "content": question}] for question, _ in FACTS[:2]]
    rows = [PromptRow(encode_prompt(tokenizer, messages, tokenizer.chat_template), messages, {"answer": answer})
            for messages, (_, answer) in zip(turns, FACTS)]
    inputs = collate_prompts(rows)

    def sample():
        torch.manual_seed(0)
        return trainer._rollout(model, inputs).sequences

    first = sample()
    assert torch.equal(first, sample())  # the same seed and weights: the same completions
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(-1)  # the likeliest tokens become the least likely
    assert not torch.equal(first, sample())
    assert trainer._generator.model is model  # sampled from the very model object, no copy


def test_grpo_recipe_with_an_unknown_reward_names_the_closest(tmp_path):
    from lmforge.config import ConfigError

    args = ["stage=grpo", "name=bad", f"model.path={tmp_path}", "data.train=x.jsonl"]
    with pytest.raises(ConfigError, match="did you mean 'exact_match'"):
        recipe(tmp_path, [*args, 'grpo.rewards=[{"name": "exact_mach"}]'])
    with pytest.raises(ConfigError, match="has no option 'max_char'"):
        recipe(tmp_path, [*args, 'grpo.rewards=[{"name": "length_penalty", "options": {"max_char": 9}}]'])


def test_alignment_stages_refuse_mismatched_data_and_settings(tmp_path, sft_model, chat_file, pair_files):
    with pytest.raises(ValueError, match="stage dpo trains on preference or unpaired records"):
        train(recipe(tmp_path, ["stage=dpo", "name=x", f"model.path={sft_model}", f"data.train={chat_file}"]))
    with pytest.raises(ValueError, match="adapter needs LoRA"):
        recipe(tmp_path, ["stage=dpo", "name=x", f"model.path={sft_model}", f"data.train={pair_files[0]}",
                          "dpo.reference=adapter"])
    with pytest.raises(ValueError, match="dpo.reference_path is a model to copy"):
        recipe(tmp_path, ["stage=dpo", "name=x", f"model.path={sft_model}", f"data.train={pair_files[0]}",
                          f"dpo.reference_path={sft_model}", "dpo.reference=precomputed"])
    with pytest.raises(ValueError, match="data.packing must stay off"):
        recipe(tmp_path, ["stage=rm", "name=x", f"model.path={sft_model}", f"data.train={pair_files[0]}",
                          "data.packing=true"])
    unpaired = write_jsonl(tmp_path / "u.jsonl", [{"prompt": "q", "completion": "a", "label": True}])
    with pytest.raises(ValueError, match="need dpo.loss: kto"):
        train(recipe(tmp_path, ["stage=dpo", "name=y", f"model.path={sft_model}", f"data.train={unpaired}"]))


@pytest.mark.parametrize("stage, finetuning", [("grpo", "lora"), ("grpo", "freeze"), ("dpo", "freeze"),
                                               ("rm", "freeze")])
def test_adapters_and_freezing_work_for_every_alignment_stage(tmp_path, sft_model, pair_files, stage, finetuning):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": q, "answer": "Kelmar"} for q, _ in FACTS])
    data = prompts if stage == "grpo" else pair_files[0]
    run = train(recipe(tmp_path, [f"stage={stage}", "name=run", f"model.path={sft_model}", f"data.train={data}",
                                  f"finetuning={finetuning}", "freeze.trainable_layers=1", "grpo.group_size=4",
                                  "grpo.max_new_tokens=8", "train.batch_size=4", "train.max_steps=4",
                                  "train.logging_steps=2"]))
    counts = last_record(run, "parameters")
    assert 0 < counts["trainable"] < counts["total"]
    assert logged(run, "reward" if stage == "grpo" else "accuracy")
    saved = "adapter_model.safetensors" if finetuning == "lora" else "model.safetensors"
    assert (run / saved).is_file()
