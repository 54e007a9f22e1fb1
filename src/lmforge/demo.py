"""`lmforge demo`: the whole lifecycle on the toy world, as a sequence of the real stage commands, with a report
whose numbers show what each stage did."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
import time
import typing
from pathlib import Path
from typing import Literal

from pydantic import Field

from lmforge.config import Preset, Section
from lmforge.runs import last_record, read_metrics
from lmforge.world import WORLD_TASKS

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
    pass_k: int = Field(8, ge=2, description="replies sampled per held-out question to measure pass@k before GRPO")
    sweep: bool = Field(True, description="also run an SFT data-size sweep (`lmforge sweep`)")
    sweep_fractions: list[float] = Field(
        [0.05, 0.15], description="shares of the SFT data the sweep trains on (the full data is the sft-plain stage)"
    )
    parallel: bool = Field(
        True, description="run the comparisons (the pretrained model's evaluation, sft-lora, sft-plain, the sweep) "
        "in a second process beside sft, dpo and grpo, each process with half of the CPU threads: on 2 cores the "
        "two get through about 1.2x the work of one process using both (the second one logs to side.log in the "
        "output folder)"
    )


class StageClock:
    """Wall time of each demo stage, in the order the stages ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.monotonic() - started


class Stages:
    """Trains demo stages from shipped recipes and evaluates each on the world's tasks, timing both."""

    def __init__(self, cfg: DemoConfig, world: Path, overwrite: bool):
        self.cfg, self.world, self.overwrite = cfg, world, overwrite
        self.clock, self.runs, self.evals = StageClock(), {}, {}

    def run(self, name: str, recipe_name: str, updates: dict, steps: int,
            tasks: tuple[str, ...] | None = tuple(WORLD_TASKS)) -> Path:
        """Train a stage, then evaluate it on `tasks` (None: leave its evaluation to the caller)."""
        with self.clock(name):
            self.runs[name] = _train_stage(recipe_name, self.cfg, self.overwrite, {"name": name, **updates}, steps)
        if tasks is not None:
            self.evaluate(name, self.runs[name], tasks)
        return self.runs[name]

    def evaluate(self, name: str, model_dir: Path, tasks: tuple[str, ...] = tuple(WORLD_TASKS)) -> None:
        with self.clock(f"eval {name}"):
            self.evals[name] = evaluate_stage(model_dir, self.world, self.cfg, self.overwrite, tasks)


def run_demo(cfg: DemoConfig, overwrite: bool = False) -> Path:
    from lmforge.tokenizer import TokenizerConfig, train_tokenizer
    from lmforge.world import write_world

    out = Path(cfg.output_dir)
    report = out / "report.md"
    if report.exists() and not overwrite:
        raise FileExistsError(f"{report} already exists; pass --overwrite to run the demo again")
    started = time.monotonic()
    world = out / "world"
    main = Stages(cfg, world, overwrite)
    with main.clock("world and tokenizer"):
        write_world(cfg.seed, world, cfg.world_size, overwrite=overwrite)
        tokenizer_dir = train_tokenizer(
            TokenizerConfig(data=[str(world / "pretrain.jsonl"), str(world / "sft_train.jsonl")],
                            output_dir=str(out), vocab_size=cfg.vocab_size),
            overwrite=overwrite,
        )
    pretrain = main.run("pretrain", "demo-pretrain", {"model.preset": cfg.preset, "model.tokenizer": str(tokenizer_dir),
                                                      "data.train": [str(world / "pretrain.jsonl")]},
                        cfg.pretrain_steps, tasks=None)
    with side_lane(cfg, world, pretrain, overwrite, main.clock) as side:
        sft_updates = {"model.path": str(pretrain), "data.train": [str(world / "sft_train.jsonl")]}
        main.run("sft", "demo-sft", {**sft_updates, "data.replay": [str(world / "pretrain.jsonl")]}, cfg.sft_steps)
        side.reclaim_threads()
        main.run("dpo", "demo-dpo", {"model.path": str(main.runs["sft"]),
                                     "data.train": [str(world / "preference.jsonl")]}, cfg.dpo_steps)
        side.reclaim_threads()
        main.run("grpo", "demo-grpo", {"model.path": str(main.runs["dpo"]),
                                       "data.train": [str(world / "rl_facts.jsonl")]}, cfg.grpo_steps)
        side.reclaim_threads()
        with main.clock("pass@k and training prompts before and after grpo"):
            sampled = {name: rl_measures(main.runs[name], world, cfg.pass_k, cfg.eval_limit) for name in ("dpo", "grpo")}
            sampled = sampled if all(sampled.values()) else None
        with main.clock("serve"):
            served = serve_and_ask(main.runs["grpo"], _first_question(main.evals["grpo"]), out / "serve.json")
    comparisons = side.comparisons
    runs, evals = _in_stage_order(main.runs, comparisons.runs), _in_stage_order(main.evals, comparisons.evals)
    write_report(report, evals, runs, StageTimes(main.clock.seconds, comparisons.clock.seconds, side.beside),
                 time.monotonic() - started, comparisons.sweep, served, sampled)
    return report


