import json

import pytest
import torch

from lmforge.demo import DemoConfig, run_demo
from lmforge.runs import read_metrics
from lmforge.world import SIZES


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports_numbers(tmp_path):
    cfg = DemoConfig(output_dir=str(tmp_path / "demo"), world_size="tiny", preset="nano", vocab_size=600,
                     pretrain_steps=30, sft_steps=20, dpo_steps=10, grpo_steps=10, eval_limit=12)
    report = run_demo(cfg)
    text = report.read_text(encoding="utf-8")
    assert "| pretrain |" in text and "| sft |" in text and "world_mc_acc" in text
    assert "| sft-lora |" in text and "## Full SFT against LoRA SFT" in text
    assert "LoRA reaches" in text and "of the parameters" in text
    sweep = json.loads((report.parent / "sweep-sft" / "sweep.json").read_text(encoding="utf-8"))
    assert [row["data.fraction"] for row in sweep] == [0.05, 0.15]
    assert [row["examples"] for row in sweep] == sorted({row["examples"] for row in sweep})
    assert "## SFT on less data" in text and "(sweep-sft/sweep.png)" in text
    assert "## Alignment: DPO, then GRPO on world facts" in text and "| win rate against sft" in text
    assert "over decided pairs" in text and "### What GRPO taught" in text and "pass@1" in text
    machine = json.loads((report.parent / "report.json").read_text(encoding="utf-8"))
    assert list(machine["stage_seconds"])[:3] == ["world and tokenizer", "pretrain", "sft"]
    assert {"sft", "sft-plain", "grpo", "eval grpo", "pass@k and training prompts before and after grpo", "serve"} <= set(
        machine["stage_seconds"])
    beside = machine["second_process_stages"]  # with two or more threads, in a second process
    assert torch.get_num_threads() < 2 or set(beside) == {
        "eval pretrain", "sft-lora", "eval sft-lora", "sft-plain", "eval sft-plain", "sweep"}
    main = [seconds for stage, seconds in machine["stage_seconds"].items() if stage not in beside]
    assert sum(main) <= machine["total_seconds"] + 1
    assert not beside or "| sft-lora | second |" in text and (report.parent / "side.log").stat().st_size > 0
    retention = {row["variant"]: row for row in machine["retention"]}
    assert list(retention) == ["sft-plain", "sft", "sft-lora"]
    assert retention["sft"]["mitigation"].startswith("replay") and retention["sft-plain"]["mitigation"] == "none"
    assert retention["sft-lora"]["mitigation"].startswith("lora adapters")
    for row in retention.values():
        low, high = row["world_mc_acc"]["ci"]
        assert low <= row["world_mc_acc"]["value"] <= high and len(row["world_mc_change"]["ci"]) == 2
    assert "## Keeping general ability" in text and "(retention.png)" in text
    assert (report.parent / "retention.png").exists()
    for gain in machine["grpo"]["gain"].values():
        assert gain["delta"] == gain["b"] - gain["a"] and gain["ci"][0] <= gain["delta"] <= gain["ci"][1]
    assert len(machine["grpo"]["gain"]) == 4
    for sampled in machine["grpo"]["pass_at_k"].values():
        assert sampled["k"] == 8 and 0 <= sampled["pass_at_1"] <= sampled["pass_at_k"] <= 1
    assert machine["stages"]["sft"]["world_mc_acc"]["n"] == 12 and machine["stages"]["sft-plain"][
        "arithmetic_exact_match"] is None
    assert "## Time of each stage" in text
    assert "repetition rate" in text and "GRPO's mean reward" in text and "(grpo/reward.png)" in text
    assert "### What alignment cost and gained" in text
    served = json.loads((report.parent / "serve.json").read_text(encoding="utf-8"))
    assert served["models"] == ["grpo"] and served["response"]["object"] == "chat.completion"
    assert "## Serving the final model" in text and served["request"]["messages"][0]["content"] in text
    assert [r["reward"] for r in read_metrics(report.parent / "grpo") if "reward" in r]
    for stage in ("pretrain", "sft", "sft-lora", "dpo", "grpo"):
        run = report.parent / stage
        losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
        assert stage == "grpo" or losses[-1] < losses[0]  # a policy-gradient loss need not fall
        results = json.loads((report.parent / f"eval-{stage}" / "results.json").read_text(encoding="utf-8"))
        scored = {"world_mc": 12, "world_qa": 3 * 12}  # the limit applies per subject
        if stage != "sft-lora":  # a comparison run, scored on the retention table's tasks
            scored["world_arithmetic"] = min(12, SIZES["tiny"].arithmetic_test)
        assert {name: task["n"] for name, task in results["tasks"].items()} == scored
        assert set(results["tasks"]["world_qa"]["subjects"]) == {"fact-seen", "fact-new-wording", "fact-unseen"}
        assert f"({stage}/loss.png)" in text and (run / "loss.png").exists()
    assert "### What SFT cost and gained" in text and "| world_mc | acc |" in text
    assert "## Error analysis" in text and "| repetition |" in text
    assert (report.parent / "pretrain-vs-sft" / "comparison.png").exists()
    assert (report.parent / "eval-sft" / "analysis.md").exists()
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_demo(cfg)
