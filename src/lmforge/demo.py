"""`lmforge demo`: the whole lifecycle on the toy world, as a sequence of the real stage commands, with a report
whose numbers show what each stage did."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from lmforge.config import Section
from lmforge.runs import last_record, read_metrics
from lmforge.config import Preset

log = logging.getLogger("lmforge.demo")

CJK = re.compile(r"[\u4e00-\u9fff]")


class DemoConfig(Section):
    output_dir: str = Field("runs/demo", description="folder for the demo's runs and report")
    seed: int = Field(0, description="toy-world and training seed")
    world_size: Literal["tiny", "demo"] = Field("demo", description="toy-world size")
    preset: Preset = Field("micro", description="model preset trained from scratch")
    vocab_size: int = Field(4096, description="tokenizer vocabulary size")
    pretrain_steps: int = Field(-1, description="pretraining steps (-1: the recipe's)")
    sft_steps: int = Field(-1, description="SFT steps (-1: the recipe's)")
    dpo_steps: int = Field(-1, description="DPO steps (-1: the recipe's)")
    grpo_steps: int = Field(-1, description="GRPO steps (-1: the recipe's)")
    eval_limit: int = Field(0, ge=0, description="evaluate on the first N items of each benchmark (0: all)")
    sweep: bool = Field(True, description="also run an SFT data-size sweep (`lmforge sweep`)")
    sweep_fractions: list[float] = Field(
        [0.1, 0.25, 0.5], description="shares of the SFT data the sweep trains on (the full data is the sft stage)"
    )


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
    evals = {"pretrain": evaluate_stage(pretrain_dir, world, cfg, overwrite)}
    runs = {"pretrain": pretrain_dir}
    sft_updates = {"model.path": str(pretrain_dir), "data.train": [str(world / "sft_train.jsonl")]}
    for stage, recipe_name in SFT_VARIANTS.items():
        runs[stage] = _train_stage(recipe_name, cfg, overwrite, sft_updates, cfg.sft_steps)
        evals[stage] = evaluate_stage(runs[stage], world, cfg, overwrite)
    runs["dpo"] = _train_stage("demo-dpo", cfg, overwrite, {
        "model.path": str(runs["sft"]), "data.train": [str(world / "preference.jsonl")]}, cfg.dpo_steps)
    evals["dpo"] = evaluate_stage(runs["dpo"], world, cfg, overwrite)
    runs["grpo"] = _train_stage("demo-grpo", cfg, overwrite, {
        "model.path": str(runs["dpo"]), "data.train": [str(world / "rl_arithmetic.jsonl")]}, cfg.grpo_steps)
    evals["grpo"] = evaluate_stage(runs["grpo"], world, cfg, overwrite)
    sweep = _sweep_sft(cfg, world, sft_updates, overwrite) if cfg.sweep else None
    served = serve_and_ask(runs["grpo"], _first_question(evals["grpo"]), out / "serve.json")
    write_report(report, evals, runs, time.time() - started, sweep, served)
    return report


def _first_question(eval_dir: Path) -> str:
    from lmforge.eval.report import read_results

    return _sample_questions(read_results(eval_dir))[0][0]


def serve_and_ask(model_dir: Path, question: str, record: Path) -> dict:
    """`lmforge serve` on the final model for one OpenAI-style chat request; the request and the server's answer
    are kept in `record`."""
    import httpx

    from lmforge.runs import atomic_write_text
    from lmforge.serve.app import running_server
    from lmforge.serve.config import ServeConfig

    log.info("demo: serving %s for one API call", model_dir)
    cfg = ServeConfig(model=str(model_dir), port=0)
    body = {"model": model_dir.name, "messages": [{"role": "user", "content": question}], "max_tokens": 64,
            "temperature": 0}
    with running_server(cfg) as url:
        models = [model["id"] for model in httpx.get(f"{url}/v1/models").json()["data"]]
        started = time.monotonic()
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
        seconds = time.monotonic() - started
        response.raise_for_status()
    served = {"models": models, "request": body, "response": response.json(), "seconds": seconds}
    atomic_write_text(record, json.dumps(served, ensure_ascii=False, indent=2) + "\n")
    return served


# The SFT stage twice, from the same pretrained model: every weight trained, and LoRA adapters only.
SFT_VARIANTS = {"sft": "demo-sft", "sft-lora": "demo-sft-lora"}


def _train_stage(recipe_name: str, cfg: DemoConfig, overwrite: bool, updates: dict, steps: int) -> Path:
    from lmforge.config import load, resolve_recipe
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe

    recipe = load(TrainRecipe, resolve_recipe(recipe_name), updates=_stage_updates(cfg, updates, steps))
    log.info("demo: training stage %s", recipe.stage)
    return train(recipe, overwrite=overwrite)


def _stage_updates(cfg: DemoConfig, updates: dict, steps: int) -> dict:
    """What the demo sets in a shipped recipe: its folder, seed and data, and the step count if --*-steps is set."""
    updates = {"output_dir": cfg.output_dir, "train.seed": cfg.seed, **updates}
    if steps > 0:
        updates["train.max_steps"] = steps
    return updates


def _sweep_sft(cfg: DemoConfig, world: Path, updates: dict, overwrite: bool) -> Path:
    """`lmforge sweep demo-sft` on shares of the SFT data, scored on the world's QA; the full data is the sft run."""
    from lmforge.sweep import SweepConfig, run_sweep

    overrides = [f"{key}={json.dumps(value)}" for key, value in _stage_updates(cfg, updates, cfg.sft_steps).items()]
    log.info("demo: SFT data-size sweep over %s", cfg.sweep_fractions)
    return run_sweep(SweepConfig(recipe="demo-sft", overrides=overrides, data_fractions=cfg.sweep_fractions,
                                 tasks=[str(world / "tasks" / "world_qa.yaml")], limit=cfg.eval_limit,
                                 name="sweep-sft", output_dir=cfg.output_dir), overwrite=overwrite)


