"""The optimisation loop: a transformers Trainer wired to the run folder (metrics.jsonl, TensorBoard, checkpoints)."""

from __future__ import annotations

import logging

from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback

from lmforge.models import mixed_precision
from lmforge.runs import Run
from lmforge.sequences import Collator, Row
from lmforge.train.config import TrainRecipe

log = logging.getLogger("lmforge.train")


class RunMetrics(TrainerCallback):
    """Mirrors every Trainer log line into the run's metrics.jsonl."""

    def __init__(self, run: Run):
        self.run = run
        self.last: dict = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.last.update(logs)
            self.run.log_metrics({"step": state.global_step, "epoch": round(state.epoch or 0, 4), **logs})


def training_arguments(recipe: TrainRecipe, run: Run, has_eval: bool, device) -> TrainingArguments:
    opt = recipe.train
    return TrainingArguments(
        output_dir=str(run.dir / "checkpoints"),
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
        save_strategy="steps",
        save_steps=opt.save_steps,
        save_total_limit=opt.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=opt.eval_steps,
        use_cpu=device.type == "cpu",
        report_to="none",
        remove_unused_columns=False,
        **mixed_precision(recipe.model, device),
    )


def fit(model, tokenizer, recipe: TrainRecipe, run: Run, rows: list[Row], eval_rows: list[Row] | None) -> dict:
    """Train in place and return the final metrics for the model card."""
    from torch.utils.tensorboard import SummaryWriter

    metrics = RunMetrics(run)
    writer = SummaryWriter(log_dir=str(run.dir / "tensorboard"))
    trainer = Trainer(
        model=model,
        args=training_arguments(recipe, run, eval_rows is not None, model.device),
        train_dataset=rows,
        eval_dataset=eval_rows,
        data_collator=Collator(tokenizer.pad_token_id, recipe.packing),
        callbacks=[metrics, TensorBoardCallback(tb_writer=writer)],
    )
    model.config.use_cache = False  # transformers builds per-example masks for packed rows only without a cache
    result = trainer.train()
    model.config.use_cache = True
    writer.close()
    final = {"train_loss_last": metrics.last.get("loss"), "train_loss_mean": result.training_loss}
    final["steps"] = result.global_step
    final["runtime_s"] = round(result.metrics.get("train_runtime", 0.0), 1)
    if eval_rows is not None:
        final["eval_loss"] = trainer.evaluate()["eval_loss"]
    return {key: value for key, value in final.items() if value is not None}
