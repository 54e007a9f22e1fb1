"""`lmforge train RECIPE`: every training stage, on top of the transformers Trainer. Under torchrun or accelerate
launch every process runs `train`; the main one alone writes the run folder."""

from __future__ import annotations

import logging
from pathlib import Path

from lmforge.train.config import ADAPTER_METHODS, TrainRecipe

log = logging.getLogger("lmforge.train")


def train(recipe: TrainRecipe, overwrite: bool = False) -> Path:
    """Run one stage end to end and return the finished run folder (the trained model lives in it)."""
    from lmforge.distributed import join
    from lmforge.models import load_model, pick_device, set_stop_tokens
    from lmforge.plots import plot_metric
    from lmforge.runs import Run, atomic_write_text, model_card, read_metrics
    from lmforge.templates import describe_template, end_of_turn_ids, preflight, resolve_template
    from lmforge.train.adapters import apply_finetuning, parameter_counts, quantization_kwargs, trainable_summary
    from lmforge.train.loop import fit, refuse_changed_settings, resume_checkpoint
    from lmforge.train.anchor import build_anchor
    from lmforge.train.reference import build_reference, start_reference

    join(cpu=pick_device(recipe.model.device).type == "cpu")
    run = Run(recipe.output_dir, recipe.name, overwrite)
    _refuse_own_base(recipe, run.final)
    checkpoint = resume_checkpoint(recipe.train.resume, run.dir)
    refuse_changed_settings(recipe, checkpoint)
    with run.start(recipe, resume_from=checkpoint):
        model, tokenizer = load_model(recipe.model, recipe.train.seed, recipe.data.max_length, for_training=True,
                                      **quantization_kwargs(recipe))
        template_label = describe_template(recipe.data.template, tokenizer)
        tokenizer.chat_template = resolve_template(tokenizer, recipe.data.template)
        stop_ids = _stop_ids(tokenizer, end_of_turn_ids(tokenizer, tokenizer.chat_template))
        if recipe.stage == "rm":
            model = _reward_model(model, recipe.train.seed, tokenizer.pad_token_id)
        else:
            set_stop_tokens(model, tokenizer, stop_ids)
        if recipe.stage in ("dpo", "grpo"):
            _disable_dropout(model)
        if recipe.stage in ("sft", "dpo", "grpo"):
            preflight(tokenizer, tokenizer.chat_template, stop_ids)
        train_set = _prepare(recipe.data.train, recipe, tokenizer, recipe.data.fraction, replay=True)
        eval_rows = _prepare(recipe.data.eval, recipe, tokenizer).rows if recipe.data.eval else None
        run.log_metrics({"data": train_set.stats})
        parent = f"new {recipe.model.preset} preset" if recipe.model.preset else recipe.model.path
        retention = _retention_check(recipe, parent, run)
        if retention:
            retention.measure_before(model, tokenizer)
        reference = build_reference(recipe, model)
        anchor_reference = start_reference(recipe, model, reference)
        rows = _with_precomputed_reference(recipe, model, tokenizer, train_set.rows)
        eval_rows = _with_precomputed_reference(recipe, model, tokenizer, eval_rows) if eval_rows else None
        model = apply_finetuning(model, recipe, tokenizer)
        log.info("finetuning %s: %s", recipe.finetuning, trainable_summary(model))
        run.log_metrics({"parameters": parameter_counts(model)})
        parts = stage_parts(recipe, tokenizer, reference, stop_ids)
        anchor = build_anchor(recipe.train, model, anchor_reference)
        final = fit(model, tokenizer, recipe, run, rows, eval_rows, checkpoint, parts, anchor)
        run.log_metrics({"final": final})
        if run.writes:
            plot_metric(read_metrics(run.dir), "loss", run.dir / "loss.png", title=f"{recipe.name}: training loss")
            if recipe.stage == "grpo":
                plot_metric(read_metrics(run.dir), "reward", run.dir / "reward.png", title=f"{recipe.name}: mean reward")
            sections = {}
            if retention:
                sections["Retention (before vs after training)"] = retention.report_after(model, tokenizer)
            facts = {"finetuning": f"{_method(recipe)}; {trainable_summary(model)}"}
            card = model_card(recipe.stage, parent, train_set.files, final, template_label, sections, facts,
                              adapter=recipe.finetuning in ADAPTER_METHODS)
            atomic_write_text(run.dir / "README.md", card)
        return run.finish()


