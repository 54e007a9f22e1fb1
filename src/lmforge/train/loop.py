"""The optimisation loop: a transformers Trainer wired to the run folder (metrics.jsonl, TensorBoard, checkpoints),
with exact resume from the newest complete checkpoint, a stop on divergence, and the `distributed:` section's
DeepSpeed or FSDP config. Under torchrun every process runs it; only the main one writes the run folder."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
import shutil
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState

from lmforge.config import read_yaml
from lmforge.models import mixed_precision, save_companions, save_model
from lmforge.runs import Run
from lmforge.sequences import Collator
from lmforge.train.anchor import Anchor, anchored
from lmforge.train.config import DistributedSection, TrainRecipe

log = logging.getLogger("lmforge.train")

COMPLETE = "COMPLETE"
_BAD_WEIGHTS = "non-finite weights"
_CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")
LAUNCH_DIR = Path(__file__).parent.parent / "launch"
SHIPPED_CONFIGS = {
    "deepspeed": {"zero2": "deepspeed_zero2.json", "zero3": "deepspeed_zero3.json"},
    "fsdp": {"fsdp": "fsdp.json"},
}


class RecordingTrainer(Trainer):
    """A Trainer whose `compute_loss` records figures with `record`: each log line carries their means since the
    last one (eval lines their means over the eval set, as eval_*)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sums: dict[str, dict[str, list[float]]] = {"train": defaultdict(lambda: [0.0, 0]),
                                                         "eval": defaultdict(lambda: [0.0, 0])}

    def record(self, **values: torch.Tensor) -> None:
        """Add each tensor's values to the running mean of its name (a tensor of one per pair, say)."""
        sums = self._sums["train" if self.model.training else "eval"]
        for name, value in values.items():
            value = value.detach().float()
            sums[name][0] += value.sum().item()
            sums[name][1] += value.numel()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode, prefix = ("eval", "eval_") if any(key.startswith("eval_") for key in logs) else ("train", "")
        sums = self._sums[mode]
        logs.update({prefix + name: total / count for name, (total, count) in self._over_processes(sums).items()
                     if count})
        sums.clear()
        super().log(logs, start_time)

    def _over_processes(self, sums: dict[str, list[float]]) -> dict[str, list[float]]:
        """The sums and counts of every process: each saw its own share of the batches. Every process logs at the
        same steps and records the same names, so they all join this all-reduce."""
        if self.accelerator.num_processes == 1 or not sums:
            return sums
        names = sorted(sums)
        local = torch.tensor([sums[name] for name in names], dtype=torch.float64, device=self.accelerator.device)
        return dict(zip(names, self.accelerator.reduce(local, reduction="sum").tolist()))


class MetricTrainer(RecordingTrainer):
    """A Trainer for stages with their own loss (rm, dpo, grpo), a batch mean, which the Trainer scales for
    grad_accum."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None


@dataclass
class StageParts:
    """What a stage plugs into `fit`: its Trainer class, the collator of its rows and the trainer's own options."""

    trainer_class: type = RecordingTrainer
    collator: Callable | None = None
    options: dict = field(default_factory=dict)


class DivergenceError(RuntimeError, ValueError):
    """Training produced a non-finite loss, gradient norm or weights. A ValueError too, so the CLI reports it."""


