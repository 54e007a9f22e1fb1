import json

import pytest
import torch

from conftest import write_jsonl
from lmforge.eval.config import EvalConfig
from lmforge.eval.runner import evaluate, load_tasks
from lmforge.eval.scoring import encode_choices
from lmforge.models import load_for_inference


@pytest.fixture(scope="module")
def gsm8k(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gsm8k")
    rows = [{"question": f"Alda has {n} apples and buys 2 more. How many now?", "answer": f"{n}+2={n + 2}\n#### {n + 2}"}
            for n in range(4)]
    write_jsonl(folder / "train.jsonl", rows[:2])
    write_jsonl(folder / "test.jsonl", rows[2:])
    return folder


def naive(model, tokenizer, prompt: str, choice: str) -> float:
    request = encode_choices(tokenizer, prompt, [choice])
    ids = torch.tensor([request.context + request.continuations[0]])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), -1)
    start = len(request.context) - 1
    return sum(logprobs[start + i, t].item() for i, t in enumerate(request.continuations[0]))


def test_eval_run_scores_every_sample_consistently(nano_model_dir, tiny_world, gsm8k, tmp_path):
    tasks = [str(tiny_world / "tasks" / f"{name}.yaml") for name in ("world_mc", "world_qa", "world_arithmetic")]
    cfg = EvalConfig(model=str(nano_model_dir), tasks=[*tasks, f"gsm8k={gsm8k}"], limit=6, num_fewshot=1,
                     output_dir=str(tmp_path), name="e", max_new_tokens=8, bootstrap_iters=200)
    run = evaluate(cfg)
    assert {"results.json", "results.md", "results.png", "config.yaml"} <= {p.name for p in run.iterdir()}
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    assert set(results["tasks"]) == {"world_mc", "world_qa", "world_arithmetic", "gsm8k"}
    mc = results["tasks"]["world_mc"]
    assert mc["n"] == 6 and mc["num_fewshot"] == 1
    model, tokenizer = load_for_inference(nano_model_dir)
    for sample in mc["samples"]:
        assert sample["prediction"] == max(range(4), key=sample["scores"].__getitem__)
        assert sample["metrics"]["acc"] == float(sample["prediction"] == sample["gold"])
        assert sample["prompt"].count("Q: ") == 2 and sample["prompt"].endswith("\n\n" + sample["query"])
    first = mc["samples"][0]
    assert first["scores"] == pytest.approx([naive(model, tokenizer, first["prompt"], " " + c) for c in first["choices"]],
                                            abs=1e-4)
    assert mc["metrics"]["acc"]["value"] == pytest.approx(sum(s["metrics"]["acc"] for s in mc["samples"]) / 6)
    qa = results["tasks"]["world_qa"]
    assert qa["samples"][0]["prompt"].startswith("<|im_start|>user\n")
    for sample in qa["samples"] + results["tasks"]["gsm8k"]["samples"]:
        assert sample["output_tokens"] <= 8 and sample["finish_reason"] in {"stop", "length"}
    assert results["tasks"]["gsm8k"]["samples"][0]["prompt"].startswith("Question: Alda has 0 apples")
    assert "| world_mc | acc |" in (run / "results.md").read_text(encoding="utf-8")
    with pytest.raises(FileExistsError, match="overwrite"):
        evaluate(cfg)


def test_adapter_is_merged_for_evaluation(nano_model_dir, tiny_world, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load_for_inference(nano_model_dir)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    task = [str(tiny_world / "tasks" / "world_mc.yaml")]
    runs = {}
    for name, adapter in (("base", None), ("lora", str(tmp_path / "adapter"))):
        cfg = EvalConfig(model=str(nano_model_dir), adapter=adapter, tasks=task, limit=2, output_dir=str(tmp_path), name=name)
        runs[name] = json.loads((evaluate(cfg) / "results.json").read_text(encoding="utf-8"))["tasks"]["world_mc"]
    lora_sample = runs["lora"]["samples"][0]
    assert lora_sample["scores"] != pytest.approx(runs["base"]["samples"][0]["scores"], abs=1e-3)
    expected = [naive(lora, tokenizer, lora_sample["prompt"], " " + c) for c in lora_sample["choices"]]
    assert lora_sample["scores"] == pytest.approx(expected, abs=1e-4)


def test_task_specs_are_checked_before_any_model_loads(tmp_path):
    with pytest.raises(ValueError, match="benchmark=PATH"):
        load_tasks(["cmmlu"])
    with pytest.raises(ValueError, match="did you mean 'cmmlu'"):
        load_tasks([f"cmmlo={tmp_path}"])


def test_limit_keeps_the_first_docs_of_every_subject():
    from lmforge.eval.runner import first_of_each_subject
    from lmforge.eval.task import Doc

    docs = [Doc(f"{s}{i}", "q", 0, subject=s) for s in "ab" for i in range(3)]
    assert [d.id for d in first_of_each_subject(docs, 2)] == ["a0", "a1", "b0", "b1"]


def test_task_lists_are_checked_for_clashes_empties_and_subjects(tiny_world, tmp_path):
    qa = str(tiny_world / "tasks" / "world_qa.yaml")
    with pytest.raises(ValueError, match="two tasks are named world_qa"):
        load_tasks([qa, qa])
    (tmp_path / "test.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="no documents to evaluate"):
        load_tasks([f"gsm8k={tmp_path}"])
    [task] = load_tasks([qa], ["fact-unseen"])
    assert task.docs and {d.subject for d in task.docs} == {"fact-unseen"}
    with pytest.raises(ValueError, match="no subject fact-unknown; its subjects are fact-new-wording"):
        load_tasks([qa], ["fact-unknown"])
