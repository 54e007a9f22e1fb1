"""`lmforge eval`: turn tasks into scoring or generation requests, run them batched, and write the run folder."""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from pathlib import Path

from lmforge.eval.config import EvalConfig
from lmforge.eval.prompting import Prompt, as_chat, build_prompts
from lmforge.eval.task import Doc, Task

log = logging.getLogger("lmforge.eval")


def load_tasks(specs: list[str], subjects: list[str] | None = None) -> list[Task]:
    """`benchmark=PATH` loads a standard benchmark, a `.yaml` file a custom task; all checked before any model loads."""
    tasks = [_load_task(spec, subjects) for spec in specs]
    names = [task.name for task in tasks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"two tasks are named {', '.join(repeated)}; evaluate them in separate runs or rename one")
    return tasks


def _load_task(spec: str, subjects: list[str] | None) -> Task:
    from lmforge.eval.benchmarks import load_benchmark
    from lmforge.eval.custom import load_custom_task

    if spec.endswith((".yaml", ".yml")):
        task = _only_subjects(load_custom_task(spec), subjects)
    elif "=" in spec:
        name, path = spec.split("=", 1)
        task = load_benchmark(name.strip(), path.strip(), subjects or None)
    else:
        raise ValueError(f"task '{spec}': write benchmark=PATH (e.g. cmmlu=data/cmmlu) or a task YAML file")
    if not task.docs:
        raise ValueError(f"{task.source}: no documents to evaluate")
    return task


def _only_subjects(task: Task, subjects: list[str] | None) -> Task:
    """A custom task narrowed to the requested subjects (its `subject` template), when it has subjects at all."""
    known = sorted({doc.subject for doc in task.docs} - {""})
    if not subjects or not known:
        return task
    missing = sorted(set(subjects) - set(known))
    if missing:
        raise ValueError(f"{task.name}: no subject {', '.join(missing)}; its subjects are {', '.join(known)}")
    task.docs = [doc for doc in task.docs if doc.subject in subjects]
    return task


def evaluate(cfg: EvalConfig, overwrite: bool = False) -> Path:
    """Evaluate a model on every task and publish `results.json`, `results.md` and `results.png`."""
    from lmforge.models import load_for_inference
    from lmforge.runs import Run

    tasks = load_tasks(cfg.tasks, cfg.subjects)
    with Run(cfg.output_dir, cfg.name or f"eval-{Path(cfg.model).name}", overwrite).start(cfg) as run:
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

    from lmforge.metrics import summarize

    docs = first_of_each_subject(task.docs, cfg.limit) if cfg.limit else task.docs
    k = task.num_fewshot if cfg.num_fewshot is None else cfg.num_fewshot
    prompts = build_prompts(task, docs, k, cfg.cot and task.kind == "generate")
    chat = cfg.chat or task.chat
    if chat:
        prompts = [Prompt(p.prefix, as_chat(tokenizer, p.text)) for p in prompts]
    with tqdm(total=len(docs), desc=task.name, unit="doc") as bar:
        if task.kind == "choice":
            samples = _choice_samples(model, tokenizer, task, docs, prompts, cfg, bar.update, chat)
        else:
            samples = _generation_samples(model, tokenizer, task, docs, [p.text for p in prompts], cfg, bar.update)
    summary = summarize(task.metrics, samples, iters=cfg.bootstrap_iters)
    return {"kind": task.kind, "n": len(samples), "num_fewshot": k, "source": task.source, **summary,
            "samples": samples}


def first_of_each_subject(docs: list[Doc], limit: int) -> list[Doc]:
    """The first `limit` docs of every subject, in their order: lm-eval limits each subtask the same way."""
    seen: Counter = Counter()
    kept = []
    for doc in docs:
        seen[doc.subject] += 1
        if seen[doc.subject] <= limit:
            kept.append(doc)
    return kept


def _choice_samples(model, tokenizer, task: Task, docs: list[Doc], prompts: list[Prompt], cfg: EvalConfig, progress,
                    chat: bool) -> list[dict]:
    """Scores every choice; docs that share a few-shot prefix are grouped so the scorer can share its pass."""
    from lmforge.metrics import choice_sample_metrics
    from lmforge.eval.scoring import encode_choices, score_choices

    delimiter = "" if chat else task.target_delimiter
    requests = [encode_choices(tokenizer, p.text, [delimiter + c for c in d.choices], group=p.prefix)
                for d, p in zip(docs, prompts)]
    scores = score_choices(model, requests, context_window(model, cfg), cfg.batch_tokens, progress)
    return [
        {"id": doc.id, "subject": doc.subject, "query": doc.query, "prompt": prompt.text, "choices": doc.choices,
         "scores": row, "prediction": max(range(len(row)), key=row.__getitem__), "gold": doc.gold,
         "metrics": choice_sample_metrics(task.metrics, row, doc.choices, doc.gold, doc.extra)}
        for doc, prompt, row in zip(docs, prompts, scores)
    ]


def _generation_samples(model, tokenizer, task: Task, docs, prompts, cfg: EvalConfig, progress) -> list[dict]:
    from lmforge.metrics import generation_sample_metrics
    from lmforge.engine import SamplingParams, generate_texts
    from lmforge.eval.scoring import tokenize_context

    max_new_tokens = cfg.max_new_tokens or task.max_new_tokens
    room = context_window(model, cfg) - max_new_tokens
    if room < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the context window")
    ids = [tokenize_context(tokenizer, p)[-room:] for p in prompts]
    completions = generate_texts(model, tokenizer, ids, SamplingParams(max_new_tokens, 0, stop=list(task.until)),
                                 batch_size=cfg.batch_size, on_done=progress)
    samples = []
    for doc, prompt, done in zip(docs, prompts, completions):
        prediction = task.extract(done.text) if task.extract else done.text.strip()
        samples.append({
            "id": doc.id, "subject": doc.subject, "query": doc.query, "prompt": prompt, "output": done.text, "prediction": prediction,
            "gold": str(doc.gold), "reference": doc.target, "finish_reason": done.finish_reason,
            "output_tokens": len(done.token_ids), "max_new_tokens": max_new_tokens, "json_expected": "json_valid" in task.metrics,
            "metrics": generation_sample_metrics(task.metrics, prediction, str(doc.gold), done.text),
        })
    return samples


def context_window(model, cfg: EvalConfig) -> int:
    """The configured window, else the model's trained positions, else 2048 (lm-eval's order)."""
    config = model.config
    trained = (getattr(config, name, None) for name in ("n_positions", "max_position_embeddings", "n_ctx"))
    return cfg.max_length or next((n for n in trained if n), 2048)


def _headline(task_result: dict) -> str:
    return ", ".join(f"{name} {m['value']:.4f} ± {m['stderr']:.4f}" for name, m in task_result["metrics"].items())


def results_table(results: dict) -> str:
    """Markdown: one row per task and metric, then per-subject tables for tasks that have subjects."""
    from lmforge.reports import markdown_table

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
    from lmforge.eval.report import run_label
    from lmforge.reports import write_report

    bars = [(f"{name}/{metric}", m["value"], m["stderr"]) for name, task in results["tasks"].items()
            for metric, m in task["metrics"].items()]
    chart = {"labels": [b[0] for b in bars], "values": [b[1] for b in bars], "errors": [b[2] for b in bars],
             "title": f"evaluation of {run_label(results)}", "ylabel": "score"}
    markdown = f"# Evaluation of {run_label(results)}\n\n" + results_table(results)
    write_report(folder, "results", results, markdown, chart)