def evaluate_stage(model_dir: Path, world: Path, cfg: DemoConfig, overwrite: bool) -> Path:
    """`lmforge eval` on the world's own tasks; the eval run lands beside the stage's run as eval-<stage>."""
    from lmforge.eval.config import EvalConfig
    from lmforge.eval.runner import evaluate
    from lmforge.world import WORLD_TASKS

    tasks = [str(world / "tasks" / f"{name}.yaml") for name in WORLD_TASKS]
    eval_cfg = EvalConfig(model=str(model_dir), tasks=tasks, limit=cfg.eval_limit, output_dir=cfg.output_dir,
                          name=f"eval-{model_dir.name}")
    return evaluate(eval_cfg, overwrite=overwrite)


# (row name, task, metric, subject or None, what it measures)
REPORT_ROWS = [
    ("world_mc_acc", "world_mc", "acc", None,
     "4-way multiple choice on every world fact, held-out wording, by answer log-likelihood (chance 25%)"),
    ("qa_exact_match", "world_qa", "exact_match", "fact-seen",
     "greedy chat answers to held-out questions about facts covered by SFT, exact match"),
    ("qa_em_new_phrasing", "world_qa", "exact_match", "fact-new-wording",
     "the same facts asked in a wording that no training file uses"),
    ("qa_em_unseen_facts", "world_qa", "exact_match", "fact-unseen",
     "facts only the pretraining corpus states (no SFT question about them)"),
    ("arithmetic_exact_match", "world_arithmetic", "exact_match", None,
     "new word problems, the last number of the reply"),
]


def report_values(results: dict) -> dict[str, float | None]:
    """The report's numbers from one eval run; None where --eval-limit left a group out."""
    values = {}
    for row, task, metric, subject, _ in REPORT_ROWS:
        result = results["tasks"][task]
        if subject is None:
            values[row] = result["metrics"][metric]["value"]
        else:
            values[row] = result.get("subjects", {}).get(subject, {}).get(metric)
    return values


def _sample_questions(results: dict) -> list[tuple[str, str]]:
    """One English fact, one Chinese fact and one arithmetic reply, when present."""
    qa, arithmetic = results["tasks"]["world_qa"]["samples"], results["tasks"]["world_arithmetic"]["samples"]
    picks = [next((s for s in qa if not CJK.search(s["query"])), None),
             next((s for s in qa if CJK.search(s["query"])), None), next(iter(arithmetic), None)]
    return [(p["query"], p["output"]) for p in picks if p is not None]