STAGE_ORDER = ("pretrain", "sft", "sft-lora", "sft-plain", "dpo", "grpo")  # the report's rows


def _in_stage_order(*parts: dict) -> dict:
    merged = {key: value for part in parts for key, value in part.items()}
    return {stage: merged[stage] for stage in STAGE_ORDER if stage in merged}


class StageTimes(typing.NamedTuple):
    """Wall times of the main chain's stages and of the comparison runs, which may have run beside it."""

    main: dict[str, float]
    side: dict[str, float]
    beside: bool  # whether the comparison runs ran in a second process


# The comparison runs, SFT from the same pretrained model: LoRA adapters only (the other mitigation the retention
# table shows), and the shipped recipe without replay, the table's baseline. (stage name: recipe, recipe changes)
COMPARISONS = {
    "sft-lora": ("demo-sft-lora", {}),
    "sft-plain": ("demo-sft", {"data.replay": [], "data.replay_share": None}),
}
NO_REPLAY = COMPARISONS["sft-plain"][1]
RETENTION_ORDER = ("sft-plain", "sft", "sft-lora")
RETENTION_TASKS = ("world_mc", "world_qa")
FINETUNING_COMPARED = ("sft-plain", "sft-lora")  # the same data without replay: all weights against LoRA


class Comparisons(typing.NamedTuple):
    runs: dict[str, Path]
    evals: dict[str, Path]
    clock: StageClock
    sweep: Path | None


def comparison_runs(cfg: DemoConfig, world: Path, pretrain: Path, overwrite: bool) -> Comparisons:
    """What the report sets beside the main chain: the pretrained model's evaluation, SFT without replay and with
    LoRA, scored on the retention table's tasks, and the data-size sweep (without replay, so that its full-data
    point is sft-plain)."""
    stages = Stages(cfg, world, overwrite)
    stages.evaluate("pretrain", pretrain)
    sft_updates = {"model.path": str(pretrain), "data.train": [str(world / "sft_train.jsonl")]}
    for name, (recipe_name, changes) in COMPARISONS.items():
        stages.run(name, recipe_name, {**sft_updates, **changes}, cfg.sft_steps, RETENTION_TASKS)
    sweep = None
    if cfg.sweep:
        with stages.clock("sweep"):
            sweep = _sweep_sft(cfg, world, {**sft_updates, **NO_REPLAY}, overwrite)
    return Comparisons(stages.runs, stages.evals, stages.clock, sweep)


