"""Against forgetting: replay of other data mixed into the training batches, and the anchor penalty toward the
start model (`train.anchor`), end to end on nano models and at the level of one penalty term."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainingArguments

from lmforge.config import load
from lmforge.runs import last_record, read_metrics
from lmforge.sequences import Collator
from lmforge.templates import IGNORE_INDEX
from lmforge.train import train
from lmforge.train.anchor import anchored, build_anchor
from lmforge.train.config import TrainRecipe
from lmforge.train.data import prepare
from lmforge.train.loop import RecordingTrainer
from lmforge.train.reference import start_reference

from conftest import write_jsonl


def recipe(tmp_path, overrides):
    path = tmp_path / "recipe.yaml"
    path.write_text("train: {max_steps: 20, lr: 3.0e-3, logging_steps: 1, batch_size: 4, warmup_ratio: 0.0}\n"
                    "data: {max_length: 64}\n")
    return load(TrainRecipe, path, [f"output_dir={tmp_path / 'runs'}", *overrides])


def logged(run_dir, key):
    return [record[key] for record in read_metrics(run_dir) if key in record]


def test_an_epoch_with_replay_trains_on_the_stated_share(tmp_path, nano_model_dir, chat_file, text_file, monkeypatch):
    """Every batch the Trainer collates in one epoch of packed SFT: 24 chats and round(0.25 / 0.75 * 24) = 8
    replayed texts. A text trains on every token, so within its packed segment only the first label is ignored."""
    batches, collate = [], Collator.__call__

    def kept(self, rows):
        batches.append(collate(self, rows))
        return batches[-1]

    monkeypatch.setattr(Collator, "__call__", kept)
    run = train(recipe(tmp_path, ["stage=sft", "name=replay", f"model.path={nano_model_dir}", f"data.train={chat_file}",
                                  "data.packing=true", f"data.replay={text_file}", "data.replay_share=0.25",
                                  "train.max_steps=-1", "train.epochs=1"]))
    counts = {"task": [0, 0], "replay": [0, 0]}  # examples, tokens
    for batch in batches:
        for positions, labels in zip(batch["position_ids"].tolist(), batch["labels"].tolist()):
            starts = [i for i, position in enumerate(positions) if position == 0] + [len(positions)]
            for a, b in zip(starts, starts[1:]):
                ignored = labels[a:b].count(IGNORE_INDEX)
                if ignored < b - a:  # not padding
                    kind = counts["replay" if ignored == 1 else "task"]
                    kind[0], kind[1] = kind[0] + 1, kind[1] + b - a
    stats = last_record(run, "data")
    assert counts["task"][0] == stats["examples"] == 24
    assert counts["replay"][0] == stats["replay_examples"] == 8
    assert counts["replay"][1] == stats["replay_tokens"]
    assert counts["task"][1] + counts["replay"][1] == stats["tokens"]


@pytest.fixture(scope="module")
def anchor_runs(tmp_path_factory, nano_model_dir, chat_file):
    """20 SFT steps from the nano model without an anchor and with each kind, logging every step."""
    tmp_path = tmp_path_factory.mktemp("anchor")
    common = ["stage=sft", f"model.path={nano_model_dir}", f"data.train={chat_file}", "data.packing=true"]
    return {kind: train(recipe(tmp_path, [*common, f"name={kind}", *options])) for kind, options in {
        "none": [], "l2": ["train.anchor=l2", "train.anchor_weight=1.0"], "kl": ["train.anchor=kl"],
        "kl-lora": ["train.anchor=kl", "finetuning=lora", "train.lr=1e-2"],
    }.items()}


@pytest.mark.parametrize("kind", ["none", "l2", "kl", "kl-lora"])
def test_anchored_sft_trains_and_logs_its_penalty(anchor_runs, kind):
    losses, penalties = logged(anchor_runs[kind], "loss"), logged(anchor_runs[kind], "anchor")
    assert len(losses) == 20 and losses[-1] < 0.85 * losses[0]
    if kind == "none":
        assert penalties == []
        return
    assert len(penalties) == 20
    assert penalties[0] == pytest.approx(0.0, abs=1e-6)  # the first step starts at the start model
    assert all(value > 0 for value in penalties[1:]) and penalties[-1] < losses[-1]


def squared_distance(run_dir, start_dir) -> float:
    before, after = load_file(start_dir / "model.safetensors"), load_file(run_dir / "model.safetensors")
    return sum(float((after[name] - before[name]).pow(2).sum()) for name in before)


def test_the_l2_anchor_keeps_the_weights_nearer_the_start(anchor_runs, nano_model_dir):
    free = squared_distance(anchor_runs["none"], nano_model_dir)
    anchored_distance = squared_distance(anchor_runs["l2"], nano_model_dir)
    assert anchored_distance < 0.8 * free
    final = logged(anchor_runs["l2"], "anchor")[-1]
    assert final == pytest.approx(anchored_distance / 2, rel=0.2)  # weight 1: half the squared distance


@pytest.mark.parametrize("kind", ["l2", "kl"])
def test_the_penalty_counts_once_per_step_under_gradient_accumulation(tmp_path, nano_model_dir, chat_file, kind):
    """Batches of 4 in one pass and in 2 accumulated halves: the same losses and weights (fp32 compute)."""
    common = ["stage=sft", f"model.path={nano_model_dir}", "model.dtype=float32", f"data.train={chat_file}",
              "train.max_steps=3", f"train.anchor={kind}", "train.anchor_weight=2.0"]
    whole = train(recipe(tmp_path, [*common, "name=whole"]))
    halves = train(recipe(tmp_path, [*common, "name=halves", "train.batch_size=2", "train.grad_accum=2"]))
    assert logged(halves, "loss") == pytest.approx(logged(whole, "loss"), abs=1e-4)
    assert logged(whole, "anchor")[-1] > 0.01  # big enough to tell a penalty counted twice
    a, b = load_file(whole / "model.safetensors"), load_file(halves / "model.safetensors")
    assert all(torch.allclose(a[name], b[name], atol=1e-4) for name in a)


def penalty_setup(tmp_path, nano_model_dir, chat_file, tokenizer, kind):
    """A nano model in training mode, its anchor and an anchored trainer, and a packed batch of chats."""
    settings = recipe(tmp_path, ["stage=sft", "name=x", f"model.path={nano_model_dir}", f"data.train={chat_file}",
                                 f"train.anchor={kind}", "train.anchor_weight=0.5", "data.packing=true"])
    model = AutoModelForCausalLM.from_pretrained(nano_model_dir).train()
    model.config.use_cache = False  # as `fit` sets it for packed rows
    anchor = build_anchor(settings.train, model, start_reference(settings, model, None))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    trainer = anchored(RecordingTrainer)(model=model, args=args, train_dataset=[], anchor=anchor)
    rows = prepare(settings.data.train, "sft", settings.data, tokenizer, tokenizer.chat_template, True).rows[:4]
    return model, anchor, trainer, Collator(tokenizer.pad_token_id, packed=True)(rows)


def squared_offset(params, starts) -> float:
    return sum(float((param.detach() - start).pow(2).sum()) for param, start in zip(params, starts))


def perturb(params, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in params:
            param.add_(torch.randn(param.shape, generator=generator) * 0.02)


def test_l2_penalty_is_zero_at_the_start_and_its_gradient_is_weight_times_the_offset(
        tmp_path, nano_model_dir, chat_file, tokenizer):
    model, anchor, trainer, batch = penalty_setup(tmp_path, nano_model_dir, chat_file, tokenizer, "l2")
    assert len(anchor.params) == len(list(model.parameters()))
    assert trainer._penalty(model, batch, None, None)[1].item() == 0
    perturb(anchor.params)
    term, value = trainer._penalty(model, batch, None, None)
    offsets = [param.detach() - start for param, start in zip(anchor.params, anchor.starts)]
    assert value.item() == pytest.approx(0.5 / 2 * squared_offset(anchor.params, anchor.starts), rel=1e-5)
    term.backward()
    assert all(torch.allclose(param.grad, 0.5 * offset) for param, offset in zip(anchor.params, offsets))


def test_kl_penalty_is_zero_at_the_start_and_a_step_on_it_moves_back(tmp_path, nano_model_dir, chat_file, tokenizer):
    model, anchor, trainer, batch = penalty_setup(tmp_path, nano_model_dir, chat_file, tokenizer, "kl")
    assert anchor.reference.source == "copy" and anchor.reference.model is not model

    def penalty():
        return trainer._penalty(model, batch, model(**batch), None)

    assert penalty()[1].item() == pytest.approx(0.0, abs=1e-6)  # packed rows: the copy sees the same attention
    params = list(model.parameters())
    starts = [param.detach().clone() for param in params]
    perturb(params)
    term, before = penalty()
    assert before.item() > 1e-2
    term.backward()
    distance = squared_offset(params, starts)
    with torch.no_grad():
        for param in params:
            param.sub_(0.2 * param.grad)
    assert penalty()[1].item() < 0.85 * before.item()
    assert squared_offset(params, starts) < distance


def test_dpo_kl_anchor_uses_the_dpo_reference_and_logs_its_penalty(tmp_path, nano_model_dir):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"What is the code of item {i}?", "chosen": f"Code {i}.", "rejected": f"Code {i}. " * 3}
        for i in range(16)])
    run = train(recipe(tmp_path, ["stage=dpo", "name=dpo", f"model.path={nano_model_dir}", f"data.train={pairs}",
                                  "data.max_length=96", "train.max_steps=6", "train.anchor=kl"]))
    penalties = logged(run, "anchor")
    assert len(penalties) == 6 and penalties[0] == pytest.approx(0.0, abs=1e-6) and penalties[-1] > 0
    log = (run / "run.log").read_text()
    assert "reference: a frozen copy of the start model" in log and "anchor: a frozen copy" not in log


def test_anchor_settings_that_cannot_apply_are_refused(tmp_path):
    base = ["name=x", f"model.path={tmp_path}", "data.train=x.jsonl"]
    with pytest.raises(ValueError, match="stage grpo does not train; use grpo.beta"):
        recipe(tmp_path, [*base, "stage=grpo", "train.anchor=kl"])
    with pytest.raises(ValueError, match="stage rm does not train; use train.anchor: l2"):
        recipe(tmp_path, [*base, "stage=rm", "train.anchor=kl"])
    with pytest.raises(ValueError, match="sharded parameters"):
        recipe(tmp_path, [*base, "stage=sft", "train.anchor=l2", "distributed.fsdp=fsdp"])
    with pytest.raises(ValueError, match="greater than 0"):
        recipe(tmp_path, [*base, "stage=sft", "train.anchor=l2", "train.anchor_weight=0"])


@pytest.mark.parametrize("stage", ["rm", "grpo"])
def test_l2_anchor_works_in_the_other_stages(tmp_path, nano_model_dir, stage):
    from conftest import FACTS

    records = ([{"prompt": q, "answer": a} for q, a in FACTS] if stage == "grpo"
               else [{"prompt": q, "chosen": a, "rejected": a + " " + a} for q, a in FACTS])
    data = write_jsonl(tmp_path / "data.jsonl", records)
    run = train(recipe(tmp_path, [f"stage={stage}", "name=run", f"model.path={nano_model_dir}", f"data.train={data}",
                                  "train.max_steps=3", "train.anchor=l2", "grpo.group_size=4",
                                  "grpo.max_new_tokens=8", 'grpo.rewards=[{"name": "length_penalty", '
                                  '"options": {"max_chars": 8}}]']))  # random replies earn different rewards
    penalties = logged(run, "anchor")
    assert len(penalties) == 3 and penalties[0] == 0 and penalties[-1] > 0