def write_report(path: Path, evals: dict[str, Path], runs: dict[str, Path], seconds: float,
                 sweep: Path | None = None, served: dict | None = None) -> None:
    from lmforge.eval.analyze import analyze_run
    from lmforge.eval.compare import compare_runs
    from lmforge.eval.report import read_results
    from lmforge.runs import atomic_write_text

    results = {stage: read_results(folder) for stage, folder in evals.items()}
    values = {stage: report_values(result) for stage, result in results.items()}
    names = [row[0] for row in REPORT_ROWS]
    lines = [
        "# lmforge demo report",
        "",
        f"The whole lifecycle on the toy world took {seconds / 60:.1f} minutes.",
        "",
        "| stage | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    lines += [f"| {stage} | " + " | ".join(_percent(row[n]) for n in names) + " |" for stage, row in values.items()]
    lines += ["", *[f"- `{name}`: {note}" for name, *_, note in REPORT_ROWS]]
    _, retention = compare_runs(evals["pretrain"], evals["sft"], path.parent / "pretrain-vs-sft")
    lines += ["", "## What SFT cost and gained (`lmforge compare`)", "", _body(retention)]
    lines += ["", "## Full SFT against LoRA SFT", "", _finetuning_comparison(runs, values)]
    lines += ["", "## Alignment: DPO, then GRPO on arithmetic", "", _alignment_section(results, values, runs)]
    _, aligned = compare_runs(evals["sft"], evals["grpo"], path.parent / "sft-vs-grpo")
    lines += ["", "### What alignment cost and gained: the SFT model against the final GRPO model", "", _body(aligned)]
    if sweep is not None:
        section = _sweep_section(sweep, path.parent, results["sft"], runs["sft"])
        lines += ["", "## SFT on less data (`lmforge sweep`)", "", section]
    analysis = analyze_run(evals["sft"])
    lines += ["", "## Error analysis of the SFT model's replies (`lmforge analyze`)", "",
              _body(analysis.read_text(encoding="utf-8").split("\n## ", 1)[0]),
              "", f"Examples: `{analysis.relative_to(path.parent)}`"]
    if served is not None:
        lines += ["", "## Serving the final model (`lmforge serve`)", "", _serving_section(served)]
    for stage, run_dir in runs.items():
        lines += ["", f"## {stage}", "", f"Run folder: `{run_dir}`", "", f"![{stage} loss]({run_dir.name}/loss.png)", ""]
        lines += [f"- **Q:** {q}\n  **A:** {a.strip() or '(empty)'}" for q, a in _sample_questions(results[stage])]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _serving_section(served: dict) -> str:
    reply = served["response"]
    usage = reply["usage"]
    return "\n".join([
        f"The server listed the model {', '.join(f'`{model}`' for model in served['models'])} and answered one "
        f"chat request in {served['seconds']:.2f} s ({usage['prompt_tokens']} prompt tokens, "
        f"{usage['completion_tokens']} completion tokens):",
        "", "```", "POST /v1/chat/completions", json.dumps(served["request"], ensure_ascii=False), "```", "",
        f"**Answer** (`{reply['choices'][0]['finish_reason']}`): {reply['choices'][0]['message']['content']}", "",
        "The exchange is in `serve.json`.",
    ])


ALIGNED = ("sft", "dpo", "grpo")


def _alignment_section(results: dict, values: dict, runs: dict[str, Path]) -> str:
    """What preference optimisation and RL changed, judged by the toy world's own preference rule (concise and
    correct beats rambling, repetitive or wrong) on the replies every stage gave to the same held-out questions."""
    from lmforge.eval.report import markdown_table
    from lmforge.world.judge import reply_style, win_rate

    replies = {stage: _replies(results[stage]) for stage in ALIGNED}
    styles = {stage: reply_style(replies[stage]) for stage in ALIGNED}
    wins = {stage: win_rate(replies[stage], replies["sft"]) for stage in ALIGNED[1:]}
    rows = [
        ["win rate against sft (ties count half)", "-", *(_percent(wins[s]["win_rate"]) for s in ALIGNED[1:])],
        ["wins / ties / losses", "-", *(f"{wins[s]['wins']} / {wins[s]['ties']} / {wins[s]['losses']}"
                                        for s in ALIGNED[1:])],
        ["mean answer length (characters)", *(f"{styles[s]['mean_chars']:.1f}" for s in ALIGNED)],
        ["repetition rate (repeated word 3-grams)", *(f"{styles[s]['repetition_rate']:.3f}" for s in ALIGNED)],
        *([f"replies breaking the rule: {rule}", *(_percent(styles[s]["rule_breaks"][rule]) for s in ALIGNED)]
          for rule in ("wrong", "rambling", "repetitive")),
        ["arithmetic exact match", *(_percent(values[s]["arithmetic_exact_match"]) for s in ALIGNED)],
        ["world multiple choice (retention)", *(_percent(values[s]["world_mc_acc"]) for s in ALIGNED)],
    ]
    rewards = [record["reward"] for record in read_metrics(runs["grpo"]) if "reward" in record]
    curve = (f"\n\nGRPO's mean reward on its training prompts went from {rewards[0]:.3f} (first logged steps) to "
             f"{rewards[-1]:.3f} (last). ![grpo reward]({runs['grpo'].name}/reward.png)") if rewards else ""
    return (markdown_table(["", *ALIGNED], rows) + "\n\nReplies to the world_qa and world_arithmetic questions, "
            "paired by question and judged by the world's preference rule (`lmforge.world.judge`)." + curve)


def _replies(results: dict) -> list[dict]:
    return results["tasks"]["world_qa"]["samples"] + results["tasks"]["world_arithmetic"]["samples"]


def _sweep_section(sweep: Path, demo_dir: Path, sft_results: dict, sft_run: Path) -> str:
    """The sweep's table and curve, and the point at all of the data: the sft stage itself."""
    table = _body((sweep / "sweep.md").read_text(encoding="utf-8"))
    full = sft_results["tasks"]["world_qa"]["metrics"]["exact_match"]["value"]
    examples = last_record(sft_run, "data")["examples"]
    return (f"{table}\n\nAll of the data is the sft stage: {examples} examples, world_qa/exact_match "
            f"{full:.4f}.\n\n![sweep]({(sweep / 'sweep.png').relative_to(demo_dir)})")


def _finetuning_comparison(runs: dict[str, Path], values: dict[str, dict]) -> str:
    """The same SFT data and schedule, all weights against LoRA adapters: what each trains, costs and reaches."""
    from lmforge.eval.report import markdown_table

    stages = list(SFT_VARIANTS)
    facts = {stage: training_facts(runs[stage]) for stage in stages}
    rows = [
        ["trainable parameters", *(f"{f['trainable']:,} ({f['trainable_share']:.1%})" for f in facts.values())],
        ["peak memory while training (rise over the start)",
         *(f"{f['peak_memory_mb']:,.0f} MiB (+{f['memory_rise_mb']:,.0f})" for f in facts.values())],
        ["weights + gradients + AdamW state", *(f"{f['state_mb']:,.1f} MiB" for f in facts.values())],
        ["training time", *(f"{f['runtime_s']:.0f} s" for f in facts.values())],
        ["saved weights", *(f"{f['saved_mb']:,.2f} MiB" for f in facts.values())],
        *([name, *(_percent(values[stage][name]) for stage in stages)] for name in ("qa_exact_match", "world_mc_acc")),
    ]
    full, lora = (values[stage]["qa_exact_match"] for stage in stages)
    share = f"{lora / full:.0%} of full SFT's" if full and lora is not None else "no ratio to full SFT's"
    summary = (f"\n\nLoRA reaches a QA exact match of {_percent(lora)}, {share}, while training "
               f"{facts['sft-lora']['trainable_share']:.1%} of the parameters.")
    return markdown_table(["", *stages], rows) + summary


def training_facts(run_dir: Path) -> dict:
    """Parameter counts and final training figures a run logged, and the size of what it saved."""
    facts = {**last_record(run_dir, "parameters"), **last_record(run_dir, "final")}
    facts["saved_mb"] = sum(path.stat().st_size for path in run_dir.glob("*.safetensors")) / 2**20
    return facts


def _body(markdown: str) -> str:
    """A report without its title line, to sit under a heading of the demo report."""
    return markdown.split("\n", 1)[1].strip()


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