class SideLane:
    """The comparison runs, once they have finished, and whether they ran in a second process; while that process
    runs, this one computes on part of the threads."""

    comparisons: Comparisons | None = None
    beside: bool = False
    process = None
    receiver = None
    log_file: Path | None = None
    threads = 0

    def reclaim_threads(self) -> None:
        """Called between stages: once the second process has finished, compute here on every thread again; if it
        failed, stop now rather than after the main chain."""
        import torch

        if self.process is None or self.process.is_alive():
            return
        torch.set_num_threads(self.threads)
        if self.process.exitcode:
            _side_result(self.receiver, self.process, self.log_file)


@contextlib.contextmanager
def side_lane(cfg: DemoConfig, world: Path, pretrain: Path, overwrite: bool, clock: StageClock):
    """Runs `comparison_runs` in a second process while the body runs here, the CPU threads split between the two:
    two threads run a 5M-parameter model's training step only about 1.4x as fast as one (its operations are too
    small to split well), so two runs on one thread each finish sooner. The yielded lane holds the comparisons after the
    block (the wait for them is timed on `clock`); with `parallel` off or one thread, they run here first. A
    failing body stops the second process."""
    import torch

    lane, threads = SideLane(), torch.get_num_threads()
    if not cfg.parallel or threads < 2:
        lane.comparisons = comparison_runs(cfg, world, pretrain, overwrite)
        yield lane
        return
    log_file = Path(cfg.output_dir) / "side.log"
    log.info("demo: the pretrained model's evaluation, sft-lora, sft-plain and the sweep run in a second process "
             "beside sft, dpo and grpo; their log: %s", log_file)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_side_process, name="lmforge-demo-side",
                              args=(sender, str(log_file), threads // 2, cfg, world, pretrain, overwrite))
    process.start()
    finished = False
    try:
        sender.close()
        torch.set_num_threads(threads - threads // 2)
        lane.beside = True
        lane.process, lane.receiver, lane.log_file, lane.threads = process, receiver, log_file, threads
        yield lane
        with clock("waiting for the second process"):
            lane.comparisons = _side_result(receiver, process, log_file)
        finished = True
    finally:
        torch.set_num_threads(threads)
        process.join(timeout=60 if finished else 0)  # a finished one is only exiting: let it flush its log
        if process.is_alive():
            process.terminate()
        process.join()
        receiver.close()


def _side_process(sender, log_file: str, threads: int, *args) -> None:
    """The second process: logs to its own file (progress bars included), computes on its share of the threads and
    sends back the comparisons, or the traceback of what failed."""
    import traceback

    import torch

    handle = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(handle, 1)
    os.dup2(handle, 2)
    os.close(handle)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    torch.set_num_threads(threads)
    try:
        sender.send(("done", comparison_runs(*args)))
    except BaseException:
        sender.send(("failed", traceback.format_exc()))
        raise


def _side_result(receiver, process, log_file: Path) -> Comparisons:
    try:
        status, payload = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"the demo's second process stopped (exit code {process.exitcode}); see {log_file}")
    if status == "failed":
        raise RuntimeError(f"the demo's second process failed (its log: {log_file}):\n{payload}")
    return payload


def rl_measures(model_dir: Path, world: Path, k: int, limit: int = 0) -> dict | None:
    """What GRPO is judged by, through the engine and GRPO's own exact-match reward: pass@1 and pass@k on
    world_qa's held-out fact questions (k replies sampled at temperature 1 per question, sharing its prefill; pass@k
    is the share of questions with at least one right reply), and greedy exact match on GRPO's own training prompts
    (`rl_facts.jsonl`), which shows what RL learned where it was rewarded."""
    from lmforge.engine import SamplingParams
    from lmforge.models import load_for_inference

    held_out = [record for record in _jsonl(world / "qa_test.jsonl") if record["group"] == "fact-seen"]
    trained = _jsonl(world / "rl_facts.jsonl")
    held_out, trained = held_out[: limit or None], trained[: limit or None]
    if not held_out or not trained:
        return None
    model, tokenizer = load_for_inference(str(model_dir))
    right = _right_replies(model, tokenizer, [r["question"] for r in held_out], [r["answer"] for r in held_out],
                           SamplingParams(32, 1.0, seed=0), k)
    greedy = _right_replies(model, tokenizer, [r["prompt"] for r in trained], [r["answer"] for r in trained],
                            SamplingParams(32, 0.0), 1)[:, 0]
    return {
        "held_out": {"k": k, "questions": len(held_out), "temperature": 1.0, "pass_at_1": float(right.mean()),
                     "pass_at_k": float(right.max(axis=1).mean()),
                     "samples": [{"id": record["id"], "metrics": {"pass_at_1": float(row.mean()),
                                                                  "pass_at_k": float(row.max())}}
                                 for record, row in zip(held_out, right)]},
        "trained": {"questions": len(trained), "exact_match": float(greedy.mean()),
                    "samples": [{"id": record["id"], "metrics": {"exact_match": float(hit)}}
                                for record, hit in zip(trained, greedy)]},
    }


def _jsonl(path: Path) -> list[dict]:
    from lmforge.data import read_raw

    return [raw.value for raw in read_raw(path)]


def _right_replies(model, tokenizer, questions: list[str], answers: list[str], params, k: int):
    """questions x k: whether each of k replies to a one-turn chat question earns GRPO's exact-match reward."""
    import numpy as np

    from lmforge.engine import generate_texts
    from lmforge.rewards import exact_match
    from lmforge.templates import encode_prompt

    prompts = [encode_prompt(tokenizer, [{"role": "user", "content": q}], tokenizer.chat_template) for q in questions]
    replies = generate_texts(model, tokenizer, prompts, params, n=k)
    right = exact_match([], [reply.text for reply in replies], answer=[answers[r.prompt_index] for r in replies])
    return np.array(right, dtype=float).reshape(len(questions), k)


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


def _train_stage(recipe_name: str, cfg: DemoConfig, overwrite: bool, updates: dict, steps: int) -> Path:
    from lmforge.config import load, resolve_recipe
    from lmforge.train import train
    from lmforge.train.config import TrainRecipe

    recipe = load(TrainRecipe, resolve_recipe(recipe_name), updates=_stage_updates(cfg, updates, steps))
    log.info("demo: training stage %s (%s)", recipe.name, recipe.stage)
    return train(recipe, overwrite=overwrite)


def _stage_updates(cfg: DemoConfig, updates: dict, steps: int) -> dict:
    """What the demo sets in a shipped recipe: its folder, seed and data, and the step count if --*-steps is set."""
    updates = {"output_dir": cfg.output_dir, "train.seed": cfg.seed, **updates}
    if steps > 0:
        updates["train.max_steps"] = steps
    return updates


def _sweep_sft(cfg: DemoConfig, world: Path, updates: dict, overwrite: bool) -> Path:
    """`lmforge sweep demo-sft` on shares of the SFT data, scored on the world's QA (the full data is the
    sft-plain stage)."""
    from lmforge.sweep import SweepConfig, run_sweep

    overrides = [f"{key}={json.dumps(value)}" for key, value in _stage_updates(cfg, updates, cfg.sft_steps).items()]
    log.info("demo: SFT data-size sweep over %s", cfg.sweep_fractions)
    return run_sweep(SweepConfig(recipe="demo-sft", overrides=overrides, data_fractions=cfg.sweep_fractions,
                                 tasks=[str(world / "tasks" / "world_qa.yaml")], limit=cfg.eval_limit,
                                 name="sweep-sft", output_dir=cfg.output_dir), overwrite=overwrite)


def evaluate_stage(model_dir: Path, world: Path, cfg: DemoConfig, overwrite: bool,
                   task_names: tuple[str, ...] = tuple(WORLD_TASKS)) -> Path:
    """`lmforge eval` on the world's own tasks; the eval run lands beside the stage's run as eval-<stage>."""
    from lmforge.eval.config import EvalConfig
    from lmforge.eval.runner import evaluate

    tasks = [str(world / "tasks" / f"{name}.yaml") for name in task_names]
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


def report_figures(results: dict) -> dict[str, dict | None]:
    """Each report row's value with its 95% bootstrap interval and n, from the eval run's samples; None where the run
    did not score the row (a task it skipped, or a group --eval-limit left out)."""
    from lmforge.metrics import aggregate, bootstrap_interval

    figures = {}
    for row, task, metric, subject, _ in REPORT_ROWS:
        samples = _task_samples(results, task, subject)
        figures[row] = {"value": aggregate(metric, samples), "ci": bootstrap_interval(metric, samples),
                        "n": len(samples)} if samples else None
    return figures


def _task_samples(results: dict, task: str, subject: str | None = None) -> list[dict]:
    samples = results["tasks"].get(task, {}).get("samples", [])
    return [sample for sample in samples if subject is None or sample.get("subject") == subject]


def _sample_questions(results: dict) -> list[tuple[str, str]]:
    """One English fact, one Chinese fact and one arithmetic reply, when present."""
    qa, arithmetic = _task_samples(results, "world_qa"), _task_samples(results, "world_arithmetic")
    picks = [next((s for s in qa if not CJK.search(s["query"])), None),
             next((s for s in qa if CJK.search(s["query"])), None), next(iter(arithmetic), None)]
    return [(p["query"], p["output"]) for p in picks if p is not None]


def write_report(path: Path, evals: dict[str, Path], runs: dict[str, Path], times: StageTimes,
                 seconds: float, sweep: Path | None = None, served: dict | None = None,
                 sampled: dict[str, dict] | None = None) -> None:
    """report.md for people and report.json with the same numbers for programs."""
    from lmforge.eval.analyze import analyze_run
    from lmforge.eval.compare import compare_runs
    from lmforge.eval.report import read_results
    from lmforge.runs import atomic_write_text

    results = {stage: read_results(folder) for stage, folder in evals.items()}
    figures = {stage: report_figures(result) for stage, result in results.items()}
    values = {stage: {row: None if f is None else f["value"] for row, f in rows.items()}
              for stage, rows in figures.items()}
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
    lines += ["", "## Time of each stage", "", _times_table(times, seconds)]
    retention, retention_rows = _retention_section(results, figures, runs, path.parent)
    lines += ["", "## Keeping general ability: what each SFT variant gains and keeps", "", retention]
    _, compared = compare_runs(evals["pretrain"], evals["sft"], path.parent / "pretrain-vs-sft")
    lines += ["", "### What SFT cost and gained (`lmforge compare`)", "", _body(compared)]
    lines += ["", "## Full SFT against LoRA SFT", "", _finetuning_comparison(runs, values)]
    alignment, wins = _alignment_section(results, values, runs)
    lines += ["", "## Alignment: DPO, then GRPO on world facts", "", alignment]
    grpo_text, grpo = _grpo_section(results, runs, sampled)
    lines += ["", "### What GRPO taught", "", grpo_text]
    _, aligned = compare_runs(evals["sft"], evals["grpo"], path.parent / "sft-vs-grpo")
    lines += ["", "### What alignment cost and gained: the SFT model against the final GRPO model", "", _body(aligned)]
    if sweep is not None:
        section = _sweep_section(sweep, path.parent, results["sft-plain"], runs["sft-plain"])
        lines += ["", "## SFT on less data (`lmforge sweep`)", "", section]
    analysis = analyze_run(evals["sft"])
    lines += ["", "## Error analysis of the SFT model's replies (`lmforge analyze`)", "",
              _body(analysis.read_text(encoding="utf-8").split("\n## ", 1)[0]),
              "", f"Examples: `{analysis.relative_to(path.parent)}`"]
    if served is not None:
        lines += ["", "## Serving the final model (`lmforge serve`)", "", _serving_section(served)]
    for stage, run_dir in runs.items():
        lines += ["", f"## {stage}", "", f"Run folder: `{run_dir}`", "", f"![{stage} loss]({run_dir.name}/loss.png)",
                  ""]
        lines += [f"- **Q:** {q}\n  **A:** {a.strip() or '(empty)'}" for q, a in _sample_questions(results[stage])]
    atomic_write_text(path, "\n".join(lines) + "\n")
    machine = {"total_seconds": round(seconds, 1),
               "stage_seconds": {k: round(v, 1) for k, v in {**times.main, **times.side}.items()},
               "second_process_stages": list(times.side) if times.beside else [], "stages": figures,
               "retention": retention_rows, "dpo_against_sft": wins["dpo"], "grpo": grpo}
    atomic_write_text(path.with_suffix(".json"), json.dumps(machine, ensure_ascii=False, indent=2) + "\n")


def _times_table(times: StageTimes, seconds: float) -> str:
    """Each stage's wall time and share of the total; the comparison runs, when they ran in the second process,
    overlap the main chain, so only the main process's rows add up to the total."""
    from lmforge.reports import markdown_table

    side = "second" if times.beside else "main"
    rows = [[stage, process, f"{value:.0f} s", f"{value / seconds:.0%}"]
            for process, part in (("main", times.main), (side, times.side)) for stage, value in part.items()]
    table = markdown_table(["stage", "process", "wall time", "share"], [*rows, ["all", "", f"{seconds:.0f} s", "100%"]])
    if not times.beside:
        return table
    return (table + "\n\nThe second process ran beside the main one, each on half of the CPU threads: only the main "
            "process's rows add up to the total.")


RETENTION_TARGET = {"world_mc_points_below_pretrain": 0.05, "qa_exact_match_at_least": 0.40}


def _retention_section(results: dict, figures: dict, runs: dict[str, Path], demo_dir: Path) -> tuple[str, list]:
    """Each SFT variant's task gain (QA exact match) against its retention (world MC, and its change from the
    pretrained model by a paired bootstrap), with the target the demo holds itself to, as a table and a chart."""
    from lmforge.eval.compare import paired_change
    from lmforge.reports import markdown_table
    from lmforge.plots import plot_tradeoff

    pretrain_mc = _task_samples(results["pretrain"], "world_mc")
    floor = figures["pretrain"]["world_mc_acc"]["value"] - RETENTION_TARGET["world_mc_points_below_pretrain"]
    rows, table, points = [], [], {}
    for stage in (name for name in RETENTION_ORDER if name in results):
        qa, mc = figures[stage]["qa_exact_match"], figures[stage]["world_mc_acc"]
        change = paired_change("acc", *_aligned(pretrain_mc, _task_samples(results[stage], "world_mc")))
        meets = qa is not None and mc["value"] >= floor and qa["value"] >= RETENTION_TARGET["qa_exact_match_at_least"]
        rows.append({"variant": stage, "mitigation": _mitigation(runs[stage]), "qa_exact_match": qa,
                     "world_mc_acc": mc, "world_mc_change": change, "meets_target": meets})
        table.append([f"`{stage}`", _mitigation(runs[stage]), _with_ci(qa), _with_ci(mc),
                      f"{change['delta']:+.1%} [{change['ci'][0]:+.1%}, {change['ci'][1]:+.1%}]",
                      "yes" if meets else "no"])
        if qa is not None:
            points[stage] = (mc["value"], mc["ci"], qa["value"], qa["ci"])
    chart = plot_tradeoff(points, demo_dir / "retention.png", "SFT variants: task gain against retention",
                          "world multiple choice (retention)", "QA exact match (task)",
                          (floor, RETENTION_TARGET["qa_exact_match_at_least"]))
    text = (markdown_table(["variant", "mitigation", "QA exact match (95% CI)", "world MC (95% CI)",
                            "world MC change from pretrain (paired 95% CI)", "meets the target"], table)
            + f"\n\nThe pretrained model answers {_with_ci(figures['pretrain']['world_mc_acc'])} of the world's "
            f"multiple-choice questions. The target: world MC at most "
            f"{RETENTION_TARGET['world_mc_points_below_pretrain'] * 100:g} points below the pretrained model (dashed "
            f"vertical line) "
            f"and QA exact match of at least {RETENTION_TARGET['qa_exact_match_at_least']:.0%} (dashed horizontal "
            f"line). The `sft` stage, which DPO and GRPO build on, runs the shipped `demo-sft` recipe."
            f"\n\n![retention]({chart.name})")
    return text, rows


def _aligned(samples_a: list[dict], samples_b: list[dict]) -> tuple[list[dict], list[dict]]:
    """The samples both runs scored, in the same order (for a paired comparison)."""
    by_id = {sample["id"]: sample for sample in samples_b}
    common = [sample for sample in samples_a if sample["id"] in by_id]
    return common, [by_id[sample["id"]] for sample in common]


def _mitigation(run_dir: Path) -> str:
    """What a run did against forgetting, read from the config it ran with."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    parts = []
    if config["data"].get("replay"):
        parts.append(f"replay of pretraining text ({config['data']['replay_share']:.0%} of the examples)")
    if config["train"].get("anchor", "none") != "none":
        parts.append(f"{config['train']['anchor']} anchor to the pretrained model "
                     f"(weight {config['train']['anchor_weight']:g})")
    if config.get("finetuning") in ("lora", "dora", "qlora"):
        parts.append(f"{config['finetuning']} adapters (r={config['lora']['r']})")
    return "; ".join(parts) or "none"


def _with_ci(figure: dict | None) -> str:
    if figure is None:
        return "-"
    return f"{figure['value']:.1%} [{figure['ci'][0]:.1%}, {figure['ci'][1]:.1%}]"


def _grpo_section(results: dict, runs: dict[str, Path], sampled: dict[str, dict] | None) -> tuple[str, dict]:
    """GRPO's exact-match gain over its start model, with paired-bootstrap intervals: on held-out questions (greedy
    and sampled), where the issue's target lies, and on its own training prompts, which shows what RL learned where
    it was rewarded. pass@k well above pass@1 before RL says why RL can help: the model often knows an answer it does
    not give first, so sampled groups hold rewarded replies."""
    from lmforge.eval.compare import paired_change

    gains = {}
    for row, subject in (("held-out questions, greedy", "fact-seen"), ("new wording, greedy", "fact-new-wording")):
        pairs = _aligned(_task_samples(results["dpo"], "world_qa", subject),
                         _task_samples(results["grpo"], "world_qa", subject))
        gains[row] = paired_change("exact_match", *pairs) if pairs[0] else None
    before, after = (sampled["dpo"], sampled["grpo"]) if sampled else (None, None)
    if sampled:
        held_out = before["held_out"]
        row = f"held-out questions, sampled at temperature {held_out['temperature']:g} (pass@1)"
        gains[row] = paired_change("pass_at_1", *_aligned(held_out["samples"], after["held_out"]["samples"]))
        gains["its own training prompts, greedy"] = paired_change(
            "exact_match", *_aligned(before["trained"]["samples"], after["trained"]["samples"]))
    main = gains["held-out questions, greedy"]
    prompts = last_record(runs["grpo"], "data").get("examples")
    lines = [f"GRPO trained on the world's fact questions ({prompts} prompts in `rl_facts.jsonl`, asked in phrasings "
             "SFT used) with an exact-match reward and the world's `concise` reward. It is scored on `world_qa`'s "
             "held-out questions: the same facts asked in the one phrasing that no training file uses."]
    if sampled:
        k = before["held_out"]["k"]
        lines += ["", f"Before RL, the dpo model sampled at temperature 1 answers {before['held_out']['pass_at_1']:.1%} "
                  f"of its replies right (pass@1) and at least one of {k} replies right for "
                  f"{before['held_out']['pass_at_k']:.1%} of the questions (pass@{k}). Where pass@k is well above "
                  "pass@1, the model often knows an answer it does not give first, and sampled groups hold rewarded "
                  f"replies to learn from. After GRPO: pass@1 {after['held_out']['pass_at_1']:.1%}, pass@{k} "
                  f"{after['held_out']['pass_at_k']:.1%}."]
    if main is not None:
        verdict = "excludes" if main["ci"][0] > 0 or main["ci"][1] < 0 else "includes"
        lines += ["", "| questions | dpo | grpo | gain | paired 95% CI | n |", "|---|---|---|---|---|---|"]
        lines += [f"| {row} | {g['a']:.1%} | {g['b']:.1%} | {g['delta']:+.1%} | [{g['ci'][0]:+.1%}, "
                  f"{g['ci'][1]:+.1%}] | {g['n']} |" for row, g in gains.items() if g]
        lines += ["", f"Exact match on held-out questions moved by {main['delta']:+.1%}; the interval {verdict} 0."]
    if sampled and main is not None:
        trained = gains["its own training prompts, greedy"]
        lines += ["", f"On its own training prompts, greedy exact match moved by {trained['delta']:+.1%}."]
        if trained["ci"][0] > 0 and main["ci"][0] <= 0:
            lines[-1] += (" What RL learned stayed with the prompts it was rewarded on and did not carry over to "
                          "other wordings of the same facts (see \"GRPO at this scale\" in the README).")
    passes = {name: {key: value for key, value in figures["held_out"].items() if key != "samples"}
              for name, figures in (sampled or {}).items()}
    return "\n".join(lines), {"task": "world facts (rl_facts.jsonl), scored on world_qa fact-seen",
                              "pass_at_k": passes, "gain": {row: g for row, g in gains.items() if g}}


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


def _alignment_section(results: dict, values: dict, runs: dict[str, Path]) -> tuple[str, dict]:
    """What preference optimisation and RL changed, judged by the toy world's own preference rule (concise and
    correct beats rambling, repetitive or wrong) on the replies every stage gave to the same held-out questions."""
    from lmforge.reports import markdown_table
    from lmforge.world.judge import reply_style, win_rate

    replies = {stage: _replies(results[stage]) for stage in ALIGNED}
    styles = {stage: reply_style(replies[stage]) for stage in ALIGNED}
    wins = {stage: win_rate(replies[stage], replies["sft"]) for stage in ALIGNED[1:]}
    rows = [
        ["win rate against sft (ties count half)", "-", *(_percent(wins[s]["win_rate"]) for s in ALIGNED[1:])],
        ["win rate against sft over decided pairs", "-",
         *(_percent(wins[s]["decided_win_rate"]) for s in ALIGNED[1:])],
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
            "paired by question and judged by the world's preference rule (`lmforge.world.judge`)." + curve), wins


def _replies(results: dict) -> list[dict]:
    return results["tasks"]["world_qa"]["samples"] + results["tasks"]["world_arithmetic"]["samples"]


def _sweep_section(sweep: Path, demo_dir: Path, full_results: dict, full_run: Path) -> str:
    """The sweep's table and curve, and the point at all of the data: the sft-plain stage, the same recipe without
    replay."""
    table = _body((sweep / "sweep.md").read_text(encoding="utf-8"))
    full = full_results["tasks"]["world_qa"]["metrics"]["exact_match"]["value"]
    examples = last_record(full_run, "data")["examples"]
    return (f"{table}\n\nThe sweep trains without replay. All of the data is the sft-plain stage: {examples} "
            f"examples, world_qa/exact_match "
            f"{full:.4f}.\n\n![sweep]({(sweep / 'sweep.png').relative_to(demo_dir)})")


def _finetuning_comparison(runs: dict[str, Path], values: dict[str, dict]) -> str:
    """The same SFT data, without replay, on all weights against LoRA adapters: what each trains, costs and
    reaches."""
    from lmforge.reports import markdown_table

    stages = list(FINETUNING_COMPARED)
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
