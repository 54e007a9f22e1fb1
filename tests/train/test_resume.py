"""Resume after a crash (a real SIGKILL of `lmforge train`), checkpoint completeness, and the divergence guard."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lmforge.cli import main
from lmforge.runs import Run, read_metrics
from lmforge.train.loop import COMPLETE, complete_checkpoints, resume_checkpoint

STEPS, SAVE_EVERY = 60, 10


@pytest.fixture()
def recipe_file(tmp_path, tokenizer_dir, text_file):
    """5 packed rows at batch size 2: 3 steps an epoch, so checkpoints fall mid-epoch and resume skips batches."""
    path = tmp_path / "recipe.yaml"
    path.write_text(
        f"stage: pretrain\nname: run\noutput_dir: {tmp_path / 'runs'}\n"
        f"model: {{preset: nano, tokenizer: {tokenizer_dir}}}\n"
        f"data: {{train: {text_file}, max_length: 64}}\n"
        f"train: {{max_steps: {STEPS}, lr: 3.0e-3, batch_size: 2, warmup_ratio: 0.1, logging_steps: 1, "
        f"save_steps: {SAVE_EVERY}, save_total_limit: 2}}\n"
    )
    return path


def lmforge_train(recipe_file, log_name, *overrides) -> subprocess.Popen:
    """`lmforge train` in its own process, its output in a file (a pipe nobody reads could stall it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "lmforge.cli", "train", str(recipe_file), *overrides]
    with open(recipe_file.with_name(log_name), "w") as output:
        return subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen, log_name, recipe_file) -> str:
    code = process.wait()
    output = recipe_file.with_name(log_name).read_text()
    assert code == 0, output
    return output


def kill_after_first_checkpoint(process: subprocess.Popen, partial) -> None:
    """SIGKILL once the first checkpoint is complete: mid-run, maybe mid-save of the next one."""
    marker = partial / "checkpoints" / f"checkpoint-{SAVE_EVERY}" / COMPLETE
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"


def losses_by_step(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if "loss" in r]


def checkpoint_names(run_dir) -> list[str]:
    return sorted(path.name for path in (run_dir / "checkpoints").iterdir())


def test_killed_run_resumes_to_the_same_model(recipe_file, tmp_path):
    runs = tmp_path / "runs"
    reference = lmforge_train(recipe_file, "reference.log", "name=reference")
    victim = lmforge_train(recipe_file, "victim.log")
    kill_after_first_checkpoint(victim, runs / "run.partial")
    assert (runs / "run.partial").is_dir() and not (runs / "run").exists()
    finished(reference, "reference.log", recipe_file)

    output = finished(lmforge_train(recipe_file, "resumed.log", "train.resume=auto"), "resumed.log", recipe_file)
    assert re.search(r"resuming from \S+run\.partial/checkpoints/checkpoint-\d+ \(step \d+\)", output)
    assert (runs / "run").is_dir() and not (runs / "run.partial").exists()

    expected, got = losses_by_step(runs / "reference"), losses_by_step(runs / "run")
    assert [step for step, _ in got] == list(range(1, STEPS + 1))  # steps logged before the kill are not repeated
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-4)
    before, after = load_file(runs / "reference" / "model.safetensors"), load_file(runs / "run" / "model.safetensors")
    assert all(torch.allclose(before[name], after[name], atol=1e-4) for name in before)
    kept = [f"checkpoint-{STEPS - SAVE_EVERY}", f"checkpoint-{STEPS}"]
    assert checkpoint_names(runs / "reference") == checkpoint_names(runs / "run") == kept  # save_total_limit=2


def fake_checkpoint(folder, marker=True, state=True):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    if marker:
        (folder / COMPLETE).write_text("")
    return folder


def test_only_marked_checkpoints_with_trainer_state_are_resumed(tmp_path):
    partial = tmp_path / "run.partial"
    assert resume_checkpoint("auto", partial) is None
    checkpoints = partial / "checkpoints"
    good = fake_checkpoint(checkpoints / "checkpoint-10")
    fake_checkpoint(checkpoints / "checkpoint-9")
    fake_checkpoint(checkpoints / "checkpoint-20", marker=False)  # killed while saving
    fake_checkpoint(checkpoints / "checkpoint-30", state=False)
    fake_checkpoint(checkpoints / "checkpoint-final")
    assert [path.name for path in complete_checkpoints(checkpoints)] == ["checkpoint-9", "checkpoint-10"]
    assert resume_checkpoint("auto", partial) == good
    assert resume_checkpoint("never", partial) is None
    assert resume_checkpoint(str(good), tmp_path) == good
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resume_checkpoint(str(tmp_path), partial)


