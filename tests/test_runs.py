import hashlib

import pytest
from pydantic import BaseModel

from lmforge.runs import Run, RunExistsError, model_card, read_metrics


class Cfg(BaseModel):
    x: int = 1


def test_run_is_visible_only_when_finished(tmp_path):
    run = Run(tmp_path, "r").start(Cfg())
    run.log_metrics({"step": 1, "loss": 2.5})
    assert not (tmp_path / "r").exists() and (tmp_path / "r.partial" / "config.yaml").exists()
    final = run.finish()
    assert final == tmp_path / "r" and not (tmp_path / "r.partial").exists()
    assert read_metrics(final)[0]["loss"] == 2.5


def test_crashed_attempt_is_replaced_but_finished_run_is_kept(tmp_path):
    Run(tmp_path, "r").start(Cfg())
    Run(tmp_path, "r").start(Cfg(x=2)).finish()
    assert "x: 2" in (tmp_path / "r" / "config.yaml").read_text()
    with pytest.raises(RunExistsError):
        Run(tmp_path, "r").start(Cfg())
    Run(tmp_path, "r", overwrite=True).start(Cfg(x=3)).finish()
    assert "x: 3" in (tmp_path / "r" / "config.yaml").read_text()


def test_model_card_lists_data_hashes(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n')
    card = model_card("sft", "runs/pre", [data], {"loss": 1.23456}, "chatml")
    assert hashlib.sha256(data.read_bytes()).hexdigest() in card
    assert "| loss | 1.235 |" in card and "runs/pre" in card
