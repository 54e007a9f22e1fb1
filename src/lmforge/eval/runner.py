"""`lmforge eval`: turn tasks into scoring or generation requests, run them batched, and write the run folder."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

from lmforge.eval.config import EvalConfig
from lmforge.eval.prompting import as_chat, build_prompt, prompt_prefix
from lmforge.eval.task import Task

log = logging.getLogger("lmforge.eval")


def load_tasks(specs: list[str], subjects: list[str] | None = None) -> list[Task]:
    """`benchmark=PATH` loads a standard benchmark; a `.yaml` path loads a custom task."""
    from lmforge.eval.benchmarks import load_benchmark
    from lmforge.eval.custom import load_custom_task

    tasks = []
    for spec in specs:
        if "=" in spec:
            name, path = spec.split("=", 1)
            tasks.append(load_benchmark(name.strip(), path.strip(), subjects or None))
        elif spec.endswith((".yaml", ".yml")):
            tasks.append(load_custom_task(spec))
        else:
            raise ValueError(f"task '{spec}': write benchmark=PATH (e.g. cmmlu=data/cmmlu) or a task YAML file")
    return tasks


def evaluate(cfg: EvalConfig, overwrite: bool = False) -> Path:
    """Evaluate a model on every task and publish `results.json`, `results.md` and `results.png`."""
    import torch

    from lmforge.models import load_for_inference
    from lmforge.runs import Run

    tasks = load_tasks(cfg.tasks, cfg.subjects)
    with Run(cfg.output_dir, cfg.name or f"eval-{Path(cfg.model).name}", overwrite).start(cfg) as run:
        torch.manual_seed(cfg.seed)
        model, tokenizer = load_for_inference(cfg.model, cfg.device, adapter=cfg.adapter, dtype=cfg.dtype)
        results = evaluate_tasks(model, tokenizer, tasks, cfg)
        write_results(run.dir, results)
        return run.finish()


def evaluate_tasks(model, tokenizer, tasks: list[Task], cfg: EvalConfig) -> dict:
    results = {
        "model": cfg.model,
        "adapter": cfg.adapter,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.model_dump(),
        "tasks": {},
    }
    for task in tasks:
        results["tasks"][task.name] = run_task(model, tokenizer, task, cfg)
        log.info("%s: %s", task.name, _headline(results["tasks"][task.name]))
    return results


def run_task(model, tokenizer, task: Task, cfg: EvalConfig) -> dict:
    from tqdm.auto import tqdm

    from lmforge.eval.metrics import summarize

    docs = task.docs[: cfg.limit] if cfg.limit else task.docs
    k = task.num_fewshot if cfg.num_fewshot is None else cfg.num_fewshot
    prompts = [build_prompt(task, doc, k, cfg.cot and task.kind == "generate") for doc in docs]
    chat = cfg.chat or task.chat
    if chat:
        prompts = [as_chat(tokenizer, prompt) for prompt in prompts]
    with tqdm(total=len(docs), desc=task.name, unit="doc") as bar:
        if task.kind == "choice":
            samples = _choice_samples(model, tokenizer, task, docs, prompts, cfg, bar.update, k, chat)
        else:
            samples = _generation_samples(model, tokenizer, task, docs, prompts, cfg, bar.update)
    summary = summarize(task.metrics, samples, iters=cfg.bootstrap_iters)
    return {"kind": task.kind, "n": len(samples), "num_fewshot": k, "source": task.source, **summary,
            "samples": samples}


def _choice_samples(model, tokenizer, task: Task, docs, prompts, cfg: EvalConfig, progress, k: int,
                    chat: bool) -> list[dict]:
    """Scores every choice; docs that share a few-shot prefix are grouped so the scorer can share its pass."""
    from lmforge.eval.metrics import choice_sample_metrics
    from lmforge.eval.scoring import encode_choices, score_choices

    delimiter = "" if chat else task.target_delimiter
    requests = [encode_choices(tokenizer, p, [delimiter + c for c in d.choices], group=prompt_prefix(task, d, k))
                for d, p in zip(docs, prompts)]
    scores = score_choices(model, requests, context_window(model, cfg), cfg.batch_tokens, progress)
    return [
        {"id": doc.id, "subject": doc.subject, "query": doc.query, "prompt": prompt, "choices": doc.choices, "scores": row,
         "prediction": max(range(len(row)), key=row.__getitem__), "gold": doc.gold,
         "metrics": choice_sample_metrics(task.metrics, row, doc.choices, doc.gold, doc.extra)}
        for doc, prompt, row in zip(docs, prompts, scores)
    ]


def _generation_samples(model, tokenizer, task: Task, docs, prompts, cfg: EvalConfig, progress) -> list[dict]:
    from lmforge.eval.metrics import generation_sample_metrics
    from lmforge.eval.scoring import encode_text
    from lmforge.generate import generate_batch

    max_new_tokens = cfg.max_new_tokens or task.max_new_tokens
    room = context_window(model, cfg) - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the context window")
    ids = [encode_text(tokenizer, p)[-room:] for p in prompts]
    completions = generate_batch(model, tokenizer, ids, max_new_tokens, batch_size=cfg.batch_size, stop=task.until,
                                 on_batch=progress)
    samples = []
    for doc, prompt, done in zip(docs, prompts, completions):
        prediction = task.extract(done.text) if task.extract else done.text.strip()
        samples.append({
            "id": doc.id, "subject": doc.subject, "query": doc.query, "prompt": prompt, "output": done.text, "prediction": prediction,
            "gold": str(doc.gold), "reference": doc.target, "finish_reason": done.finish_reason,
            "output_tokens": done.tokens, "max_new_tokens": max_new_tokens, "json_expected": "json_valid" in task.metrics,
            "metrics": generation_sample_metrics(task.metrics, prediction, str(doc.gold), done.text),
        })
    return samples


def context_window(model, cfg: EvalConfig) -> int:
    """The configured window, else the model's trained positions (lm-eval's default order)."""
    config = model.config
    return cfg.max_length or getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048)


def _headline(task_result: dict) -> str:
    return ", ".join(f"{name} {m['value']:.4f} ± {m['stderr']:.4f}" for name, m in task_result["metrics"].items())


def results_table(results: dict) -> str:
    """Markdown: one row per task and metric, then per-subject tables for tasks that have subjects."""
    from lmforge.eval.report import markdown_table

    rows = [[name, metric, f"{m['value']:.4f}", f"{m['stderr']:.4f}", task["n"]]
            for name, task in results["tasks"].items() for metric, m in task["metrics"].items()]
    parts = [markdown_table(["task", "metric", "value", "stderr", "n"], rows)]
    for name, task in results["tasks"].items():
        if task.get("subjects"):
            metrics = list(task["metrics"])
            subject_rows = [[subject, *(f"{row[m]:.4f}" if m in row else "-" for m in metrics), row["n"]]
                            for subject, row in task["subjects"].items()]
            parts += [f"### {name} by subject", markdown_table(["subject", *metrics, "n"], subject_rows)]
    return "\n\n".join(parts) + "\n"


def write_results(folder: Path, results: dict) -> None:
    from lmforge.eval.report import run_label, write_report

    bars = [(f"{name}/{metric}", m["value"], m["stderr"]) for name, task in results["tasks"].items()
            for metric, m in task["metrics"].items()]
    chart = {"labels": [b[0] for b in bars], "values": [b[1] for b in bars], "errors": [b[2] for b in bars],
             "title": f"evaluation of {run_label(results)}", "ylabel": "score"}
    markdown = f"# Evaluation of {run_label(results)}\n\n" + results_table(results)
    write_report(folder, "results", results, markdown, chart)