def test_partial_folder_is_kept_only_to_resume_a_checkpoint_inside_it(tmp_path):
    from pydantic import BaseModel

    class Cfg(BaseModel):
        x: int = 1

    checkpoint = fake_checkpoint(tmp_path / "r.partial" / "checkpoints" / "checkpoint-2")
    run = Run(tmp_path, "r").start(Cfg(), resume_from=checkpoint)
    for step in (1, 2, 3):
        run.log_metrics({"step": step, "loss": 1.0})
    with open(run.dir / "metrics.jsonl", "a") as f:
        f.write('{"time": 1, "step": 4, "lo')  # torn by the kill
    run.rewind_metrics(2)
    assert [r["step"] for r in read_metrics(run.dir)] == [1, 2]
    elsewhere = fake_checkpoint(tmp_path / "other" / "checkpoint-5")
    Run(tmp_path, "r").start(Cfg(), resume_from=elsewhere)
    assert not (tmp_path / "r.partial" / "checkpoints").exists()


def test_resume_auto_without_a_complete_checkpoint_starts_fresh(recipe_file, tmp_path):
    partial = tmp_path / "runs" / "run.partial"
    fake_checkpoint(partial / "checkpoints" / "checkpoint-10", marker=False)
    (partial / "metrics.jsonl").write_text('{"step": 10, "loss": 9.0}\n')
    assert main(["train", str(recipe_file), "train.resume=auto", "train.max_steps=2"]) == 0
    assert [step for step, _ in losses_by_step(tmp_path / "runs" / "run")] == [1, 2]
    assert "starting fresh" in (tmp_path / "runs" / "run" / "run.log").read_text()


def test_divergence_stops_training_and_keeps_the_last_good_checkpoint(recipe_file, tmp_path, capsys):
    code = main(["train", str(recipe_file), "train.lr=1e6", "train.save_steps=1", "train.save_total_limit=20"])
    error = capsys.readouterr().err
    assert code == 2
    match = re.search(r"training diverged at step (\d+): .*(loss|grad_norm) = nan.*lower train\.lr", error)
    assert match, error
    step = int(match.group(1))
    partial = tmp_path / "runs" / "run.partial"
    assert not (tmp_path / "runs" / "run").exists()
    saved = complete_checkpoints(partial / "checkpoints")
    assert saved and [path.name for path in saved] == [f"checkpoint-{n}" for n in range(1, step)]
    weights = load_file(saved[-1] / "model.safetensors")
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())
    logged = [loss for _, loss in losses_by_step(partial)]
    assert len(logged) == step and all(math.isfinite(loss) for loss in logged[:-1])


def test_resuming_an_older_checkpoint_drops_the_newer_ones(recipe_file, tmp_path):
    """The Trainer would rewrite a newer checkpoint in place under its old COMPLETE marker."""
    assert main(["train", str(recipe_file), "name=older", "train.max_steps=20", "train.save_total_limit=20"]) == 0
    done = tmp_path / "runs" / "older"
    partial = done.rename(done.with_name("older.partial"))  # as if killed after its last checkpoint
    assert [p.name for p in complete_checkpoints(partial / "checkpoints")] == ["checkpoint-10", "checkpoint-20"]
    older, newer = partial / "checkpoints" / "checkpoint-10", partial / "checkpoints" / "checkpoint-20"
    (newer / "stale").write_text("")
    assert main(["train", str(recipe_file), "name=older", f"train.resume={older}", "train.max_steps=20",
                 "train.save_steps=100"]) == 0
    assert checkpoint_names(done) == ["checkpoint-10", "checkpoint-20"]  # the second one written anew at the end
    assert not (done / "checkpoints" / "checkpoint-20" / "stale").exists()
    assert [step for step, _ in losses_by_step(done)] == list(range(1, 21))


def test_resume_refuses_changed_settings_that_the_checkpoint_fixes(recipe_file, tmp_path, capsys):
    """The checkpoint's optimizer and scheduler state would keep the old learning rate running while config.yaml
    recorded the new one; settings it does not fix, such as max_grad_norm, change freely."""
    assert main(["train", str(recipe_file), "name=old", "train.max_steps=20"]) == 0
    done = tmp_path / "runs" / "old"
    partial = done.rename(done.with_name("old.partial"))  # as if killed after its last checkpoint
    capsys.readouterr()
    assert main(["train", str(recipe_file), "name=old", "train.max_steps=20", "train.resume=auto",
                 "train.lr=1.0e-3", "train.batch_size=4"]) == 2
    error = capsys.readouterr().err
    assert "train.lr: 0.003 -> 0.001" in error and "train.batch_size: 2 -> 4" in error, error
    assert "train.max_steps" not in error and "train.resume=never" in error
    assert yaml.safe_load((partial / "config.yaml").read_text())["train"]["lr"] == 0.003  # what ran, untouched
    assert main(["train", str(recipe_file), "name=old", "train.max_steps=20", "train.resume=auto",
                 "train.max_grad_norm=0.5"]) == 0
    config = yaml.safe_load((done / "config.yaml").read_text())
    assert config["train"]["max_grad_norm"] == 0.5 and config["train"]["lr"] == 0.003
    assert "resuming from" in (done / "run.log").read_text()