class RunMetrics(TrainerCallback):
    """Mirrors every Trainer log line into the run's metrics.jsonl."""

    def __init__(self, run: Run):
        self.run = run
        self.last: dict = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.last.update(logs)
            self.run.log_metrics({"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs})


class CheckpointMarker(TrainerCallback):
    """Writes COMPLETE into a checkpoint once all of it is on disk. The Trainer writes checkpoint files in place,
    so a crash mid-save leaves a folder that looks like a checkpoint; resume only trusts marked ones."""

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # other ranks may still be writing their shards and RNG states
        if args.should_save:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class DivergenceGuard(TrainerCallback):
    """Stops training at the first non-finite loss or gradient norm (logs) or non-finite weights (checked before
    each save), and cancels that step's save, so the newest checkpoint is still a good one."""

    def __init__(self):
        self.step: int | None = None
        self.signs: list[str] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save and not _weights_finite(model):
            self._stop(control, state.global_step, _BAD_WEIGHTS)

    def on_log(self, args, state, control, logs=None, **kwargs):
        watched = ("loss",) if args.fp16 else ("loss", "grad_norm")  # fp16 loss scaling skips inf-gradient steps
        for key in watched:
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                self._stop(control, state.global_step, f"{key} = {value}")

    def _stop(self, control, step: int, sign: str) -> None:
        control.should_save = False
        control.should_training_stop = True
        self.step = self.step or step
        self.signs.append(sign)

    def error(self, run: Run) -> DivergenceError:
        complete = complete_checkpoints(checkpoint_dir(run.dir))
        kept = f"its last good checkpoint is {complete[-1].name}" if complete else "it has no checkpoint yet"
        signs = sorted(self.signs, key=lambda sign: sign == _BAD_WEIGHTS)  # the logged value first: more telling
        return DivergenceError(
            f"training diverged at step {self.step}: {', '.join(signs)}. Likely causes: a learning rate too "
            "high (lower train.lr or raise train.warmup_ratio); fp16 overflow (use model.dtype=bfloat16 or float32); "
            "bad data (look for empty or very long examples). A resumed run keeps its old schedule, so after "
            f"changing the learning rate start afresh (train.resume=never). The diverged state was not saved: "
            f"{run.dir} stays for inspection, {kept}."
        )


class PeakMemory:
    """Peak memory of training, and its rise over the start: the CUDA allocator's on a GPU; on a CPU the
    process's resident set, sampled every 50 ms (what the OS had to give the run, model and optimizer state
    included)."""

    def __init__(self, device):
        self.device = device
        self.start = self.peak = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        import psutil

        self._process, self._done = psutil.Process(), threading.Event()
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    def figures(self) -> dict[str, float]:
        mib = 2**20
        return {"peak_memory_mb": round(self.peak / mib, 1), "memory_rise_mb": round((self.peak - self.start) / mib, 1)}


def _weights_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad)


def mark_complete(folder: Path) -> None:
    """Flush the checkpoint's files to disk, then the marker, so the marker never outlives what it vouches for."""
    for path in folder.rglob("*"):
        if path.is_file():
            _fsync(path)
    (folder / COMPLETE).write_text("", encoding="utf-8")
    _fsync(folder / COMPLETE)
    _fsync(folder)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def complete_checkpoints(folder: Path) -> list[Path]:
    """`checkpoint-<step>` folders with the COMPLETE marker and the trainer state, oldest first; anything else
    (a save cut short) is not a checkpoint to resume from."""
    found = [
        path for path in folder.glob("checkpoint-*")
        if _CHECKPOINT_NAME.fullmatch(path.name) and (path / COMPLETE).is_file()
        and (path / TRAINER_STATE_NAME).is_file()
    ]
    return sorted(found, key=_step_of)


def resume_checkpoint(setting: str, partial: Path) -> Path | None:
    """The checkpoint `train.resume` asks for, or None to start fresh. `auto` takes the newest complete checkpoint
    of an interrupted run (its `.partial` folder)."""
    if setting == "never":
        return None
    if setting == "auto":
        complete = complete_checkpoints(checkpoint_dir(partial))
        return complete[-1] if complete else None
    path = Path(setting)
    if not (path / TRAINER_STATE_NAME).is_file():
        raise ValueError(f"train.resume={setting}: not a checkpoint folder (it has no {TRAINER_STATE_NAME})")
    return path


# Longer or shorter runs (train.epochs, train.max_steps) resume fine: the Trainer rebuilds the schedule for them.
FIXED_BY_CHECKPOINT = (
    "train.lr", "train.scheduler", "train.warmup_ratio", "train.weight_decay", "train.batch_size",
    "train.grad_accum", "train.seed", "data.train", "data.fraction", "data.max_length", "data.packing",
    "data.replay", "data.replay_share",
)
_UNRECORDED = object()  # a key that a config.yaml written before it existed does not hold


def refuse_changed_settings(recipe: TrainRecipe, checkpoint: Path | None) -> None:
    """Refuse to resume from `checkpoint` when a key it fixes differs from the config.yaml of the run that wrote it.
    The optimizer and scheduler state bring back that run's learning rate, schedule and weight decay, and its step
    and data-loader position count batches of that run's data; the Trainer would quietly keep the old values while
    the new config.yaml recorded the new ones."""
    saved = checkpoint.parent.parent / "config.yaml" if checkpoint else None
    if saved is None or not saved.is_file():
        if checkpoint:
            log.warning("resume: no config.yaml in %s, so changed settings cannot be checked", checkpoint.parent.parent)
        return
    old, new = read_yaml(saved), recipe.model_dump(mode="json")
    changed = [f"{key}: {_setting(old, key)!r} -> {_setting(new, key)!r}" for key in FIXED_BY_CHECKPOINT
               if _setting(old, key) is not _UNRECORDED and _setting(old, key) != _setting(new, key)]
    if changed:
        raise ValueError(
            f"train.resume: {checkpoint} continues a run whose optimizer, scheduler and data position fix settings "
            f"that this recipe changes ({'; '.join(changed)}), and resuming would quietly keep the old ones. Restore "
            "them to resume, or start afresh with train.resume=never."
        )


def _setting(config: dict, dotted: str):
    """The value of a dotted key in a dumped config; _UNRECORDED if the config predates the key."""
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _UNRECORDED
        node = node[part]
    return node


def training_arguments(recipe: TrainRecipe, run: Run, has_eval: bool, device) -> TrainingArguments:
    opt = recipe.train
    return TrainingArguments(
        output_dir=str(checkpoint_dir(run.dir)),
        per_device_train_batch_size=opt.batch_size,
        per_device_eval_batch_size=opt.batch_size,
        gradient_accumulation_steps=opt.grad_accum,
        learning_rate=opt.lr,
        lr_scheduler_type=opt.scheduler,
        warmup_steps=opt.warmup_ratio,  # transformers reads a float below 1 as a share of all steps
        weight_decay=opt.weight_decay,
        max_grad_norm=opt.max_grad_norm,
        num_train_epochs=opt.epochs,
        max_steps=opt.max_steps,
        seed=opt.seed,
        data_seed=opt.seed,
        logging_steps=opt.logging_steps,
        logging_nan_inf_filter=False,  # the default hides NaN losses from the logs, and so from DivergenceGuard
        save_strategy="steps",
        save_steps=opt.save_steps,
        save_total_limit=opt.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=opt.eval_steps,
        use_cpu=device.type == "cpu",
        report_to="none",
        remove_unused_columns=False,
        **mixed_precision(recipe.model, device),
        **sharding_arguments(recipe.distributed, device),
    )


def sharding_arguments(section: DistributedSection, device) -> dict:
    """TrainingArguments for the `distributed:` section: a DeepSpeed config file, or FSDP with its fsdp_config
    file. Nothing for plain data parallelism, which the Trainer sets up from the launcher's environment."""
    if section.deepspeed:
        path = launch_config("deepspeed", section.deepspeed)
        _require_gpu("deepspeed", device)
        if importlib.util.find_spec("deepspeed") is None:
            raise ValueError("distributed.deepspeed needs DeepSpeed, which is not installed: pip install deepspeed")
        return {"deepspeed": str(path)}
    if section.fsdp:
        path = launch_config("fsdp", section.fsdp)
        _require_gpu("fsdp", device)
        return {"fsdp": True, "fsdp_config": str(path)}
    return {}


def launch_config(key: str, value: str) -> Path:
    """The file a `distributed.<key>` setting names: a shipped config (lmforge/launch/) or the user's own."""
    shipped = SHIPPED_CONFIGS[key]
    path = LAUNCH_DIR / shipped[value] if value in shipped else Path(value)
    if not path.is_file():
        raise FileNotFoundError(
            f"distributed.{key}={value}: no such file; give a JSON config file or a shipped name ({', '.join(shipped)})"
        )
    return path


def _require_gpu(key: str, device) -> None:
    """Sharding is for GPUs: DeepSpeed needs CUDA, and FSDP on CPUs would quietly train plain data-parallel."""
    if device.type == "cpu":
        raise ValueError(
            f"distributed.{key} needs CUDA GPUs, and this run is on the CPU; on CPUs leave distributed unset and "
            "train plain data-parallel (lmforge train RECIPE --nproc N)"
        )


def fit(
    model, tokenizer, recipe: TrainRecipe, run: Run, rows: list, eval_rows: list | None,
    checkpoint: Path | None = None, parts: StageParts | None = None, anchor: Anchor | None = None,
) -> dict:
    """Train in place, continuing from `checkpoint` if given, save the final model into the run folder and return
    the final metrics for the model card. `parts` plugs in a stage's own trainer (default: causal LM loss), and
    `anchor` a penalty toward the start model."""
    parts = parts or StageParts(collator=Collator(tokenizer.pad_token_id, recipe.packing))
    if anchor is not None:
        parts = StageParts(anchored(parts.trainer_class), parts.collator, {**parts.options, "anchor": anchor})
    resumed_step = _prepare_resume(recipe.train.resume, run, checkpoint)
    metrics, guard = RunMetrics(run), DivergenceGuard()
    writer = _tensorboard(run, resumed_step + 1 if checkpoint else None)
    trainer = parts.trainer_class(
        model=model,
        args=training_arguments(recipe, run, eval_rows is not None, model.device),
        train_dataset=rows,
        eval_dataset=eval_rows,
        data_collator=parts.collator,
        callbacks=[metrics, TensorBoardCallback(tb_writer=writer), CheckpointMarker(), guard],
        **parts.options,
    )
    model.config.use_cache = False  # transformers builds per-example masks for packed rows only without a cache
    try:
        with PeakMemory(model.device) as memory:
            result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        if writer is not None:
            writer.close()
    model.config.use_cache = True
    _drop_autocast_forward(model)
    if guard.step is not None:
        raise guard.error(run)
    final = {"train_loss_last": metrics.last.get("loss"), "train_loss_mean": result.training_loss}
    final["steps"] = result.global_step
    final["runtime_s"] = round(result.metrics.get("train_runtime", 0.0), 1)
    final.update(memory.figures())
    if eval_rows is not None:
        final.update(_eval_figures(trainer.evaluate()))
    save_final(trainer, model, tokenizer, run)
    return {key: value for key, value in final.items() if value is not None}


def _eval_figures(results: dict) -> dict:
    """The eval set's loss and the stage's own figures (pairwise accuracy, reward margins), without timings."""
    timings = ("eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
    return {key: value for key, value in results.items() if key.startswith("eval_") and key not in timings}


def _drop_autocast_forward(model) -> None:
    """Mixed precision training puts an autocast `forward` on the model object (accelerate); once training is over
    it would keep scoring in half precision, so the class's own forward comes back. (accelerate's unwrap_model
    would also strip the forward's transformers decorators.)"""
    if model.__dict__.pop("_original_forward", None) is not None:
        del model.forward


def _tensorboard(run: Run, purge_step: int | None):
    """The main process's TensorBoard writer (None elsewhere; the Trainer's callback skips the others)."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run.dir / "tensorboard"), purge_step=purge_step) if run.writes else None


def save_final(trainer: Trainer, model, tokenizer, run: Run) -> None:
    """Write the trained model into the run folder. Sharded weights (DeepSpeed, FSDP) are gathered by
    `Trainer.save_model`, which every process must call; otherwise the main process saves them alone."""
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        trainer.save_model(str(run.dir))
        if run.writes:
            save_companions(model, tokenizer, run.dir)
    elif run.writes:
        save_model(model, tokenizer, run.dir)


def _prepare_resume(setting: str, run: Run, checkpoint: Path | None) -> int:
    """Log where training starts and make the run folder agree with the checkpoint: metrics logged after its
    step are dropped (they will be logged again), and so are the checkpoints that a crash cut short or that come
    after it (the Trainer would rewrite those in place under their old COMPLETE marker). Returns its step."""

    if checkpoint is None:
        if setting == "auto":
            log.info("resume: no complete checkpoint in %s, starting fresh", checkpoint_dir(run.dir))
        return 0
    step = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME)).global_step
    log.info("resuming from %s (step %d)", checkpoint, step)
    run.rewind_metrics(step)
    if run.writes:
        _remove_checkpoints_not_to_keep(run, checkpoint, step)
    return step


def _remove_checkpoints_not_to_keep(run: Run, checkpoint: Path, step: int) -> None:
    complete = complete_checkpoints(checkpoint_dir(run.dir))
    keep = {path.resolve() for path in complete if _step_of(path) <= step} | {checkpoint.resolve()}
    for stale in checkpoint_dir(run.dir).glob("checkpoint-*"):
        if stale.is_dir() and stale.resolve() not in keep:
            log.info("removing checkpoint %s: incomplete, or newer than the one resumed", stale)
            shutil.rmtree(stale)


def _step_of(checkpoint: Path) -> int:
    return int(_CHECKPOINT_NAME.fullmatch(checkpoint.name).group(1))
