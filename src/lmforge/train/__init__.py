"""`lmforge train RECIPE`: every training stage, on top of the transformers Trainer."""

from __future__ import annotations

import logging
from pathlib import Path

from lmforge.train.config import TrainRecipe

log = logging.getLogger("lmforge.train")


def train(recipe: TrainRecipe, overwrite: bool = False) -> Path:
    """Run one stage end to end and return the finished run folder (the trained model lives in it)."""
    from lmforge.models import load_model, save_model
    from lmforge.plots import plot_metric
    from lmforge.runs import Run, atomic_write_text, model_card, read_metrics
    from lmforge.templates import end_of_turn_ids, preflight, resolve_template
    from lmforge.train.data import prepare
    from lmforge.train.loop import fit

    run = Run(recipe.output_dir, recipe.name, overwrite).start(recipe)
    model, tokenizer = load_model(recipe.model, recipe.train.seed)
    template = resolve_template(tokenizer, recipe.data.template)
    tokenizer.chat_template = template
    stop_ids = _stop_ids(tokenizer, end_of_turn_ids(tokenizer, template))
    if recipe.stage == "sft":
        preflight(tokenizer, template, stop_ids)
    train_set = prepare(recipe.data.train, recipe.stage, recipe.data, tokenizer, template, recipe.packing)
    eval_rows = None
    if recipe.data.eval:
        eval_rows = prepare(recipe.data.eval, recipe.stage, recipe.data, tokenizer, template, recipe.packing).rows
    log.info("data: %s", train_set.stats)
    run.log_metrics({"data": train_set.stats, "skipped_records": train_set.skipped_records})
    final = fit(model, tokenizer, recipe, run, train_set.rows, eval_rows)
    save_model(model, tokenizer, run.dir, stop_ids)
    plot_metric(read_metrics(run.dir), "loss", run.dir / "loss.png", title=f"{recipe.name}: training loss")
    parent = f"new {recipe.model.preset} preset" if recipe.model.preset else recipe.model.path
    card = model_card(recipe.stage, parent, train_set.files, final, recipe.data.template)
    atomic_write_text(run.dir / "README.md", card)
    return run.finish()


def _stop_ids(tokenizer, end_of_turn: list[int]) -> list[int]:
    ids = [tokenizer.eos_token_id]
    if end_of_turn and end_of_turn[0] not in ids:
        ids.append(end_of_turn[0])
    return ids
