"""`lmforge demo`: the whole lifecycle on the toy world, as a sequence of the real stage commands, with a report
whose numbers show what each stage did."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from typing import Literal

from pydantic import Field

from lmforge.config import Section
from lmforge.train.config import Preset

log = logging.getLogger("lmforge.demo")


class DemoConfig(Section):
    output_dir: str = Field("runs/demo", description="folder for the demo's runs and report")
    seed: int = Field(0, description="toy-world and training seed")
    world_size: Literal["tiny", "demo"] = Field("demo", description="toy-world size")
    preset: Preset = Field("micro", description="model preset trained from scratch")
    vocab_size: int = Field(4096, description="tokenizer vocabulary size")
    pretrain_steps: int = Field(-1, description="pretraining steps (-1: the recipe's)")
    sft_steps: int = Field(-1, description="SFT steps (-1: the recipe's)")
    eval_limit: int = Field(0, ge=0, description="evaluate on the first N items of each benchmark (0: all)")


def run_demo(cfg: DemoConfig, overwrite: bool = False) -> Path:
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer
    from lmforge.world import write_world

    out = Path(cfg.output_dir)
    report = out / "report.md"
    if report.exists() and not overwrite:
        raise FileExistsError(f"{report} already exists; pass --overwrite to run the demo again")
    started = time.time()
    world = out / "world"
    write_world(cfg.seed, world, cfg.world_size, overwrite=overwrite)
    tokenizer_dir = train_tokenizer(
        TokenizerConfig(data=[str(world / "pretrain.jsonl"), str(world / "sft_train.jsonl")],
                        output_dir=str(out), vocab_size=cfg.vocab_size),
        overwrite=overwrite,
    )
    pretrain_dir = _train_stage("demo-pretrain", cfg, overwrite, {
        "model.preset": cfg.preset, "model.tokenizer": str(tokenizer_dir), "data.train": [str(world / "pretrain.jsonl")],
    }, cfg.pretrain_steps)
    rows = {"pretrain": evaluate_stage(pretrain_dir, world, out / "pretrain_eval.json", cfg.eval_limit)}
    sft_dir = _train_stage("demo-sft", cfg, overwrite, {
        "model.path": str(pretrain_dir), "data.train": [str(world / "sft_train.jsonl")],
    }, cfg.sft_steps)
    rows["sft"] = evaluate_stage(sft_dir, world, out / "sft_eval.json", cfg.eval_limit)
    write_report(report, rows, {"pretrain": pretrain_dir, "sft": sft_dir}, time.time() - started)
    return report


def _train_stage(recipe_name: str, cfg: DemoConfig, overwrite: bool, updates: dict, steps: int) -> Path:
    from lmforge.config import load, resolve_recipe
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe

    updates = {"output_dir": cfg.output_dir, "train.seed": cfg.seed, **updates}
    if steps > 0:
        updates["train.max_steps"] = steps
    recipe = load(TrainRecipe, resolve_recipe(recipe_name), updates=updates)
    log.info("demo: training stage %s", recipe.stage)
    return train(recipe, overwrite=overwrite)


def evaluate_stage(model_dir: Path, world: Path, out: Path, limit: int = 0) -> dict:
    """World multiple-choice accuracy, QA exact match and a few sample replies for one stage's model."""
    from lmforge.eval.tasks import correct_share, evaluate_choices, evaluate_qa, read_mmlu_csv, read_qa_jsonl
    from lmforge.models import load_for_inference
    from lmforge.runs import atomic_write_text
    from lmforge.world import MC_PROMPT

    model, tokenizer = load_for_inference(model_dir)
    choices = read_mmlu_csv(world / "mc" / "test" / "world_test.csv")
    qa = read_qa_jsonl(world / "qa_test.jsonl")
    if limit:
        choices, qa = choices[:limit], qa[:limit]
    mc_result = evaluate_choices(model, tokenizer, choices, prompt=MC_PROMPT)
    qa_result = evaluate_qa(model, tokenizer, qa)
    atomic_write_text(out, json.dumps({"world_mc": mc_result, "qa": qa_result}, ensure_ascii=False, indent=1))
    facts = [s for s in qa_result["samples"] if s["kind"] == "fact"]
    row = {
        "world_mc_acc": mc_result["acc"],
        "qa_exact_match": correct_share([s for s in facts if s["phrasing"] == "train"]),
        "qa_em_new_phrasing": correct_share([s for s in facts if s["phrasing"] == "new" and s["seen_in_sft"]]),
        "qa_em_unseen_facts": correct_share([s for s in facts if not s["seen_in_sft"]]),
        "arithmetic_exact_match": correct_share([s for s in qa_result["samples"] if s["kind"] == "arithmetic"]),
    }
    row["samples"] = [(s["question"], s["reply"]) for s in _sample_questions(qa_result["samples"])]
    log.info("demo: %s -> %s", model_dir.name, {k: v for k, v in row.items() if k != "samples"})
    return row


def _sample_questions(samples: list[dict]) -> list[dict]:
    """One English fact, one Chinese fact and one arithmetic question, when present."""
    wanted = ({"lang": "en", "kind": "fact"}, {"lang": "zh", "kind": "fact"}, {"kind": "arithmetic"})
    picks = [next((s for s in samples if all(s.get(k) == v for k, v in want.items())), None) for want in wanted]
    return [pick for pick in picks if pick is not None]


METRIC_NOTES = {
    "world_mc_acc": "4-way multiple choice on every world fact, held-out wording, by answer log-likelihood (chance 25%)",
    "qa_exact_match": "greedy chat answers to held-out questions about facts covered by SFT, exact match",
    "qa_em_new_phrasing": "the same facts asked in a wording that no training file uses",
    "qa_em_unseen_facts": "facts only the pretraining corpus states (no SFT question about them)",
    "arithmetic_exact_match": "new word problems, final number after 'The answer is' / '答案是'",
}


def write_report(path: Path, rows: dict[str, dict], runs: dict[str, Path], seconds: float) -> None:
    from lmforge.runs import atomic_write_text

    metrics = [key for key in next(iter(rows.values())) if key != "samples"]
    lines = [
        "# lmforge demo report",
        "",
        f"The whole lifecycle on the toy world took {seconds / 60:.1f} minutes.",
        "",
        "| stage | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    lines += [f"| {stage} | " + " | ".join(f"{row[m]:.1%}" for m in metrics) + " |" for stage, row in rows.items()]
    lines += ["", *[f"- `{m}`: {METRIC_NOTES[m]}" for m in metrics]]
    for stage, run_dir in runs.items():
        lines += ["", f"## {stage}", "", f"Run folder: `{run_dir}`", "", f"![{stage} loss]({run_dir.name}/loss.png)", ""]
        lines += [f"- **Q:** {q}\n  **A:** {a.strip() or '(empty)'}" for q, a in rows[stage]["samples"]]
    atomic_write_text(path, "\n".join(lines) + "\n")
