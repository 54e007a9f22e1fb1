"""Data parallelism on CPU: `lmforge train --nproc 2` runs 2 gloo processes with half the per-device batch, which
must follow the loss curve of 1 process at the same global batch, while global rank 0 alone writes the run. And
the `distributed:` section's DeepSpeed/FSDP configs: how they resolve and fail (no GPU here to run them)."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainingArguments

from lmforge.cli import build_parser, torchrun_command
from lmforge.config import ConfigError, load
from lmforge.runs import read_metrics
from lmforge.train import train
from lmforge.train.config import DistributedSection, TrainRecipe
from lmforge.train.loop import COMPLETE, LAUNCH_DIR, launch_config, sharding_arguments

STEPS, SAVE_EVERY, GLOBAL_BATCH = 12, 6, 4
TOLERANCE = 1e-4  # all-reduced gradients differ from one big batch's by float rounding only (seen: ~1e-6)
CPU, GPU = torch.device("cpu"), torch.device("cuda")


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory, tokenizer_dir, chat_file):
    """SFT from scratch on 24 chats of different lengths: the token-weighted loss must average across processes
    as it does within one batch. 24 rows fill every batch, so both runs see the same examples at every step. fp32
    compute: bf16 autocast (the default on CPUs with native bf16) rounds batches of 2 and of 4 differently."""
    folder = tmp_path_factory.mktemp("distributed")
    path = folder / "recipe.yaml"
    path.write_text(
        f"stage: sft\nname: run\noutput_dir: {folder / 'runs'}\n"
        f"model: {{preset: nano, tokenizer: {tokenizer_dir}, dtype: float32}}\n"
        f"data: {{train: {chat_file}, max_length: 64}}\n"
        f"train: {{max_steps: {STEPS}, lr: 3.0e-3, warmup_ratio: 0.0, logging_steps: 1, save_steps: {SAVE_EVERY}}}\n"
    )
    return path


def launch(recipe_file, *args) -> subprocess.CompletedProcess:
    """`lmforge train ... --nproc 2`: the CLI relaunches itself as 2 torchrun workers (gloo on this CPU)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "lmforge.cli", "train", str(recipe_file), *args, "--nproc", "2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def runs(recipe_file):
    """One process at the global batch, then two at half of it each."""
    single = train(load(TrainRecipe, recipe_file, ["name=single", f"train.batch_size={GLOBAL_BATCH}"]))
    done = launch(recipe_file, "name=ddp", f"train.batch_size={GLOBAL_BATCH // 2}")
    return single, single.with_name("ddp"), done.stdout


def losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if "loss" in r]


def checkpoint_names(run_dir) -> list[str]:
    return sorted((path.name for path in (run_dir / "checkpoints").iterdir()), key=lambda name: int(name.split("-")[1]))


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one(runs):
    single, ddp, _ = runs
    expected, got = losses(single), losses(ddp)
    assert [step for step, _ in got] == [step for step, _ in expected] == list(range(1, STEPS + 1))
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=TOLERANCE)


@pytest.mark.slow
def test_only_rank_0_writes_the_run_folder_and_publishes_it_once(runs):
    _, ddp, stdout = runs
    assert stdout.count("finished: ") == 1 and f"finished: {ddp}" in stdout
    records = read_metrics(ddp)
    assert sum("data" in r for r in records) == sum("parameters" in r for r in records) == 1
    for name in ("config.yaml", "run.log", "README.md", "loss.png", "model.safetensors", "tokenizer.json"):
        assert (ddp / name).is_file(), name
    assert list((ddp / "tensorboard").iterdir())
    assert checkpoint_names(ddp) == [f"checkpoint-{SAVE_EVERY}", f"checkpoint-{STEPS}"]
    for checkpoint in (ddp / "checkpoints").iterdir():  # every rank's RNG state, marked complete after all of them
        assert (checkpoint / COMPLETE).is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert not [path for path in ddp.parent.iterdir() if path.name.startswith("ddp.")]  # no .partial left behind
    assert AutoModelForCausalLM.from_pretrained(ddp).num_parameters() > 0


@pytest.mark.slow
def test_interrupted_two_process_run_resumes_to_the_same_curve(runs, recipe_file):
    """An interrupted run as a crash leaves it: a complete checkpoint, one cut short (no marker), metrics beyond."""
    _, ddp, _ = runs
    partial = ddp.with_name("resumed.partial")
    shutil.copytree(ddp, partial)
    (partial / "checkpoints" / f"checkpoint-{STEPS}" / COMPLETE).unlink()
    launch(recipe_file, "name=resumed", f"train.batch_size={GLOBAL_BATCH // 2}", "train.resume=auto")
    resumed = ddp.with_name("resumed")
    log = (resumed / "run.log").read_text()
    assert f"resuming from {partial}/checkpoints/checkpoint-{SAVE_EVERY}" in log
    assert f"removing checkpoint {partial}/checkpoints/checkpoint-{STEPS}: incomplete" in log
    expected, got = losses(ddp), losses(resumed)
    assert [step for step, _ in got] == list(range(1, STEPS + 1))  # steps logged after the checkpoint: not twice
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=1e-6)
    assert checkpoint_names(resumed) == checkpoint_names(ddp)
    assert not partial.exists()