def stage_parts(recipe: TrainRecipe, tokenizer, reference, stop_ids: list[int]):
    """The trainer, collator and options of the recipe's stage; None for the causal LM loss of pretrain and sft."""
    if recipe.stage in ("rm", "dpo"):
        from lmforge.train.preference import preference_parts

        return preference_parts(recipe, tokenizer, reference)
    if recipe.stage == "grpo":
        from lmforge.train.rl import grpo_parts

        return grpo_parts(recipe, tokenizer, reference, stop_ids)
    return None


def _reward_model(model, seed: int, pad_token_id: int):
    import torch

    from lmforge.models import to_reward_model

    torch.manual_seed(seed)  # the new score head
    return to_reward_model(model, pad_token_id)


def _disable_dropout(model) -> None:
    """Policy and reference log-probs must come from the same function: dropout would make their ratio noise
    (and non-zero before any step), so the dpo and grpo stages train without it, as TRL does by default."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    if hasattr(model.config, "attention_dropout"):
        model.config.attention_dropout = 0.0
        for module in model.modules():
            if isinstance(getattr(module, "attention_dropout", None), float):
                module.attention_dropout = 0.0


def _with_precomputed_reference(recipe: TrainRecipe, model, tokenizer, rows: list) -> list:
    if recipe.stage != "dpo" or recipe.reference_source != "precomputed":
        return rows
    from lmforge.train.preference import precompute_reference

    import torch

    from lmforge.models import mixed_precision

    bf16 = mixed_precision(recipe.model, model.device)["bf16"]
    log.info("reference: log-probs of the start model, computed once for %d rows", len(rows))
    return precompute_reference(model, rows, tokenizer.pad_token_id, recipe.train.batch_size,
                                lambda: torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16))


def _refuse_own_base(recipe: TrainRecipe, final: Path) -> None:
    """An adapter run may not replace the folder it starts from: its adapter would name a base that is gone."""
    if recipe.finetuning in ADAPTER_METHODS and Path(recipe.model.path).resolve() == final.resolve():
        raise ValueError(f"model.path {recipe.model.path} is this run's own folder, which the new adapter would "
                         "replace while naming it as its base; give the run another name")


def _method(recipe: TrainRecipe) -> str:
    if recipe.finetuning in ADAPTER_METHODS:
        lora = recipe.lora
        targets = ", ".join(lora.target_modules) or "auto"
        return f"{recipe.finetuning} (r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, targets: {targets})"
    if recipe.finetuning == "freeze":
        modules = ", ".join(recipe.freeze.trainable_modules) or "none"
        return f"freeze (last {recipe.freeze.trainable_layers} blocks trainable, plus modules: {modules})"
    return "full"


def _retention_check(recipe: TrainRecipe, parent: str, run):
    """The forgetting check, if the recipe asks for one; the main process alone runs it, into its run folder."""
    from lmforge.eval.retention import RetentionCheck

    if not recipe.eval.retention_tasks or not run.writes:
        return None
    return RetentionCheck(recipe.eval, parent, run.dir / "retention")


def _prepare(paths: list[str], recipe: TrainRecipe, tokenizer, fraction: float = 1.0, replay: bool = False):
    from lmforge.train.data import prepare

    unpaired = recipe.stage == "dpo" and recipe.dpo.loss == "kto"
    prepared = prepare(paths, recipe.stage, recipe.data, tokenizer, tokenizer.chat_template, recipe.packing, fraction,
                       unpaired, replay)
    log.info("data %s: %s", paths, prepared.stats)
    return prepared


def _stop_ids(tokenizer, end_of_turn: list[int]) -> list[int]:
    ids = [tokenizer.eos_token_id]
    if end_of_turn and end_of_turn[0] not in ids:
        ids.append(end_of_turn[0])
    return ids
