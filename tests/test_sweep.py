import json

import pytest

from lmforge.cli import main
from lmforge.config import ConfigError
from lmforge.sweep import SweepConfig, variants


def test_variants_cover_every_combination_and_fractions_parse_from_commas():
    cfg = SweepConfig(recipe="r", data_fractions="0.5,0.1", axis=["lora.r=4,8"], tasks=["t.yaml"])
    assert cfg.data_fractions == [0.1, 0.5]
    assert variants(cfg) == [{"data.fraction": f, "lora.r": r} for f in (0.1, 0.5) for r in (4, 8)]
    with pytest.raises(ConfigError, match="key=v1,v2"):
        variants(SweepConfig(recipe="r", axis=["lora.r"], tasks=["t.yaml"]))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        SweepConfig(recipe="r", data_fractions=[0.0, 2], tasks=["t.yaml"])


def test_sweep_trains_and_evaluates_each_data_size(nano_model_dir, tiny_world, tmp_path, capsys):
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(f"stage: sft\nname: s\nmodel: {{path: {nano_model_dir}}}\n"
                      f"data: {{train: {tiny_world / 'sft_train.jsonl'}, max_length: 64}}\n"
                      "train: {max_steps: 2, batch_size: 4, logging_steps: 1}\n")
    task = str(tiny_world / "tasks" / "world_mc.yaml")
    assert main(["sweep", str(recipe), "train.lr=1e-3", "--data-fractions", "0.2,1.0", "--tasks", task, "--limit", "4",
                 "--output-dir", str(tmp_path), "--name", "sw"]) == 0
    assert "world_mc/acc" in capsys.readouterr().out
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text(encoding="utf-8"))
    assert [row["data.fraction"] for row in rows] == [0.2, 1.0]
    assert rows[0]["examples"] < rows[1]["examples"]
    assert all(0 <= row["world_mc/acc"] <= 1 for row in rows)
    assert (tmp_path / "sw" / "sweep.png").exists() and (tmp_path / "sw" / "fraction0.2" / "config.yaml").exists()


def test_unknown_metric_fails_before_any_training(tiny_world, tmp_path):
    from lmforge.sweep import run_sweep

    cfg = SweepConfig(recipe="demo-sft", tasks=[str(tiny_world / "tasks" / "world_mc.yaml")], metric="world_mc/bleu",
                      output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="--metric world_mc/bleu: the sweep measures world_mc/acc"):
        run_sweep(cfg)
    assert not list(tmp_path.iterdir())
