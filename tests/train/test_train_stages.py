import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmforge.config import load
from lmforge.runs import RunExistsError, read_metrics
from lmforge.templates import encode_chat, encode_prompt
from lmforge.train import train
from lmforge.train.config import TrainRecipe


def recipe(tmp_path, overrides):
    path = tmp_path / "recipe.yaml"
    path.write_text("train: {max_steps: 30, lr: 3.0e-3, logging_steps: 5, batch_size: 4, warmup_ratio: 0.0}\n")
    return load(TrainRecipe, path, [f"output_dir={tmp_path / 'runs'}", *overrides])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tokenizer_dir, text_file):
    tmp_path = tmp_path_factory.mktemp("pretrain")
    return train(recipe(tmp_path, ["stage=pretrain", "name=pre", "model.preset=nano", f"model.tokenizer={tokenizer_dir}",
                                   f"data.train={text_file}", "data.max_length=64"]))


def logged_losses(run_dir):
    return [r["loss"] for r in read_metrics(run_dir) if "loss" in r]


def test_pretrain_lowers_the_loss_and_writes_a_complete_run(pretrained, text_file):
    losses = logged_losses(pretrained)
    assert len(losses) >= 5 and losses[-1] < 0.7 * losses[0]
    for name in ("config.yaml", "metrics.jsonl", "run.log", "README.md", "loss.png", "model.safetensors", "tokenizer.json"):
        assert (pretrained / name).exists(), name
    assert list((pretrained / "tensorboard").iterdir())
    card = (pretrained / "README.md").read_text()
    assert "pretrain" in card and str(text_file) in card and "train_loss_last" in card
    assert not pretrained.with_name("pre.partial").exists()


def test_saved_model_loads_in_plain_transformers(pretrained):
    model = AutoModelForCausalLM.from_pretrained(pretrained)
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    assert tokenizer.chat_template
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    assert model(torch.tensor([[1, 2, 3]])).logits.shape[-1] == len(tokenizer)


def test_sft_changes_parameters_and_trains_only_replies(pretrained, chat_file, tmp_path):
    sft = train(recipe(tmp_path, ["stage=sft", "name=sft", f"model.path={pretrained}", f"data.train={chat_file}",
                                  "data.max_length=64", "train.max_steps=40"]))
    before, after = load_file(pretrained / "model.safetensors"), load_file(sft / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    losses = logged_losses(sft)
    assert losses[-1] < 0.5 * losses[0]
    tokenizer = AutoTokenizer.from_pretrained(sft)
    messages = [{"role": "user", "content": "Where was Alda Vorn born?"}, {"role": "assistant", "content": "Kelmar"}]
    trained = encode_chat(tokenizer, messages, tokenizer.chat_template)
    plain = tokenizer.apply_chat_template(messages[:1], add_generation_prompt=True, tokenize=True, return_dict=True)
    assert list(plain["input_ids"]) == encode_prompt(tokenizer, messages[:1], tokenizer.chat_template)
    assert trained.input_ids[: len(plain["input_ids"])] == list(plain["input_ids"])


def test_finished_run_is_not_overwritten(tmp_path, tokenizer_dir, text_file):
    args = ["stage=pretrain", "name=once", "model.preset=nano", f"model.tokenizer={tokenizer_dir}",
            f"data.train={text_file}", "data.max_length=64", "train.max_steps=2"]
    first = train(recipe(tmp_path, args))
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(RunExistsError, match="--overwrite"):
        train(recipe(tmp_path, args))
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert train(recipe(tmp_path, args), overwrite=True) == first


def test_bad_record_stops_with_file_and_line(tmp_path, tokenizer_dir, chat_file):
    bad = tmp_path / "bad.jsonl"
    lines = chat_file.read_text().splitlines()[:3] + ['{"messages": [{"role": "bot", "content": "x"}]}']
    bad.write_text("\n".join(lines) + "\n")
    args = ["stage=sft", "name=bad", "model.preset=nano", f"model.tokenizer={tokenizer_dir}", f"data.train={bad}"]
    with pytest.raises(ValueError, match=r"bad.jsonl:4: .*'bot'"):
        train(recipe(tmp_path, args))
    assert not (tmp_path / "runs" / "bad").exists()
    skipping = train(recipe(tmp_path, [*args, "data.on_error=skip", "train.max_steps=1"]))
    logged = [r["data"] for r in read_metrics(skipping) if "data" in r]
    assert logged[0]["skipped_records"] == 1
    assert json.loads((skipping / "config.json").read_text())["vocab_size"] > 0


def test_retention_tasks_are_scored_before_and_after_training(pretrained, chat_file, tmp_path):
    from conftest import FACTS, write_jsonl
    from lmforge.eval.config import EvalConfig
    from lmforge.eval.runner import evaluate

    task = tmp_path / "facts.yaml"
    task.write_text("name: facts\ndata: facts.jsonl\nprompt: 'Q: {q} A:'\ntarget: '0'\nchoices: answers\n")
    write_jsonl(tmp_path / "facts.jsonl", [{"q": q, "answers": [a, "Brisco Works"]} for q, a in FACTS])
    sft = train(recipe(tmp_path, ["stage=sft", "name=sft", f"model.path={pretrained}", f"data.train={chat_file}",
                                  "data.max_length=64", "train.max_steps=20", f"eval.retention_tasks=[{task}]"]))
    card = (sft / "README.md").read_text(encoding="utf-8")
    assert "## Retention (before vs after training)" in card and "| facts | acc |" in card
    for label, model in (("before", pretrained), ("after", sft)):
        kept = json.loads((sft / "retention" / label / "results.json").read_text(encoding="utf-8"))
        fresh = evaluate(EvalConfig(model=str(model), tasks=[str(task)], output_dir=str(tmp_path), name=label))
        again = json.loads((fresh / "results.json").read_text(encoding="utf-8"))
        for mine, theirs in zip(kept["tasks"]["facts"]["samples"], again["tasks"]["facts"]["samples"]):
            assert mine["scores"] == pytest.approx(theirs["scores"], abs=1e-4)
    before = json.loads((sft / "retention" / "before" / "results.json").read_text(encoding="utf-8"))
    after = json.loads((sft / "retention" / "after" / "results.json").read_text(encoding="utf-8"))
    assert before["tasks"]["facts"]["samples"][0]["scores"] != after["tasks"]["facts"]["samples"][0]["scores"]
