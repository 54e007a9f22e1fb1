import json

import pytest

from lmforge.demo import DemoConfig, run_demo
from lmforge.runs import read_metrics


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports_numbers(tmp_path):
    cfg = DemoConfig(output_dir=str(tmp_path / "demo"), world_size="tiny", preset="nano", vocab_size=600,
                     pretrain_steps=30, sft_steps=20, eval_limit=12)
    report = run_demo(cfg)
    text = report.read_text(encoding="utf-8")
    assert "| pretrain |" in text and "| sft |" in text and "world_mc_acc" in text
    for stage in ("pretrain", "sft"):
        run = report.parent / stage
        losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
        assert losses[-1] < losses[0]
        evaluation = json.loads((report.parent / f"{stage}_eval.json").read_text(encoding="utf-8"))
        assert evaluation["world_mc"]["n"] == 12 and evaluation["qa"]["n"] == 12
        assert f"({stage}/loss.png)" in text and (run / "loss.png").exists()
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_demo(cfg)