def test_torchrun_relaunch_keeps_every_argument():
    args = build_parser().parse_args(["-v", "train", "r.yaml", "train.lr=1e-4", "--nproc", "2", "--overwrite"])
    assert torchrun_command(args) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "lmforge.cli", "--verbose", "train", "r.yaml", "train.lr=1e-4", "--overwrite",
    ]


def test_nproc_must_be_positive_and_not_nested(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "r.yaml", "--nproc", "0"])
    assert "at least 1" in capsys.readouterr().err
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="leave it out"):
        torchrun_command(build_parser().parse_args(["train", "r.yaml", "--nproc", "2"]))


@pytest.mark.parametrize(
    "key, name, stage", [("deepspeed", "zero2", 2), ("deepspeed", "zero3", 3), ("fsdp", "fsdp", None)]
)
def test_shipped_config_names_resolve_to_the_package_files(key, name, stage):
    path = launch_config(key, name)
    assert path.parent == LAUNCH_DIR and path.is_file()
    config = json.loads(path.read_text())
    assert config.get("zero_optimization", {}).get("stage") == stage


def test_own_config_files_are_used_and_missing_ones_named(tmp_path):
    own = tmp_path / "ds.json"
    own.write_text("{}")
    assert launch_config("deepspeed", str(own)) == own
    with pytest.raises(FileNotFoundError, match=r"distributed\.deepspeed=nope\.json: no such file.*zero2, zero3"):
        sharding_arguments(DistributedSection(deepspeed="nope.json"), GPU)
    with pytest.raises(FileNotFoundError, match=r"distributed\.fsdp=zero2: no such file.*\(fsdp\)"):
        sharding_arguments(DistributedSection(fsdp="zero2"), GPU)


@pytest.mark.parametrize("section", [DistributedSection(deepspeed="zero2"), DistributedSection(fsdp="fsdp")])
def test_sharding_on_the_cpu_is_refused(section):
    with pytest.raises(ValueError, match=r"distributed\.(deepspeed|fsdp) needs CUDA GPUs.*--nproc"):
        sharding_arguments(section, CPU)


def test_deepspeed_without_the_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(ValueError, match="pip install deepspeed"):
        sharding_arguments(DistributedSection(deepspeed="zero3"), GPU)


def test_fsdp_config_is_read_by_the_trainer_and_plain_ddp_needs_no_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")  # TrainingArguments sets it; restored after
    assert sharding_arguments(DistributedSection(), CPU) == {}
    extra = sharding_arguments(DistributedSection(fsdp="fsdp"), GPU)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **extra)
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"


def test_deepspeed_and_fsdp_together_are_a_config_error(recipe_file):
    with pytest.raises(ConfigError, match="at most one of distributed.deepspeed or distributed.fsdp"):
        load(TrainRecipe, recipe_file, ["distributed.deepspeed=zero2", "distributed.fsdp=fsdp"])


@pytest.mark.slow
def test_dpo_figures_are_averaged_over_every_process(tmp_path, nano_model_dir):
    """Accuracy and reward margins come from each process's share of the pairs; the log must hold their mean over
    all of them, as one process with the whole batch would log it."""
    from conftest import write_jsonl

    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"Item {i}?", "chosen": f"Code {i}.", "rejected": " ".join([f"Code {i}."] * (2 + i % 3))}
        for i in range(32)])
    path = tmp_path / "dpo.yaml"
    path.write_text(f"stage: dpo\nname: run\noutput_dir: {tmp_path / 'runs'}\n"
                    f"model: {{path: {nano_model_dir}, dtype: float32}}\n"
                    f"data: {{train: {pairs}, max_length: 64}}\n"
                    "train: {max_steps: 4, lr: 1.0e-3, warmup_ratio: 0.0, logging_steps: 1, save_steps: 100}\n")
    single = train(load(TrainRecipe, path, ["name=single", "train.batch_size=8"]))
    launch(path, "name=ddp", "train.batch_size=4")
    for key in ("loss", "accuracy", "margin", "rewards_rejected"):
        expected = [r[key] for r in read_metrics(single) if key in r and "step" in r]
        got = [r[key] for r in read_metrics(single.with_name("ddp")) if key in r and "step" in r]
        assert len(got) == len(expected) >= 4 and got == pytest.approx(expected, abs=TOLERANCE), key


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["l2", "kl"])
def test_anchored_two_process_run_follows_one_process(recipe_file, kind):
    """The anchor penalty counts once per step over all processes: the KL on each process's tokens is normalised
    by the token count of all of them, as the causal LM loss is; the L2 term is the same everywhere."""
    anchor = [f"train.anchor={kind}", "train.anchor_weight=2.0", "train.max_steps=4", "train.save_steps=100"]
    single = train(load(TrainRecipe, recipe_file, [f"name=single-{kind}", f"train.batch_size={GLOBAL_BATCH}", *anchor]))
    launch(recipe_file, f"name=ddp-{kind}", f"train.batch_size={GLOBAL_BATCH // 2}", *anchor)
    expected, got = losses(single), losses(single.with_name(f"ddp-{kind}"))
    assert [step for step, _ in got] == [1, 2, 3, 4]
    assert [loss for _, loss in got] == pytest.approx([loss for _, loss in expected], abs=TOLERANCE)
    assert [r["anchor"] for r in read_metrics(single) if "anchor" in r][-1] > 0.01
